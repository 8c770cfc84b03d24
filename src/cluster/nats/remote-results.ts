import { EventEmitter } from 'node:events';
import sharp from 'sharp';
import { type ConsumerMessages, type NatsConnection, type Subscription } from 'nats';
import { errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { AppearanceEvent } from '../../pipeline/bus.js';
import type { EncodedFrame } from '../../server/live/jpeg.js';
import type { LivePicture, LiveSource, LiveSourceEvents, Presence } from '../../server/live/source.js';
import type { StreamChange, StreamInfo, StreamManager } from '../../server/streams.js';
import type { ClusterMetrics } from '../metrics.js';
import { decodeFrameMessage } from './frame-codec.js';
import type { StreamStatusMessage } from './results-publisher.js';
import type { ClusterNames } from './subjects.js';

const LOG_SIZE = 50;

interface Remote {
  info: StreamInfo;
  node: string;
  /** This node's clock when the status arrived. */
  seenAt: number;
}

/**
 * An api node's view of every camera of the cluster, fed from NATS: per-frame results (core NATS;
 * a frame lost is replaced by the next), appearance events and stream changes (JetStream, read by
 * an ordered consumer that resumes after the last event it saw when NATS comes back), and each
 * stream's status from its worker. The LiveHub and MQTT read it as they read the local pipeline.
 * Nothing here waits on a client: the hub's per-client bounded queues drop for slow viewers.
 */
export class NatsLiveSource extends EventEmitter<LiveSourceEvents> implements LiveSource {
  private readonly remote = new Map<string, Remote>();
  private readonly presence = new Map<string, Map<string, Presence>>();
  private readonly logs = new Map<string, AppearanceEvent[]>();
  private readonly subs: Subscription[] = [];
  private readonly detach: (() => void)[] = [];
  private messages: ConsumerMessages | undefined;
  private closed = false;
  private lastInterestAt = 0;

  constructor(
    private readonly deps: {
      nc: NatsConnection;
      names: ClusterNames;
      /** The node's stream manager (definitions; set once built). */
      streams: () => StreamManager;
      /** A stream's status older than this is no longer believed (its worker is gone): ms. */
      staleAfterMs: number;
      metrics: ClusterMetrics;
      logger: Logger;
    },
  ) {
    super();
    this.setMaxListeners(0);
    const { nc, names, metrics } = deps;
    this.subs.push(
      nc.subscribe(names.frames('*'), {
        callback: (err, msg) => {
          if (err) return;
          let m;
          try {
            m = decodeFrameMessage(msg.data);
          } catch {
            return;
          }
          metrics.framesReceived.inc();
          const jpeg = m.jpeg;
          this.emit('frame', m.result, jpeg ? remotePicture(jpeg) : undefined);
        },
      }),
      nc.subscribe(names.status('*'), {
        callback: (err, msg) => {
          if (err) return;
          try {
            const s = JSON.parse(msg.string()) as StreamStatusMessage;
            if (s?.stream?.id) this.remote.set(s.stream.id, { info: s.stream, node: s.node, seenAt: Date.now() });
          } catch {
            /* not ours */
          }
        },
      }),
    );
  }

  /** Starts reading events from JetStream (after the event stream exists). */
  async start(): Promise<void> {
    const { nc, names, logger } = this.deps;
    // From now on (a start time, not DeliverPolicy.New: the ordered consumer re-created after a NATS
    // restart before its first event would otherwise skip what was published meanwhile); after
    // that it resumes from the sequence after the last event it delivered.
    const consumer = await nc.jetstream().consumers.get(names.eventStream, { filterSubjects: names.allEvents, opt_start_time: new Date().toISOString() });
    // Definition changes (made on this node, or on another and read from PostgreSQL's change feed).
    const onLocal = (change: StreamChange) => {
      if (change.type === 'state') return;
      if (change.type === 'removed') {
        this.remote.delete(change.stream.id);
        this.presence.delete(change.stream.id);
        this.logs.delete(change.stream.id);
      }
      this.emit('stream', change);
    };
    const streams = this.deps.streams();
    streams.on('change', onLocal);
    this.detach.push(() => streams.off('change', onLocal));
    void (async () => {
      while (!this.closed) {
        try {
          this.messages = await consumer.consume({ max_messages: 256 });
          for await (const m of this.messages) {
            this.deps.metrics.eventsReceived.inc();
            this.onEvent(m.subject, m.string());
          }
        } catch (err) {
          if (this.closed) return;
          logger.warn({ err: errorMessage(err) }, 'reading cluster events failed; retrying');
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    })();
  }

  private onEvent(subject: string, text: string): void {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return;
    }
    if (subject.endsWith('.appearance')) {
      const { event } = body as { event: AppearanceEvent };
      if (!event?.streamId) return;
      const present = this.presence.get(event.streamId) ?? new Map<string, Presence>();
      this.presence.set(event.streamId, present);
      if (event.type === 'appeared') present.set(event.identity.id, { id: event.identity.id, name: event.identity.name, firstSeen: event.firstSeen, lastSeen: event.lastSeen });
      else present.delete(event.identity.id);
      const log = this.logs.get(event.streamId) ?? [];
      log.push(event);
      if (log.length > LOG_SIZE) log.splice(0, log.length - LOG_SIZE);
      this.logs.set(event.streamId, log);
      this.emit('appearance', event);
    } else if (subject.endsWith('.stream')) {
      // A state change of a stream on the worker that runs it (stopped, reconnecting, live, failed...).
      const s = body as StreamStatusMessage;
      if (!s?.stream?.id || s.change !== 'state' || typeof s.node !== 'string') return;
      this.remote.set(s.stream.id, { info: s.stream, node: s.node, seenAt: Date.now() });
      const streams = this.deps.streams();
      if (streams.has(s.stream.id)) this.emit('stream', { type: 'state', stream: streams.get(s.stream.id) });
    }
  }

  /** The status a worker last published for a stream, while fresh. */
  remoteInfo(streamId: string): StreamInfo | undefined {
    const r = this.remote.get(streamId);
    if (!r || Date.now() - r.seenAt > this.deps.staleAfterMs) return undefined;
    return r.info;
  }

  /** The node that runs a stream, as its last status said (undefined: none known). */
  ownerOf(streamId: string): string | undefined {
    const r = this.remote.get(streamId);
    return r && Date.now() - r.seenAt <= this.deps.staleAfterMs ? r.node : undefined;
  }

  streams(): StreamInfo[] {
    return this.deps.streams().list();
  }

  appearances(streamId: string): { current: Presence[]; log: AppearanceEvent[] } | undefined {
    const p = this.presence.get(streamId);
    if (!p && !this.logs.has(streamId)) return undefined;
    return { current: [...(p?.values() ?? [])], log: this.logs.get(streamId) ?? [] };
  }

  wantPictures(streams: string[] | null): void {
    const now = Date.now();
    if (now - this.lastInterestAt < 900 || this.deps.nc.isClosed()) return;
    this.lastInterestAt = now;
    try {
      this.deps.nc.publish(this.deps.names.pictureInterest, Buffer.from(JSON.stringify({ streams })));
    } catch {
      /* asked again within a second */
    }
  }

  close(): void {
    this.closed = true;
    for (const d of this.detach) d();
    for (const s of this.subs) s.unsubscribe();
    void this.messages?.close();
  }
}

/** A picture that came as a JPEG: passed on as it is, or made smaller for a viewer that asked for less. */
function remotePicture(jpeg: { data: Uint8Array; width: number; height: number }): LivePicture {
  return {
    encode: (width: number, quality: number): Promise<EncodedFrame | null> => {
      const data = Buffer.from(jpeg.data);
      if (width >= jpeg.width) return Promise.resolve({ data, width: jpeg.width, height: jpeg.height });
      const w = Math.max(16, Math.round(width));
      const h = Math.max(1, Math.round((jpeg.height * w) / jpeg.width));
      return sharp(data)
        .resize(w, h)
        .jpeg({ quality })
        .toBuffer()
        .then(
          (out) => ({ data: out, width: w, height: h }),
          () => null,
        );
    },
  };
}
