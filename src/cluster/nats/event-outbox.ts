import crypto from 'node:crypto';
import { DiscardPolicy, nanos, RetentionPolicy, StorageType, type JetStreamClient, type NatsConnection } from 'nats';
import { errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';

/**
 * Creates (or keeps) the JetStream stream that holds a cluster's events. An hour of events is
 * plenty for api nodes that reconnect; duplicates of a message id within two minutes are dropped
 * (an outbox that retries after a lost acknowledgement does not deliver twice).
 */
export async function ensureEventStream(nc: NatsConnection, name: string, subjects: string, logger: Logger): Promise<void> {
  const jsm = await nc.jetstreamManager();
  const config = { name, subjects: [subjects], retention: RetentionPolicy.Limits, storage: StorageType.File, discard: DiscardPolicy.Old, max_age: nanos(3_600_000), duplicate_window: nanos(120_000), max_msgs: 1_000_000 };
  try {
    await jsm.streams.info(name);
  } catch {
    try {
      await jsm.streams.add(config);
    } catch (err) {
      // Another node created it at the same moment.
      await jsm.streams.info(name).catch(() => {
        throw err;
      });
      logger.debug({ stream: name }, 'event stream created by another node');
    }
  }
}

/**
 * Events that must not be lost (appearances, stream state changes) on their way to JetStream:
 * kept in order in a bounded queue and published one at a time until JetStream acknowledges each,
 * retried while NATS is away. The pipeline never waits: past `maxQueued` the oldest event is dropped
 * and counted (a broker away for hours must not take the node's memory).
 */
export class EventOutbox {
  private readonly queue: { subject: string; data: Uint8Array; id: string }[] = [];
  private pumping = false;
  private closed = false;
  private readonly js: JetStreamClient;
  published = 0;
  dropped = 0;

  constructor(
    nc: NatsConnection,
    private readonly maxQueued: number,
    private readonly logger: Logger,
    private readonly onDrop: (n: number) => void = () => undefined,
  ) {
    this.js = nc.jetstream({ timeout: 3000 });
  }

  get queued(): number {
    return this.queue.length;
  }

  push(subject: string, payload: unknown): void {
    if (this.closed) return;
    this.queue.push({ subject, data: Buffer.from(JSON.stringify(payload), 'utf8'), id: crypto.randomUUID() });
    if (this.queue.length > this.maxQueued) {
      this.queue.shift();
      this.dropped++;
      this.onDrop(1);
    }
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    let failing = false;
    try {
      while (this.queue.length && !this.closed) {
        const m = this.queue[0];
        try {
          await this.js.publish(m.subject, m.data, { msgID: m.id });
          if (this.queue[0] === m) this.queue.shift();
          this.published++;
          failing = false;
        } catch (err) {
          if (!failing) this.logger.warn({ err: errorMessage(err), queued: this.queue.length }, 'event not acknowledged by JetStream; retrying');
          failing = true;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Waits up to `timeoutMs` for the queue to empty, then stops. */
  async close(timeoutMs = 2000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.queue.length && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    this.closed = true;
  }
}
