import type { NatsConnection, Subscription } from 'nats';
import type { ClusterConfig } from '../../config/sections/cluster.js';
import type { Logger } from '../../log.js';
import type { AppearanceEvent } from '../../pipeline/bus.js';
import type { Pipeline } from '../../pipeline/pipeline.js';
import type { FrameResult, PipelineFrame } from '../../pipeline/result.js';
import { FrameJpegEncoder } from '../../server/live/jpeg.js';
import type { StreamChange, StreamManager } from '../../server/streams.js';
import type { ClusterMetrics } from '../metrics.js';
import { EventOutbox } from './event-outbox.js';
import { encodeFrameMessage } from './frame-codec.js';
import type { ClusterNames } from './subjects.js';

/** Picture interest lasts this long after an api node last asked (it asks every second while viewers want pictures). */
const INTEREST_MS = 5000;
const JPEG_QUALITY = 80;

/** The status message of a stream (core NATS, about once a second, and with each change as an event). */
export interface StreamStatusMessage {
  node: string;
  at: number;
  change?: StreamChange['type'];
  stream: StreamChange['stream'];
}

/**
 * A worker's side of the results flow: every processed frame of the streams it runs goes out on
 * core NATS (lossy: dropped and counted while NATS is away, never waited for), appearance events
 * and stream changes through the JetStream outbox (kept and retried), and each running stream's
 * status once a second. JPEGs ride along at cluster.jpegFps only while an api node says a viewer
 * wants pictures of that stream.
 */
export class ResultPublisher {
  private readonly encoder = new FrameJpegEncoder();
  private readonly interest = new Map<string | null, number>();
  private readonly lastJpegAt = new Map<string, number>();
  private readonly detach: (() => void)[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly interestSub: Subscription;
  private connected = true;
  readonly outbox: EventOutbox;

  constructor(
    private readonly deps: {
      nc: NatsConnection;
      names: ClusterNames;
      pipeline: Pipeline;
      streams: StreamManager;
      config: ClusterConfig;
      metrics: ClusterMetrics;
      logger: Logger;
    },
  ) {
    const { nc, pipeline, streams, names, config, metrics } = deps;
    this.outbox = new EventOutbox(nc, config.maxQueuedEvents, deps.logger, (n) => metrics.eventsDropped.inc(n));
    const onFrame = (result: FrameResult, frame: PipelineFrame) => this.onFrame(result, frame);
    const onAppearance = (event: AppearanceEvent) => this.outbox.push(names.events(event.streamId, 'appearance'), { node: config.nodeId, event });
    const onStream = (change: StreamChange) => {
      // Only the runner tells a stream's state. Definition changes reach every node through
      // PostgreSQL's change feed, and a stream stopped here because it moved is not news.
      if (change.type !== 'state' || !streams.isRunningHere(change.stream.id)) return;
      this.outbox.push(names.events(change.stream.id, 'stream'), { node: config.nodeId, at: Date.now(), change: change.type, stream: change.stream } satisfies StreamStatusMessage);
    };
    pipeline.bus.on('frame', onFrame);
    pipeline.bus.on('appearance', onAppearance);
    streams.on('change', onStream);
    this.detach.push(
      () => pipeline.bus.off('frame', onFrame),
      () => pipeline.bus.off('appearance', onAppearance),
      () => streams.off('change', onStream),
    );
    this.interestSub = nc.subscribe(names.pictureInterest, {
      callback: (_err, msg) => {
        try {
          const { streams: wanted } = JSON.parse(msg.string()) as { streams: string[] | null };
          const until = Date.now() + INTEREST_MS;
          if (wanted === null) this.interest.set(null, until);
          else if (Array.isArray(wanted)) for (const s of wanted.slice(0, 10_000)) if (typeof s === 'string') this.interest.set(s, until);
        } catch {
          /* a malformed request asks for nothing */
        }
      },
    });
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.connected = false;
        else if (s.type === 'reconnect') this.connected = true;
      }
    })().catch(() => undefined);
    this.timer = setInterval(() => this.publishStatus(), 1000);
    let sent = this.outbox.published;
    this.detach.push(() => clearInterval(this.timer));
    const countTimer = setInterval(() => {
      metrics.eventsPublished.inc(this.outbox.published - sent);
      sent = this.outbox.published;
    }, 1000);
    this.detach.push(() => clearInterval(countTimer));
  }

  private wantsPicture(streamId: string, now: number): boolean {
    if (this.deps.config.jpegFps <= 0) return false;
    const until = Math.max(this.interest.get(streamId) ?? 0, this.interest.get(null) ?? 0);
    return until > now && now - (this.lastJpegAt.get(streamId) ?? 0) >= 1000 / this.deps.config.jpegFps - 5;
  }

  private onFrame(result: FrameResult, frame: PipelineFrame): void {
    const { metrics, config } = this.deps;
    if (!this.connected || this.deps.nc.isClosed()) {
      metrics.framesDropped.inc({ reason: 'disconnected' });
      return;
    }
    const now = Date.now();
    const encoding = this.wantsPicture(result.streamId, now) ? this.encoder.encode(frame, config.jpegWidth, JPEG_QUALITY) : null;
    if (!encoding) return this.send(result);
    this.lastJpegAt.set(result.streamId, now);
    void encoding.then((jpeg) => this.send(result, jpeg ?? undefined));
  }

  private send(result: FrameResult, jpeg?: { data: Buffer; width: number; height: number }): void {
    const { nc, names, metrics, config } = this.deps;
    try {
      nc.publish(names.frames(result.streamId), encodeFrameMessage({ result, node: config.nodeId, jpeg }));
      metrics.framesPublished.inc();
    } catch {
      metrics.framesDropped.inc({ reason: 'error' });
    }
  }

  private publishStatus(): void {
    const { nc, names, streams, config } = this.deps;
    if (!this.connected || nc.isClosed()) return;
    const now = Date.now();
    for (const [k, until] of this.interest) if (until < now) this.interest.delete(k);
    for (const info of streams.list()) {
      if (!streams.isRunningHere(info.id)) continue;
      try {
        nc.publish(names.status(info.id), Buffer.from(JSON.stringify({ node: config.nodeId, at: now, stream: info } satisfies StreamStatusMessage)));
      } catch {
        /* the next second's status replaces it */
      }
    }
  }

  async close(): Promise<void> {
    for (const d of this.detach) d();
    this.interestSub.unsubscribe();
    await this.outbox.close();
  }
}
