import type { WebSocket } from 'ws';
import type { Subscription } from './protocol.js';

/** An encoded message: text frames are sent from UTF-8 bytes encoded once for every client. */
export interface Payload {
  data: Buffer;
  binary: boolean;
}

export function textPayload(message: unknown): Payload {
  return { data: Buffer.from(JSON.stringify(message), 'utf8'), binary: false };
}

/** A message waiting for a client. `ready` is undefined while its JPEG is being encoded. */
interface Outgoing {
  kind: 'frame' | 'event';
  type: string;
  ready: Payload | null | undefined;
  /** Epoch ms the frame was captured (frames), for capture-to-push latency. */
  capturedAt?: number;
}

export interface ClientLimits {
  maxQueuedMessages: number;
  maxBufferedBytes: number;
}

export interface ClientHooks {
  sent(type: string, bytes: number, capturedAt: number | undefined): void;
  dropped(n: number): void;
}

/** How often a client whose socket is backed up is looked at again. */
const DRAIN_POLL_MS = 25;

/**
 * One WebSocket client with a bounded outbox. Messages go to the socket only while the socket's
 * own buffer is below maxBufferedBytes; the rest wait in the outbox, and when that is full the
 * oldest frame is dropped (events, which carry state, go last). Sending never waits on a client:
 * a slow one only loses frames.
 */
export class LiveClient {
  subscription: Subscription;
  alive = true;
  dropped = 0;
  sentMessages = 0;
  private droppedReported = 0;
  private readonly outbox: Outgoing[] = [];
  private drainTimer: NodeJS.Timeout | undefined;
  /** Last picture sent per stream (epoch ms), for the client's JPEG rate. */
  readonly lastJpegAt = new Map<string, number>();

  constructor(
    readonly id: string,
    readonly socket: WebSocket,
    readonly role: string,
    subscription: Subscription,
    private readonly limits: ClientLimits,
    private readonly hooks: ClientHooks,
  ) {
    this.subscription = subscription;
    socket.once('close', () => {
      if (this.drainTimer) clearTimeout(this.drainTimer);
      this.outbox.length = 0;
    });
  }

  wants(streamId: string): boolean {
    return this.subscription.streams === null || this.subscription.streams.includes(streamId);
  }

  get queued(): number {
    return this.outbox.length;
  }

  /** Queues a message; a promise (a JPEG being encoded) is sent in its place in the order once ready. */
  enqueue(kind: Outgoing['kind'], type: string, payload: Payload | Promise<Payload | null>, capturedAt?: number): void {
    if (this.socket.readyState !== this.socket.OPEN) return;
    const item: Outgoing = { kind, type, ready: payload instanceof Promise ? undefined : payload, capturedAt };
    if (payload instanceof Promise) {
      void payload.then((v) => {
        item.ready = v;
        this.flush();
      });
    }
    if (this.outbox.length >= this.limits.maxQueuedMessages) this.dropOne();
    this.outbox.push(item);
    this.flush();
  }

  private dropOne(): void {
    let i = this.outbox.findIndex((m) => m.kind === 'frame');
    if (i < 0) i = 0;
    this.outbox.splice(i, 1);
    this.dropped++;
    this.hooks.dropped(1);
  }

  /** Sends what the socket can take now; when it is backed up, looks again shortly. */
  flush(): void {
    const ws = this.socket;
    while (this.outbox.length && ws.readyState === ws.OPEN) {
      if (ws.bufferedAmount > this.limits.maxBufferedBytes) {
        // ws has no drain event; a backed-up client is rare, so a short poll costs nothing for the rest.
        this.drainTimer ??= setTimeout(() => {
          this.drainTimer = undefined;
          this.flush();
        }, DRAIN_POLL_MS);
        return;
      }
      const head = this.outbox[0];
      if (head.ready === undefined) return; // its picture is still being encoded
      this.outbox.shift();
      if (head.ready === null) continue;
      this.send(head.type, head.ready, head.capturedAt);
    }
    if (this.outbox.length === 0 && this.dropped > this.droppedReported) {
      this.droppedReported = this.dropped;
      this.send('dropped', textPayload({ v: 1, type: 'dropped', count: this.dropped }));
    }
  }

  private send(type: string, payload: Payload, capturedAt?: number): void {
    this.sentMessages++;
    this.socket.send(payload.data, { binary: payload.binary });
    this.hooks.sent(type, payload.data.length, capturedAt);
  }

  sendNow<T extends { type: string }>(message: T): void {
    this.enqueue('event', message.type, textPayload(message));
  }
}
