import crypto from 'node:crypto';
import type { WebSocket } from 'ws';
import type { WebSocketConfig } from '../../config/sections/server.js';
import type { AppearanceHistory } from '../../history/history.js';
import type { Gallery } from '../../index/gallery.js';
import type { Logger } from '../../log.js';
import type { AppearanceEvent } from '../../pipeline/bus.js';
import type { FrameResult } from '../../pipeline/result.js';
import type { ServerMetrics } from '../metrics.js';
import type { StreamChange } from '../streams.js';
import { LiveClient, textPayload, type Payload } from './client.js';
import { forwardHistory } from './history-events.js';
import type { EncodedFrame } from './jpeg.js';
import { packJpegFrame, type JpegHeader, type JpegOptions, type StateMessage, type Subscription } from './protocol.js';
import type { LivePicture, LiveSource } from './source.js';

export interface LiveHubDeps {
  /** Results, appearances and stream changes to show (this process's pipeline, or NATS in cluster mode). */
  source: LiveSource;
  gallery: () => Gallery | undefined;
  metrics: ServerMetrics;
  config: WebSocketConfig;
  logger: Logger;
  /** The appearance history: its events go to clients, and appearance events carry its ids. */
  history?: AppearanceHistory;
}

/** What a client may ask for, clamped to the server's limits. */
export interface JpegRequest {
  fps?: number;
  width?: number;
  quality?: number;
}

/** Gallery events are gathered this long, and sent one by one up to GALLERY_MAX_EVENTS. */
const GALLERY_COALESCE_MS = 100;
const GALLERY_MAX_EVENTS = 20;
const GALLERY_EVENTS = ['identity-created', 'identity-updated', 'identity-removed', 'template-added', 'template-removed'] as const;

/**
 * Fans pipeline results and server events out to WebSocket clients. Each frame is serialised once
 * and encoded to JPEG once per requested size, whatever the number of clients; each client then
 * gets it through its own bounded outbox (see LiveClient), so the pipeline never waits on a socket.
 */
export class LiveHub {
  private readonly clients = new Map<string, LiveClient>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly unsubscribe: (() => void)[] = [];
  private galleryListening: Gallery | undefined;
  private closing = false;

  constructor(private readonly deps: LiveHubDeps) {
    const { source } = deps;
    const onFrame = (result: FrameResult, picture: LivePicture | undefined) => this.onFrame(result, picture);
    const onAppearance = (event: AppearanceEvent) => this.onAppearance(event);
    const onStream = (change: StreamChange) => this.broadcast({ v: 1, type: 'stream', event: change.type, stream: change.stream });
    source.on('frame', onFrame);
    source.on('appearance', onAppearance);
    source.on('stream', onStream);
    this.unsubscribe.push(
      () => source.off('frame', onFrame),
      () => source.off('appearance', onAppearance),
      () => source.off('stream', onStream),
    );
    this.watchGallery();
    if (deps.history) this.unsubscribe.push(forwardHistory(deps.history, (streamId, payload) => this.publish(streamId, payload)));
    this.timers.push(setInterval(() => this.heartbeat(), deps.config.heartbeatMs));
    this.timers.push(
      setInterval(() => {
        this.sendStats();
        this.announcePictureInterest();
      }, 1000),
    );
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Subscribes to the current gallery's events (call again after the gallery is replaced). */
  watchGallery(): void {
    const gallery = this.deps.gallery();
    if (gallery === this.galleryListening) return;
    const previous = this.galleryListening;
    if (previous) for (const e of GALLERY_EVENTS) previous.removeListener(e, this.galleryHandlers[e]);
    this.galleryListening = gallery;
    if (gallery) for (const e of GALLERY_EVENTS) gallery.on(e, this.galleryHandlers[e]);
  }

  private galleryPending: Record<string, unknown>[] = [];
  private galleryTimer: NodeJS.Timeout | undefined;

  private readonly galleryHandlers = Object.fromEntries(
    GALLERY_EVENTS.map((event) => [
      event,
      (payload: { identity?: unknown; template?: unknown; templateId?: string; identityId?: string }) => {
        const counts = this.galleryListening?.counts() ?? null;
        if (counts) this.deps.metrics.galleryCounts(counts);
        if (this.clients.size === 0) return;
        this.galleryPending.push({ v: 1, type: 'gallery', event, identity: payload.identity ?? null, template: payload.template ?? null, templateId: payload.templateId ?? null, identityId: payload.identityId ?? null, counts });
        this.galleryTimer ??= setTimeout(() => this.flushGallery(), GALLERY_COALESCE_MS);
      },
    ]),
  ) as Record<(typeof GALLERY_EVENTS)[number], (payload: object) => void>;

  /**
   * Gallery changes go out in small groups: one by one when there are few, as a single "changed"
   * summary when a bulk import or enrollment makes many, which would otherwise flood every client.
   */
  private flushGallery(): void {
    this.galleryTimer = undefined;
    const pending = this.galleryPending;
    this.galleryPending = [];
    if (pending.length <= GALLERY_MAX_EVENTS) for (const m of pending) this.broadcast(m as { type: string });
    else this.broadcast({ v: 1, type: 'gallery', event: 'changed', changes: pending.length, counts: this.galleryListening?.counts() ?? null });
  }

  /** Clamps a client's picture request to the server's limits; undefined fields take defaults. */
  jpegOptions(req: JpegRequest | null | undefined): JpegOptions | null {
    if (!req) return null;
    const c = this.deps.config;
    return {
      fps: Math.min(c.maxJpegFps, Math.max(0.1, req.fps ?? 5)),
      width: Math.min(c.maxJpegWidth, Math.max(16, Math.round(req.width ?? 640))),
      quality: Math.min(100, Math.max(10, Math.round(req.quality ?? c.jpegQuality))),
    };
  }

  /** Takes over an upgraded socket. */
  attach(socket: WebSocket, role: string, subscription: Subscription): LiveClient | undefined {
    if (this.closing) {
      socket.close(1001, 'server shutting down');
      return undefined;
    }
    if (this.clients.size >= this.deps.config.maxClients) {
      socket.close(1013, 'too many clients');
      return undefined;
    }
    const id = crypto.randomUUID();
    const { metrics } = this.deps;
    const client = new LiveClient(id, socket, role, subscription, this.deps.config, {
      sent: (type, bytes, capturedAt) => metrics.wsMessageSent(type, bytes, capturedAt === undefined ? undefined : Date.now() - capturedAt),
      dropped: (n) => metrics.wsMessagesDropped(n),
    });
    this.clients.set(id, client);
    metrics.wsClientCount(this.clients.size);
    socket.on('pong', () => (client.alive = true));
    socket.on('message', (data, isBinary) => this.onMessage(client, data as Buffer, isBinary));
    socket.on('close', () => {
      this.clients.delete(id);
      metrics.wsClientCount(this.clients.size);
    });
    socket.on('error', (err) => this.deps.logger.debug({ client: id, err: err.message }, 'websocket error'));
    client.sendNow(this.state('hello', client));
    return client;
  }

  private onMessage(client: LiveClient, data: Buffer, isBinary: boolean): void {
    const fail = (detail: string) => client.sendNow({ v: 1, type: 'error', code: 'BAD_REQUEST', detail });
    if (isBinary) return fail('binary messages are not understood; send JSON text');
    let msg: unknown;
    try {
      msg = JSON.parse(data.toString('utf8'));
    } catch {
      return fail('not JSON');
    }
    const m = msg as { type?: unknown; streams?: unknown; jpeg?: unknown };
    if (m === null || typeof m !== 'object') return fail('a message must be a JSON object');
    if (m.type === 'ping') return client.sendNow({ v: 1, type: 'pong', serverTime: Date.now() });
    if (m.type !== 'subscribe') return fail(`unknown message type ${JSON.stringify(m.type)}; expected "subscribe" or "ping"`);
    let streams: string[] | null;
    if (m.streams === '*' || m.streams === undefined || m.streams === null) streams = null;
    else if (Array.isArray(m.streams) && m.streams.length <= 1000 && m.streams.every((s) => typeof s === 'string' && s.length <= 64)) streams = m.streams as string[];
    else return fail('streams must be "*" or an array of stream ids');
    let jpeg: JpegOptions | null;
    if (m.jpeg === undefined || m.jpeg === false || m.jpeg === null) jpeg = null;
    else if (m.jpeg === true) jpeg = this.jpegOptions({});
    else if (typeof m.jpeg === 'object' && !Array.isArray(m.jpeg)) {
      const j = m.jpeg as Record<string, unknown>;
      const num = (v: unknown) => (v === undefined ? undefined : typeof v === 'number' && Number.isFinite(v) ? v : NaN);
      const req = { fps: num(j.fps), width: num(j.width), quality: num(j.quality) };
      if (Object.values(req).some((v) => Number.isNaN(v)) || Object.keys(j).some((k) => !['fps', 'width', 'quality'].includes(k))) return fail('jpeg must be false or { fps, width, quality } with numbers');
      jpeg = this.jpegOptions(req);
    } else return fail('jpeg must be false or { fps, width, quality }');
    client.subscription = { streams, jpeg };
    client.lastJpegAt.clear();
    this.announcePictureInterest();
    client.sendNow(this.state('state', client));
  }

  /** The current state a (re)connecting client needs. */
  private state(type: 'hello' | 'state', client: LiveClient): StateMessage {
    const { source } = this.deps;
    const all = source.streams();
    const appearances: StateMessage['appearances'] = {};
    const log: AppearanceEvent[] = [];
    for (const s of all) {
      if (!client.wants(s.id)) continue;
      const a = source.appearances(s.id);
      if (!a) continue;
      appearances[s.id] = a.current;
      log.push(...a.log.slice(-50));
    }
    log.sort((x, y) => (x.type === 'left' ? x.lastSeen : x.firstSeen) - (y.type === 'left' ? y.lastSeen : y.firstSeen));
    const gallery = this.deps.gallery();
    return {
      v: 1,
      type,
      ...(type === 'hello' ? { clientId: client.id, role: client.role, heartbeatMs: this.deps.config.heartbeatMs } : {}),
      serverTime: Date.now(),
      subscription: client.subscription,
      streams: all,
      appearances,
      log: log.slice(-100),
      gallery: gallery ? gallery.counts() : null,
    };
  }

  private onFrame(result: FrameResult, picture: LivePicture | undefined): void {
    if (this.clients.size === 0) return;
    const message = { v: 1 as const, type: 'frame' as const, ...result };
    let text: Payload | undefined;
    const encodings = new Map<string, Promise<EncodedFrame | null> | null>();
    const now = Date.now();
    for (const client of this.clients.values()) {
      if (!client.wants(result.streamId)) continue;
      text ??= textPayload(message);
      const jpeg = client.subscription.jpeg;
      if (jpeg && picture && now - (client.lastJpegAt.get(result.streamId) ?? 0) >= 1000 / jpeg.fps - 5) {
        const key = `${jpeg.width}:${jpeg.quality}`;
        if (!encodings.has(key)) encodings.set(key, picture.encode(jpeg.width, jpeg.quality));
        const encoding = encodings.get(key);
        if (encoding) {
          client.lastJpegAt.set(result.streamId, now);
          const fallback = text;
          const packed = encoding.then((enc): Payload => (enc ? { data: packJpegFrame({ ...message, jpeg: { width: enc.width, height: enc.height, bytes: enc.data.length } } satisfies JpegHeader, enc.data), binary: true } : fallback));
          client.enqueue('frame', 'frame-jpeg', packed, result.capturedAt);
          continue;
        }
      }
      client.enqueue('frame', 'frame', text, result.capturedAt);
    }
  }

  private onAppearance(event: AppearanceEvent): void {
    let text: Payload | undefined;
    for (const client of this.clients.values()) {
      if (!client.wants(event.streamId)) continue;
      text ??= textPayload({ ...event, v: 1, type: 'appearance', event: event.type, appearances: this.appearanceRefs(event) });
      client.enqueue('event', 'appearance', text);
    }
  }

  /** The history's appearances behind an appeared/left event ("left" names no track: the identity's latest one). */
  private appearanceRefs(event: AppearanceEvent): { id: number; trackId: number; cropUrl: string }[] {
    return this.deps.history?.eventRefs(event.streamId, event.trackIds, event.identity.id, event.type === 'appeared') ?? [];
  }

  /** Sends an event to the clients subscribed to `streamId` (null: to every client). */
  publish(streamId: string | null, payload: Record<string, unknown> & { type: string }): void {
    if (this.clients.size === 0) return;
    let text: Payload | undefined;
    for (const client of this.clients.values()) {
      if (streamId !== null && !client.wants(streamId)) continue;
      text ??= textPayload(payload);
      client.enqueue('event', payload.type, text);
    }
  }

  private broadcast(payload: Record<string, unknown> & { type: string }): void {
    if (this.clients.size === 0) return;
    const text = textPayload(payload);
    for (const client of this.clients.values()) client.enqueue('event', payload.type, text);
  }

  private sendStats(): void {
    if (this.clients.size === 0) return;
    const streams = this.deps.source.streams().map((s) => ({ id: s.id, state: s.state, fps: s.fps, inputFps: s.inputFps, lastLatencyMs: s.stats.lastLatencyMs, processed: s.stats.processed, dropped: s.stats.dropped }));
    this.broadcast({ v: 1, type: 'stats', serverTime: Date.now(), streams, clients: this.clients.size });
  }

  private heartbeat(): void {
    for (const client of this.clients.values()) {
      if (!client.alive) {
        this.deps.logger.debug({ client: client.id }, 'websocket client missed a heartbeat; terminating');
        client.socket.terminate();
        continue;
      }
      client.alive = false;
      client.socket.ping();
      client.flush();
    }
  }

  /** Tells the source which streams viewers want pictures of (cluster workers encode JPEGs only for those). */
  private announcePictureInterest(): void {
    if (!this.deps.source.wantPictures) return;
    const wanted = new Set<string>();
    for (const c of this.clients.values()) {
      if (!c.subscription.jpeg) continue;
      if (c.subscription.streams === null) return this.deps.source.wantPictures(null);
      for (const s of c.subscription.streams) wanted.add(s);
    }
    if (wanted.size) this.deps.source.wantPictures([...wanted]);
  }

  /** Closes every client with 1001 (going away) and stops listening; resolves when all are closed or after timeoutMs. */
  async close(timeoutMs = 2000): Promise<void> {
    this.closing = true;
    for (const t of this.timers) clearInterval(t);
    if (this.galleryTimer) clearTimeout(this.galleryTimer);
    for (const u of this.unsubscribe) u();
    if (this.galleryListening) for (const e of GALLERY_EVENTS) this.galleryListening.removeListener(e, this.galleryHandlers[e]);
    const sockets = [...this.clients.values()].map((c) => c.socket);
    await Promise.all(
      sockets.map(
        (ws) =>
          new Promise<void>((resolve) => {
            if (ws.readyState === ws.CLOSED) return resolve();
            const timer = setTimeout(() => {
              ws.terminate();
              resolve();
            }, timeoutMs);
            ws.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
            ws.close(1001, 'server shutting down');
          }),
      ),
    );
  }

  /** Per-client counters, for tests and the benchmark. */
  clientStats(): { id: string; queued: number; dropped: number; sent: number }[] {
    return [...this.clients.values()].map((c) => ({ id: c.id, queued: c.queued, dropped: c.dropped, sent: c.sentMessages }));
  }
}
