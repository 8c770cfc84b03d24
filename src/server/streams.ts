import { EventEmitter } from 'node:events';
import type { Config } from '../config/schema.js';
import { errorMessage, FacestreamError } from '../errors.js';
import type { IngestError } from '../ingest/errors.js';
import { resolveSource, type SourceKind } from '../ingest/source.js';
import { redactText, redactUrl, urlSecrets } from '../redact.js';
import { FrameSource, type StreamState } from '../ingest/stream.js';
import type { Logger } from '../log.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { DropReason } from '../pipeline/result.js';
import { checkSource } from './source-policy.js';
import type { StreamDefinitionStore } from './definition-stores.js';
import type { StreamDefinition, StreamOptionKey } from './store.js';

/** A stream as API clients see it: the definition (URL redacted) with its live state. */
export interface StreamInfo {
  id: string;
  name: string;
  /** The source URL with credentials replaced by ***. */
  url: string;
  kind: SourceKind;
  enabled: boolean;
  options: Partial<Pick<StreamDefinition, StreamOptionKey>>;
  /** The reader's state; 'stopped' when not running. */
  state: StreamState;
  /** Why the stream is not live, when it is not (ingest error codes, or SOURCE_NOT_ALLOWED). */
  error: { code: string; message: string } | null;
  /** Frames per second delivered by the source (last 5 s). */
  inputFps: number;
  /** Frames per second the pipeline finished (last 5 s). */
  fps: number;
  stats: {
    framesRead: number;
    received: number;
    processed: number;
    dropped: Record<DropReason, number>;
    restarts: number;
    lastLatencyMs: number | null;
    width: number | null;
    height: number | null;
    lastFrameAt: number | null;
  };
  createdAt: string;
  updatedAt: string;
}

export type StreamInput = Partial<Pick<StreamDefinition, StreamOptionKey>> & { id?: string; name?: string; url: string; enabled?: boolean };
export type StreamPatch = Partial<Omit<StreamInput, 'id'>>;

export interface StreamChange {
  type: 'added' | 'updated' | 'removed' | 'state';
  stream: StreamInfo;
}

interface StreamManagerEvents {
  change: [StreamChange];
  /** ffmpeg restarts since the last event (metrics). */
  restart: [streamId: string, count: number];
}

/**
 * Where a stream runs. Embedded mode: every enabled stream runs here. Cluster mode
 * (src/cluster/ownership.ts): only the streams whose lease this node holds; the others are
 * shown with their owner's last status.
 */
export interface StreamPlacement {
  /** Whether this node should run the stream's reader. */
  runsHere(id: string): boolean;
  /** The live view of a stream another node runs (its last published status), if known. */
  remoteInfo?(id: string): StreamInfo | undefined;
}

const RUN_EVERYTHING: StreamPlacement = { runsHere: () => true };

/** A running reader and what the manager knows beside it. */
interface Running {
  source: FrameSource;
  frameTimes: number[];
  restartsSeen: number;
}

const EMPTY_DROPS: Record<DropReason, number> = { stale: 0, 'too-old': 0, error: 0, stopped: 0 };
const SOURCE_FIELDS: StreamOptionKey[] = ['fps', 'maxWidth', 'maxHeight', 'minFaceSize', 'recognitionInterval', 'detectionMode', 'keyframeIntervalMs', 'loop', 'realtime', 'rtspTransport'];

/**
 * Owns the server's streams: keeps their definitions in the store, runs a FrameSource per enabled
 * stream and feeds its frames to the pipeline, and reports state changes. Operations on one
 * stream run one at a time, so a start racing a delete cannot leave an orphan reader.
 *
 * The definitions are held in memory (loaded by load(), written through to the store before the
 * memory changes), so listing stays synchronous whatever the store is (the server's SQLite, or
 * PostgreSQL in cluster mode, where a write fails with STORE_UNAVAILABLE while it is down and
 * changes made by other nodes arrive through the store's onChange).
 */
export class StreamManager extends EventEmitter<StreamManagerEvents> {
  private readonly running = new Map<string, Running>();
  /** Errors raised before a reader could exist (source refused on restore). */
  private readonly setupErrors = new Map<string, { code: string; message: string }>();
  private readonly locks = new Map<string, Promise<unknown>>();
  /** The definitions, in the store's order. */
  private readonly defs = new Map<string, StreamDefinition>();
  private unsubscribe: (() => void) | undefined;
  private closed = false;

  constructor(
    private readonly store: StreamDefinitionStore,
    private readonly pipeline: Pipeline,
    private readonly config: Pick<Config, 'ingest' | 'server'>,
    private readonly logger: Logger,
    private readonly placement: StreamPlacement = RUN_EVERYTHING,
  ) {
    super();
  }

  /** Whether this node runs the stream's reader now. */
  isRunningHere(id: string): boolean {
    return this.running.has(id);
  }

  /**
   * Starts or stops a stream's reader to match its definition and the placement (cluster mode
   * calls this when this node gains or loses a stream's lease). A stream not (yet) known here is
   * ignored; it starts when its definition arrives (refresh).
   */
  async applyPlacement(id: string): Promise<void> {
    await this.locked(id, async () => {
      const def = this.defs.get(id);
      const wanted = !!def && def.enabled && this.placement.runsHere(id);
      if (this.running.has(id) && !wanted) {
        await this.stopReader(id);
        if (def) this.emitChange('state', def);
      } else if (!this.running.has(id) && wanted) await this.startReader(def);
    });
  }

  /** Reads the stored definitions (before list() or restore()) and follows the store's changes. */
  async load(): Promise<void> {
    this.defs.clear();
    for (const def of await this.store.list()) this.defs.set(def.id, def);
    this.unsubscribe ??= this.store.onChange((id) => void this.locked(id, () => this.refresh(id)).catch((err: unknown) => this.logger.warn({ stream: id, err: errorMessage(err) }, 'reading a changed stream definition failed')));
  }

  /**
   * A definition changed in the store, possibly by another node: the memory follows, and a
   * reader of a stream removed, disabled or with another source stops; it starts again (with the
   * new source) if the placement says it runs here (cluster mode: this node holds its lease).
   */
  private async refresh(id: string): Promise<void> {
    const stored = await this.store.get(id);
    const held = this.defs.get(id);
    if (!stored) {
      if (!held) return;
      this.defs.delete(id);
      await this.stopReader(id);
      this.setupErrors.delete(id);
      this.emitChange('removed', held);
      return;
    }
    if (held && sameDefinition(held, stored)) return;
    this.defs.set(id, stored);
    if (held && (!stored.enabled || stored.url !== held.url || SOURCE_FIELDS.some((k) => stored[k] !== held[k]))) await this.stopReader(id);
    this.emitChange(held ? 'updated' : 'added', stored);
    if (stored.enabled) await this.startReader(stored);
  }

  /** Starts every enabled stream found in the store (server start). */
  async restore(): Promise<void> {
    for (const def of [...this.defs.values()]) {
      if (def.enabled) await this.locked(def.id, () => this.startReader(def));
    }
  }

  list(): StreamInfo[] {
    return [...this.defs.values()].map((d) => this.info(d));
  }

  get(id: string): StreamInfo {
    return this.info(this.requireDef(id));
  }

  has(id: string): boolean {
    return this.defs.has(id);
  }

  async create(input: StreamInput): Promise<StreamInfo> {
    const id = input.id ?? this.newId(input.name ?? 'stream');
    return this.locked(id, async () => {
      if (this.defs.has(id)) throw new FacestreamError('STREAM_EXISTS', `stream "${id}" already exists`, { streamId: id });
      if (this.defs.size >= this.config.server.sources.maxStreams) {
        throw new FacestreamError('OVERLOADED', `this server runs at most ${this.config.server.sources.maxStreams} streams (server.sources.maxStreams)`, { limit: this.config.server.sources.maxStreams });
      }
      const now = new Date().toISOString();
      const def: StreamDefinition = { ...pickOptions(input), id, name: input.name?.trim() || id, url: input.url.trim(), enabled: input.enabled ?? true, createdAt: now, updatedAt: now };
      checkSource(this.specOf(def), this.config.server.sources, this.config.ingest);
      await this.store.insert(def);
      this.defs.set(id, def);
      this.logger.info({ stream: id, source: redactUrl(def.url) }, 'stream created');
      this.emitChange('added', def);
      if (def.enabled) await this.startReader(def);
      return this.info(def);
    });
  }

  async update(id: string, patch: StreamPatch): Promise<StreamInfo> {
    return this.locked(id, async () => {
      const old = this.requireDef(id);
      const next: StreamDefinition = { ...old, updatedAt: new Date().toISOString() };
      if (patch.name !== undefined) next.name = patch.name.trim() || id;
      // A client that read the redacted URL and sends it back unchanged keeps the real one.
      if (patch.url !== undefined && patch.url.trim() !== redactUrl(old.url)) next.url = patch.url.trim();
      if (patch.enabled !== undefined) next.enabled = patch.enabled;
      for (const k of SOURCE_FIELDS) if (k in patch) (next as unknown as Record<string, unknown>)[k] = (patch as Record<string, unknown>)[k] ?? undefined;
      checkSource(this.specOf(next), this.config.server.sources, this.config.ingest);
      await this.store.update(next);
      this.defs.set(id, next);
      const sourceChanged = next.url !== old.url || SOURCE_FIELDS.some((k) => next[k] !== old[k]);
      const isRunning = this.running.has(id);
      if (isRunning && (!next.enabled || sourceChanged)) await this.stopReader(id);
      this.emitChange('updated', next);
      if (next.enabled && (!isRunning || sourceChanged || !this.running.has(id))) await this.startReader(next);
      return this.info(next);
    });
  }

  async remove(id: string): Promise<void> {
    await this.locked(id, async () => {
      const def = this.requireDef(id);
      await this.stopReader(id);
      await this.store.delete(id);
      this.defs.delete(id);
      this.setupErrors.delete(id);
      this.logger.info({ stream: id }, 'stream removed');
      this.emitChange('removed', def);
    });
  }

  /** Enables and starts a stream (a failed or ended one starts afresh). */
  async start(id: string): Promise<StreamInfo> {
    return this.locked(id, async () => {
      let def = this.requireDef(id);
      if (!def.enabled) {
        def = { ...def, enabled: true, updatedAt: new Date().toISOString() };
        await this.store.update(def);
        this.defs.set(id, def);
      }
      const run = this.running.get(id);
      if (run && run.source.state !== 'failed' && run.source.state !== 'stopped') return this.info(def);
      if (run) await this.stopReader(id);
      await this.startReader(def);
      return this.info(def);
    });
  }

  /** Stops and disables a stream: it stays stopped across restarts until started again. */
  async stop(id: string): Promise<StreamInfo> {
    return this.locked(id, async () => {
      let def = this.requireDef(id);
      if (def.enabled) {
        def = { ...def, enabled: false, updatedAt: new Date().toISOString() };
        await this.store.update(def);
        this.defs.set(id, def);
      }
      await this.stopReader(id);
      this.emitChange('state', def);
      return this.info(def);
    });
  }

  /** Stops every reader (server shutdown); definitions keep their enabled flag for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    await Promise.all([...this.running.keys()].map((id) => this.locked(id, () => this.stopReader(id))));
  }

  private requireDef(id: string): StreamDefinition {
    const def = this.defs.get(id);
    if (!def) throw new FacestreamError('STREAM_NOT_FOUND', `no stream "${id}"`, { streamId: id });
    return def;
  }

  private newId(name: string): string {
    const base = name.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 48) || 'stream';
    if (!this.defs.has(base)) return base;
    for (let n = 2; ; n++) if (!this.defs.has(`${base}-${n}`)) return `${base}-${n}`;
  }

  private async locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(id, tail);
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    });
    return next;
  }

  private specOf(def: StreamDefinition) {
    return { id: def.id, url: def.url, fps: def.fps, maxWidth: def.maxWidth, maxHeight: def.maxHeight, loop: def.loop, realtime: def.realtime, rtspTransport: def.rtspTransport };
  }

  private async startReader(def: StreamDefinition): Promise<void> {
    if (this.closed || this.running.has(def.id) || !this.placement.runsHere(def.id)) return;
    this.setupErrors.delete(def.id);
    let source: FrameSource;
    try {
      const checked = checkSource(this.specOf(def), this.config.server.sources, this.config.ingest);
      source = new FrameSource({ ...this.specOf(def), url: checked.url }, { config: this.config.ingest, logger: this.logger });
    } catch (err) {
      // Restored streams whose source is no longer allowed (or gone) stay listed, failed, with the reason.
      const code = err instanceof FacestreamError ? err.code : 'SOURCE_FAILED';
      const message = redactText(errorMessage(err), urlSecrets(def.url));
      this.setupErrors.set(def.id, { code, message });
      this.logger.warn({ stream: def.id, code }, `stream ${def.id} cannot start: ${message}`);
      this.emitChange('state', def);
      return;
    }
    const run: Running = { source, frameTimes: [], restartsSeen: 0 };
    this.running.set(def.id, run);
    this.pipeline.addStream(def.id, {
      mode: 'live',
      minFaceSize: def.minFaceSize,
      recognitionInterval: def.recognitionInterval,
      detection: { mode: def.detectionMode, keyframeIntervalMs: def.keyframeIntervalMs },
    });
    source.on('frame', (frame) => {
      const t = frame.capturedAt;
      run.frameTimes.push(t);
      while (run.frameTimes.length && t - run.frameTimes[0] > 5000) run.frameTimes.shift();
      this.pipeline.offer(frame);
    });
    source.on('state', () => {
      const restarts = source.stats.restarts;
      if (restarts > run.restartsSeen) {
        this.emit('restart', def.id, restarts - run.restartsSeen);
        run.restartsSeen = restarts;
      }
      const current = this.defs.get(def.id);
      if (current && this.running.get(def.id) === run) this.emitChange('state', current);
    });
    source.start();
  }

  private async stopReader(id: string): Promise<void> {
    const run = this.running.get(id);
    if (!run) return;
    this.running.delete(id);
    this.pipeline.removeStream(id);
    await run.source.stop();
    run.source.removeAllListeners();
  }

  private emitChange(type: StreamChange['type'], def: StreamDefinition): void {
    this.emit('change', { type, stream: this.info(def) });
  }

  private info(def: StreamDefinition): StreamInfo {
    const run = this.running.get(def.id);
    const remote = run || !def.enabled ? undefined : this.placement.remoteInfo?.(def.id);
    if (remote) return { ...remote, id: def.id, name: def.name, url: redactUrl(def.url), enabled: def.enabled, options: pickOptions(def), createdAt: def.createdAt, updatedAt: def.updatedAt };
    const stats = this.pipeline.streamStats(def.id);
    const src = run?.source.stats;
    const setupError = this.setupErrors.get(def.id);
    const ingestError: IngestError | undefined = run?.source.lastError;
    const state: StreamState = setupError ? 'failed' : (run?.source.state ?? 'stopped');
    const times = run?.frameTimes ?? [];
    const span = times.length > 1 ? (times[times.length - 1] - times[0]) / 1000 : 0;
    const fresh = times.length > 0 && Date.now() - times[times.length - 1] < 5000;
    let kind: SourceKind = 'file';
    try {
      kind = resolveSource(this.specOf(def), this.config.ingest).kind;
    } catch {
      /* a stored definition that no longer resolves still lists */
    }
    return {
      id: def.id,
      name: def.name,
      url: redactUrl(def.url),
      kind,
      enabled: def.enabled,
      options: pickOptions(def),
      state,
      error: setupError ?? (ingestError && state !== 'live' ? { code: ingestError.code, message: redactText(ingestError.message, urlSecrets(def.url)) } : null),
      inputFps: fresh && span > 0 ? (times.length - 1) / span : 0,
      fps: run && state === 'live' ? (stats?.fps ?? 0) : 0,
      stats: {
        framesRead: src?.framesRead ?? 0,
        received: stats?.received ?? 0,
        processed: stats?.processed ?? 0,
        dropped: { ...(stats?.dropped ?? EMPTY_DROPS) },
        restarts: src?.restarts ?? 0,
        lastLatencyMs: stats?.lastLatencyMs ?? null,
        width: src?.width ?? null,
        height: src?.height ?? null,
        lastFrameAt: src?.lastFrameAt ?? null,
      },
      createdAt: def.createdAt,
      updatedAt: def.updatedAt,
    };
  }
}

/** Whether two definitions say the same (key order and absent-vs-undefined do not matter). */
function sameDefinition(a: StreamDefinition, b: StreamDefinition): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)] as (keyof StreamDefinition)[]);
  for (const k of keys) if ((a[k] ?? null) !== (b[k] ?? null)) return false;
  return true;
}

function pickOptions(src: Partial<Pick<StreamDefinition, StreamOptionKey>>): Partial<Pick<StreamDefinition, StreamOptionKey>> {
  const out: Record<string, unknown> = {};
  for (const k of SOURCE_FIELDS) if (src[k] !== undefined && src[k] !== null) out[k] = src[k];
  return out as Partial<Pick<StreamDefinition, StreamOptionKey>>;
}
