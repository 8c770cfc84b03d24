import { EventEmitter } from 'node:events';
import sharp from 'sharp';
import type { HistoryConfig } from '../config/sections/history.js';
import { FacestreamError } from '../errors.js';
import { whileHeld } from '../ingest/frame-buffers.js';
import type { Box } from '../image/types.js';
import { canonicalCrop } from '../index/crop.js';
import type { Logger } from '../log.js';
import type { PipelineBus } from '../pipeline/bus.js';
import type { DetailedFace, FrameResult, PipelineFrame } from '../pipeline/result.js';
import { measureSharpness, releaseCandidates, sharpnessFactor, type Candidate } from './best-face.js';
import { UnknownClusters, type ClusterState } from './clusters.js';
import { PictureFiles, type PictureKind } from './files.js';
import type { HistoryMetrics } from './metrics.js';
import { AppearanceRecorder, type OpenAppearance } from './recorder.js';
import { AppearanceSearchIndex } from './search-index.js';
import { HistoryStore, type AppearanceFilter, type AppearanceRow } from './store.js';

/** An appearance as the API shows it (times in epoch ms). */
export interface Appearance {
  id: number;
  streamId: string;
  known: boolean;
  identity: { id: string; name: string } | null;
  clusterId: number | null;
  trackId: number;
  startedAt: number;
  endedAt: number;
  /** Best similarity to `identity` over the track (null for unknown people). */
  bestSimilarity: number | null;
  frames: number;
  /** The stored best face: detection score, shorter box side (px), sharpness, overall quality 0..1, box in frame pixels. */
  face: { score: number; size: number; sharpness: number | null; quality: number; box: Box };
  frame: { width: number; height: number };
  /** When the best face was captured (epoch ms): the snapshot's moment. */
  bestAt: number;
  cropUrl: string;
  snapshotUrl: string | null;
  hasEmbedding: boolean;
  /** Still going on (not stored yet). */
  open: boolean;
}

export interface ClusterInfo {
  id: number;
  size: number;
  firstSeen: number;
  lastSeen: number;
  streams: string[];
  /** The best few members (by face quality), with their crops. */
  samples: { id: number; cropUrl: string }[];
}

export type Usage = { known: { rows: number; bytes: number }; unknown: { rows: number; bytes: number } };

export type DeleteReason = 'age' | 'size' | 'request' | 'identity-removed' | 'privacy';

interface HistoryEvents {
  /** An appearance was written. */
  stored: [appearance: Appearance];
  /** Appearances were deleted. */
  deleted: [ids: number[], reason: DeleteReason];
  /** A cluster was created, changed, named, merged, split or discarded. */
  cluster: [event: { event: 'created' | 'updated' | 'named' | 'merged' | 'split' | 'discarded'; clusterId: number; identity?: { id: string; name: string } }];
}

export interface HistoryOpenOptions {
  dir: string;
  config: HistoryConfig;
  /** Dimension and model of the pipeline's embeddings. */
  dimension: number;
  modelId: string;
  logger: Logger;
  metrics: HistoryMetrics;
  /** Processed frames without a track before its appearance ends (default config, else 26). */
  endAfterFrames?: number;
  /**
   * Cluster threshold of the face library when config clustering.threshold is empty: the embedding
   * model's own (Embedder.defaultClusterSimilarity), on that model's similarity scale.
   */
  clusterSimilarity: number;
}

const URL_BASE = '/api/v1/appearances';
/** Ended appearances remembered for events that name a track after it ended. */
const RECENTLY_ENDED = 1024;

/**
 * The appearance history and face library: records every track of every stream as an appearance
 * (best face crop, snapshot, embedding) through a bounded write queue, enforces retention, answers
 * queries and search by face, and clusters unknown appearances so that they can be named.
 */
export class AppearanceHistory extends EventEmitter<HistoryEvents> {
  private readonly recorder: AppearanceRecorder;
  private readonly queue: OpenAppearance[] = [];
  private writing: Promise<void> | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private retentionRunning: Promise<void> | undefined;
  private unsubscribe: (() => void)[] = [];
  private closed = false;
  /** Counters for tests and the benchmark. */
  readonly counts = { stored: 0, dropped: 0, skipped: 0 };
  /** Stream and track -> the last appearances that ended (insertion order: oldest first). */
  private readonly recentlyEnded = new Map<string, { id: number; streamId: string; identityId: string | null }>();
  /** Rows and bytes per kind, read once at open and kept up to date (a GROUP BY per write would scan the table). */
  private readonly used: Usage;

  private constructor(
    readonly config: HistoryConfig,
    readonly store: HistoryStore,
    private readonly files: PictureFiles,
    private readonly index: AppearanceSearchIndex,
    readonly clusters: UnknownClusters,
    private readonly opts: HistoryOpenOptions,
  ) {
    super();
    this.used = store.usage();
    this.recorder = new AppearanceRecorder(
      { candidates: config.candidates, endAfterFrames: opts.endAfterFrames ?? config.endAfterFrames ?? 26, endAfterMs: config.endAfterMs },
      store.maxAppearanceId() + 1,
      (a) => this.enqueue(a),
    );
  }

  /** Opens (or creates) the history in `dir`, removing pictures no row points to and, when unknown storage is off, everything about unknown people. */
  static async open(opts: HistoryOpenOptions): Promise<AppearanceHistory> {
    const store = new HistoryStore(opts.dir);
    try {
      const files = new PictureFiles(opts.dir);
      const swept = await files.sweep(store.allFiles());
      if (swept) opts.logger.info({ files: swept }, 'history: removed pictures without a row (interrupted writes or deletions)');
      const retired = store.retireOtherModels(opts.modelId);
      if (retired) opts.logger.warn({ appearances: retired, model: opts.modelId }, `history: the embedding model is now ${opts.modelId}; ${retired} appearances made with another model can no longer be searched by face, and the unknown-people clusters start again`);
      const index = await AppearanceSearchIndex.open(opts.dir, store, opts.dimension, opts.logger);
      const clusters = UnknownClusters.fromRows(store.clusters(), opts.dimension, opts.config.clustering.threshold ?? opts.clusterSimilarity);
      const history = new AppearanceHistory(opts.config, store, files, index, clusters, opts);
      if (!opts.config.unknown.enabled) await history.forgetUnknown();
      await history.enforceRetention();
      history.refreshGauges();
      history.timers.push(setInterval(() => void history.enforceRetention(), opts.config.retentionIntervalSeconds * 1000));
      history.timers.push(setInterval(() => history.recorder.sweep(), Math.min(1000, opts.config.endAfterMs / 2)));
      for (const t of history.timers) t.unref();
      return history;
    } catch (err) {
      store.close();
      throw err;
    }
  }

  /** Follows a pipeline's frames (and its streams' ends). */
  attach(bus: PipelineBus): void {
    const onFrame = (r: FrameResult, f: PipelineFrame, faces?: DetailedFace[]) => this.recorder.onFrame(r, f, faces);
    const onRemoved = (id: string) => this.recorder.endStream(id);
    bus.on('frame', onFrame);
    bus.on('stream-removed', onRemoved);
    this.unsubscribe.push(
      () => bus.off('frame', onFrame),
      () => bus.off('stream-removed', onRemoved),
    );
  }

  /** Runs `fn` when the history closes (before it writes what is still open). */
  onClose(fn: () => void): void {
    this.unsubscribe.push(fn);
  }

  /**
   * The appearances of these tracks of a stream, going on now or ended recently (a "left" event
   * comes after its track ended): id and crop URL, for WebSocket and MQTT events. An appearance
   * opened ahead of its first frame has no crop until that frame is seen (404 meanwhile).
   */
  openRefs(streamId: string, trackIds: readonly number[], opts: { current?: boolean } = {}): { id: number; trackId: number; cropUrl: string }[] {
    return trackIds.flatMap((t) => {
      // `current`: the tracks are in view now (an "appeared" event), so their appearances exist even if not opened yet.
      const open = this.recorder.byTrack(streamId, t) ?? (opts.current ? this.recorder.ensure(streamId, t) : undefined);
      if (open) open.announced = true;
      const id = open?.id ?? this.recentlyEnded.get(`${streamId}\0${t}`)?.id;
      return id === undefined ? [] : [{ id, trackId: t, cropUrl: `${URL_BASE}/${id}/crop` }];
    });
  }

  /**
   * The appearances behind a presence event (WebSocket and MQTT "appeared" / "left"): by its tracks,
   * or, when it names none ("left" comes after the tracks ended), the identity's latest one on the stream.
   */
  eventRefs(streamId: string, trackIds: readonly number[], identityId: string | null, appeared: boolean): { id: number; trackId: number; cropUrl: string }[] {
    if (trackIds.length) return this.openRefs(streamId, trackIds, { current: appeared });
    return identityId ? this.latestRefs(streamId, identityId) : [];
  }

  /** The latest appearance of an identity on a stream, going on or ended recently. */
  latestRefs(streamId: string, identityId: string): { id: number; trackId: number; cropUrl: string }[] {
    const open = this.recorder.open().filter((a) => a.streamId === streamId && a.identity?.id === identityId);
    for (const a of open) a.announced = true;
    if (open.length) return open.map((a) => ({ id: a.id, trackId: a.trackId, cropUrl: `${URL_BASE}/${a.id}/crop` }));
    const ended = [...this.recentlyEnded].reverse().find(([, e]) => e.streamId === streamId && e.identityId === identityId);
    return ended ? [{ id: ended[1].id, trackId: Number(ended[0].split('\0')[1]), cropUrl: `${URL_BASE}/${ended[1].id}/crop` }] : [];
  }

  /** Stored rows and bytes per kind. */
  usage(): Usage {
    return { known: { ...this.used.known }, unknown: { ...this.used.unknown } };
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  // ------------------------------------------------------------------ writing

  /** An ended appearance: queued to be written, or its candidates' frames are let go at once. */
  private enqueue(a: OpenAppearance): void {
    if (!this.tryEnqueue(a)) releaseCandidates(a.candidates);
  }

  private tryEnqueue(a: OpenAppearance): boolean {
    if (this.closed && !this.flushing) return false;
    if ((a.frames < this.config.minFrames && !a.announced) || a.candidates.length === 0 || (!a.identity && !this.config.unknown.enabled)) {
      this.counts.skipped++;
      return false;
    }
    if (this.queue.length >= this.config.queueSize) {
      this.counts.dropped++;
      this.opts.metrics.dropped.inc({ reason: 'queue-full' });
      return false;
    }
    this.queue.push(a);
    this.recentlyEnded.set(`${a.streamId}\0${a.trackId}`, { id: a.id, streamId: a.streamId, identityId: a.identity?.id ?? null });
    if (this.recentlyEnded.size > RECENTLY_ENDED) this.recentlyEnded.delete(this.recentlyEnded.keys().next().value!);
    this.opts.metrics.queue.set(this.queue.length);
    if (!this.writing) {
      const run = this.drain().finally(() => {
        if (this.writing === run) this.writing = undefined;
      });
      this.writing = run;
    }
    return true;
  }

  private flushing = false;

  private async drain(): Promise<void> {
    try {
      while (this.queue.length) {
        const a = this.queue.shift()!;
        this.opts.metrics.queue.set(this.queue.length);
        const end = this.opts.metrics.writeSeconds.startTimer();
        try {
          await this.write(a);
          end();
        } catch (err) {
          this.counts.dropped++;
          this.opts.metrics.dropped.inc({ reason: 'error' });
          this.opts.logger.warn({ err: (err as Error).message, stream: a.streamId, track: a.trackId }, 'history: appearance not stored');
        } finally {
          releaseCandidates(a.candidates);
        }
      }
    } finally {
      this.opts.metrics.queue.set(this.queue.length);
    }
  }

  /** The stored best face: the candidate with the best geometric quality x sharpness. */
  private async pickBest(candidates: readonly Candidate[]): Promise<{ c: Candidate; sharpness: number | null; quality: number }> {
    let best: { c: Candidate; sharpness: number | null; quality: number } | undefined;
    for (const c of candidates) {
      const sharpness = await measureSharpness(c.frame, c.box).catch(() => null);
      const quality = c.quality * (sharpness === null ? 0.5 : sharpnessFactor(sharpness));
      if (!best || quality > best.quality) best = { c, sharpness, quality };
    }
    return best!;
  }

  private async encodeCrop(c: Candidate): Promise<Buffer> {
    const crop = await canonicalCrop(c.frame, c, { size: this.config.crop.size, margin: this.config.crop.margin, format: 'jpeg', quality: this.config.crop.quality });
    return crop.data;
  }

  private async encodeSnapshot(c: Candidate): Promise<Buffer> {
    const f = c.frame;
    let img = sharp(Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength), { raw: { width: f.width, height: f.height, channels: 3 } });
    if (f.width > this.config.snapshot.maxWidth) img = img.resize(this.config.snapshot.maxWidth, undefined, { kernel: 'linear' });
    return img.jpeg({ quality: this.config.snapshot.quality }).toBuffer();
  }

  private async write(a: OpenAppearance): Promise<void> {
    const best = await this.pickBest(a.candidates);
    const crop = await this.encodeCrop(best.c);
    const snapshot = this.config.snapshot.enabled ? await this.encodeSnapshot(best.c) : null;
    const at = best.c.frame.capturedAt;
    const cropFile = this.files.name(a.id, 'crop', a.startedAt);
    const snapshotFile = snapshot ? this.files.name(a.id, 'snapshot', a.startedAt) : null;
    await this.files.write(cropFile, crop);
    if (snapshot && snapshotFile) await this.files.write(snapshotFile, snapshot);
    // The crop and snapshot are durable: now the row (a crash before this leaves files the next open sweeps).
    const embedding = a.embedding?.vector ?? null;
    const bestSimilarity = a.identity ? (a.similarity.get(a.identity.id) ?? null) : null;
    const row = {
      id: a.id,
      streamId: a.streamId,
      identity: a.identity,
      trackId: a.trackId,
      startedAt: a.startedAt,
      endedAt: a.lastSeenAt,
      bestSimilarity,
      frames: a.frames,
      faceScore: best.c.score,
      faceSize: Math.min(best.c.box[2] - best.c.box[0], best.c.box[3] - best.c.box[1]),
      sharpness: best.sharpness,
      quality: best.quality,
      box: best.c.box,
      frameWidth: best.c.frame.width,
      frameHeight: best.c.frame.height,
      bestAt: at,
      cropFile,
      snapshotFile,
      bytes: crop.length + (snapshot?.length ?? 0) + (embedding ? embedding.length * 4 : 0),
      modelId: embedding ? this.opts.modelId : null,
      embedding,
    };
    if (this.closed && !this.flushing) return this.files.remove([cropFile, snapshotFile]);
    let clusterEvent: { event: 'created' | 'updated'; clusterId: number } | undefined;
    this.store.transaction(() => {
      let clusterId: number | null = null;
      if (!a.identity && embedding) {
        const near = this.clusters.nearest(embedding);
        if (near) {
          const c = this.clusters.add(near.cluster.id, embedding, a.startedAt, a.lastSeenAt);
          this.persistCluster(c);
          clusterId = c.id;
          clusterEvent = { event: 'updated', clusterId };
        } else {
          clusterId = this.store.insertCluster(embedding, 1, a.startedAt, a.lastSeenAt);
          this.clusters.create(clusterId, embedding, a.startedAt, a.lastSeenAt);
          clusterEvent = { event: 'created', clusterId };
        }
      }
      this.store.insert(row, clusterId);
    });
    if (embedding) this.index.add(a.id, embedding);
    const kind = a.identity ? 'known' : 'unknown';
    this.used[kind].rows++;
    this.used[kind].bytes += row.bytes;
    this.counts.stored++;
    this.opts.metrics.stored.inc({ kind });
    this.refreshGauges();
    const stored = this.get(a.id);
    if (stored) this.emit('stored', stored);
    if (clusterEvent) this.emit('cluster', clusterEvent);
    const limit = this.config[kind].maxBytes;
    if (limit > 0 && this.used[kind].bytes > limit) void this.enforceRetention();
  }

  private persistCluster(c: ClusterState): void {
    this.store.updateCluster(c.id, c.sum, c.size, c.firstSeen, c.lastSeen);
  }

  private refreshGauges(): void {
    const u = this.used;
    for (const k of ['known', 'unknown'] as const) {
      this.opts.metrics.rows.set({ kind: k }, u[k].rows);
      this.opts.metrics.bytes.set({ kind: k }, u[k].bytes);
    }
    this.opts.metrics.clusters.set(this.clusters.size);
  }

  /** Resolves when every appearance queued so far is written, and the retention run they started is over (tests, shutdown). */
  async flush(): Promise<void> {
    while (this.writing || this.retentionRunning) await (this.writing ?? this.retentionRunning);
  }

  // ------------------------------------------------------------------ retention and deletion

  /** Deletes what retention says is due: by age, then the oldest while over the size limit, per kind. */
  enforceRetention(now = Date.now()): Promise<void> {
    if (this.retentionRunning) return this.retentionRunning;
    // Cleared in a .finally, which always runs after this assignment (a run with nothing to do may finish at once).
    const run = this.retain(now)
      .catch((err: Error) => this.opts.logger.warn({ err: err.message }, 'history: retention failed'))
      .finally(() => {
        if (this.retentionRunning === run) this.retentionRunning = undefined;
      });
    this.retentionRunning = run;
    return run;
  }

  private async retain(now: number): Promise<void> {
    for (const known of [true, false]) {
      const rule = known ? this.config.known : this.config.unknown;
      if (rule.days > 0) {
        const cutoff = now - rule.days * 86_400_000;
        for (let rows = this.store.oldest(known, cutoff, 500); rows.length; rows = this.store.oldest(known, cutoff, 500)) await this.deleteRows(rows, 'age');
      }
      if (rule.maxBytes > 0) {
        let over = this.used[known ? 'known' : 'unknown'].bytes - rule.maxBytes;
        while (over > 0) {
          const rows = this.store.oldest(known, Number.MAX_SAFE_INTEGER, 200);
          if (rows.length === 0) break;
          const take: AppearanceRow[] = [];
          for (const r of rows) {
            if (over <= 0) break;
            take.push(r);
            over -= r.bytes;
          }
          await this.deleteRows(take, 'size');
        }
      }
    }
  }

  /** Deletes rows, their pictures, their search entries and their share of their clusters. */
  private async deleteRows(rows: readonly AppearanceRow[], reason: DeleteReason): Promise<number[]> {
    if (rows.length === 0) return [];
    const clustered = rows.filter((r) => r.cluster_id !== null && r.has_embedding).map((r) => ({ r, v: this.store.embedding(r.id, this.opts.dimension)! }));
    const deleted = this.store.transaction(() => {
      const out = this.store.delete(rows.map((r) => r.id));
      for (const { r, v } of clustered) {
        const c = this.clusters.remove(r.cluster_id!, v);
        if (c) this.persistCluster(c);
        else this.store.deleteCluster(r.cluster_id!);
      }
      return out;
    });
    for (const r of deleted) {
      if (r.has_embedding) this.index.remove(r.id);
      const u = this.used[r.known ? 'known' : 'unknown'];
      u.rows--;
      u.bytes -= r.bytes;
    }
    await this.files.remove(deleted.flatMap((r) => [r.crop_file, r.snapshot_file]));
    const ids = deleted.map((r) => r.id);
    this.opts.metrics.deleted.inc({ reason }, ids.length);
    this.refreshGauges();
    this.emit('deleted', ids, reason);
    return ids;
  }

  /** Deletes one appearance; false when there is none with this id. */
  async delete(id: number): Promise<boolean> {
    const row = this.store.get(id);
    if (!row) return false;
    await this.deleteRows([row], 'request');
    return true;
  }

  /** Deletes every appearance matching a filter (an identity's: the right to be forgotten). Returns how many. */
  async deleteWhere(filter: AppearanceFilter, reason: DeleteReason = 'request'): Promise<number> {
    let n = 0;
    for (let ids = this.store.ids(filter, 1000); ids.length; ids = this.store.ids(filter, 1000)) n += (await this.deleteRows(this.store.getMany(ids), reason)).length;
    return n;
  }

  /** Unknown storage is off: nothing about unknown people stays. */
  private async forgetUnknown(): Promise<void> {
    const n = await this.deleteWhere({ known: false }, 'privacy');
    for (const c of this.clusters.all()) {
      this.clusters.drop(c.id);
      this.store.deleteCluster(c.id);
    }
    if (n) this.opts.logger.info({ appearances: n }, 'history: unknown storage is off; deleted the stored unknown appearances');
  }

  /** An identity was renamed in the gallery. */
  renameIdentity(identityId: string, name: string): void {
    this.store.renameIdentity(identityId, name);
  }

  // ------------------------------------------------------------------ reading

  toAppearance(r: AppearanceRow): Appearance {
    return {
      id: r.id,
      streamId: r.stream_id,
      known: r.known === 1,
      identity: r.identity_id ? { id: r.identity_id, name: r.identity_name ?? r.identity_id } : null,
      clusterId: r.cluster_id,
      trackId: r.track_id,
      startedAt: r.started_at,
      endedAt: r.ended_at,
      bestSimilarity: r.best_similarity,
      frames: r.frames,
      face: { score: r.face_score, size: r.face_size, sharpness: r.sharpness, quality: r.quality, box: JSON.parse(r.box) as Box },
      frame: { width: r.frame_width, height: r.frame_height },
      bestAt: r.best_at,
      cropUrl: `${URL_BASE}/${r.id}/crop`,
      snapshotUrl: r.snapshot_file ? `${URL_BASE}/${r.id}/snapshot` : null,
      hasEmbedding: r.has_embedding === 1,
      open: false,
    };
  }

  get(id: number): Appearance | undefined {
    const r = this.store.get(id);
    return r ? this.toAppearance(r) : undefined;
  }

  require(id: number): Appearance {
    const a = this.get(id);
    if (!a) throw new FacestreamError('APPEARANCE_NOT_FOUND', `no stored appearance ${id}`, { appearanceId: id });
    return a;
  }

  /** Newest first; `next` is the cursor of the following page (null on the last). */
  list(filter: AppearanceFilter, limit: number): { appearances: Appearance[]; next: number | null } {
    const rows = this.store.list(filter, limit + 1);
    const page = rows.slice(0, limit);
    return { appearances: page.map((r) => this.toAppearance(r)), next: rows.length > limit ? page[page.length - 1].id : null };
  }

  count(filter: AppearanceFilter): number {
    return this.store.count(filter);
  }

  /** A stored picture, or for an appearance still going on, its best crop so far (encoded now). */
  async picture(id: number, kind: PictureKind): Promise<Buffer> {
    const r = this.store.get(id);
    if (r) {
      const file = kind === 'crop' ? r.crop_file : r.snapshot_file;
      if (!file) throw new FacestreamError('APPEARANCE_NOT_FOUND', `appearance ${id} has no snapshot (history.snapshot.enabled was off)`, { appearanceId: id });
      return this.files.read(file);
    }
    const open = this.recorder.find(id);
    if (open && open.candidates.length && (open.identity || this.config.unknown.enabled)) {
      const best = open.candidates[0];
      // A better candidate may push this one out while it is encoded.
      return whileHeld(best.frame, () => (kind === 'crop' ? this.encodeCrop(best) : this.encodeSnapshot(best)));
    }
    throw new FacestreamError('APPEARANCE_NOT_FOUND', `no appearance ${id}`, { appearanceId: id });
  }

  /** Stored appearances whose best face is nearest to a unit embedding (HNSW), best first. */
  searchByFace(v: Float32Array, opts: { k: number; minSimilarity: number; known?: boolean }): (Appearance & { similarity: number })[] {
    // Over-fetch when filtering by kind: the nearest neighbours may be of the other kind.
    const hits = this.index.search(v, opts.known === undefined ? opts.k : opts.k * 4).filter((h) => h.similarity >= opts.minSimilarity);
    const sim = new Map(hits.map((h) => [h.id, h.similarity]));
    return this.store
      .getMany(hits.map((h) => h.id))
      .filter((r) => opts.known === undefined || (r.known === 1) === opts.known)
      .slice(0, opts.k)
      .map((r) => ({ ...this.toAppearance(r), similarity: sim.get(r.id)! }));
  }

  get searchIndexSize(): number {
    return this.index.size;
  }

  // ------------------------------------------------------------------ the face library

  clusterInfo(c: ClusterState): ClusterInfo {
    const members = this.store.clusterMembers(c.id);
    return {
      id: c.id,
      size: c.size,
      firstSeen: c.firstSeen,
      lastSeen: c.lastSeen,
      streams: [...new Set(members.map((m) => m.stream_id))].sort(),
      samples: members.slice(0, 6).map((m) => ({ id: m.id, cropUrl: `${URL_BASE}/${m.id}/crop` })),
    };
  }

  /** Clusters, most recently seen first. */
  listClusters(opts: { offset: number; limit: number; minSize: number }): { clusters: ClusterInfo[]; total: number } {
    const all = this.clusters
      .all()
      .filter((c) => c.size >= opts.minSize)
      .sort((a, b) => b.lastSeen - a.lastSeen || b.id - a.id);
    return { clusters: all.slice(opts.offset, opts.offset + opts.limit).map((c) => this.clusterInfo(c)), total: all.length };
  }

  requireCluster(id: number): ClusterState {
    const c = this.clusters.get(id);
    if (!c) throw new FacestreamError('CLUSTER_NOT_FOUND', `no cluster ${id}`, { clusterId: id });
    return c;
  }

  /** Member ids by face quality, best first. */
  clusterMemberIds(id: number): number[] {
    this.requireCluster(id);
    return this.store.clusterMembers(id).map((m) => m.id);
  }

  /** The best crops of a cluster, as pictures to enroll. */
  async clusterCrops(id: number, n = this.config.enrollCrops): Promise<{ name: string; data: Buffer }[]> {
    const ids = this.clusterMemberIds(id).slice(0, n);
    return Promise.all(ids.map(async (a) => ({ name: `appearance-${a}.jpg`, data: await this.picture(a, 'crop') })));
  }

  /** After a cluster was enrolled as `identity`: its appearances become that identity's, and the cluster goes. */
  assignCluster(id: number, identity: { id: string; name: string }): number {
    const ids = this.clusterMemberIds(id);
    const bytes = this.store.getMany(ids).reduce((n, r) => n + r.bytes, 0);
    this.used.unknown.rows -= ids.length;
    this.used.unknown.bytes -= bytes;
    this.used.known.rows += ids.length;
    this.used.known.bytes += bytes;
    this.store.transaction(() => {
      this.store.relabel(ids, identity);
      this.store.deleteCluster(id);
    });
    this.clusters.drop(id);
    this.refreshGauges();
    this.emit('cluster', { event: 'named', clusterId: id, identity });
    return ids.length;
  }

  /** Folds the `from` clusters into `into`. */
  mergeClusters(into: number, from: readonly number[]): ClusterInfo {
    this.requireCluster(into);
    for (const f of from) {
      if (f === into) throw new FacestreamError('BAD_REQUEST', `cannot merge cluster ${into} into itself`, { clusterId: into });
      this.requireCluster(f);
    }
    this.store.transaction(() => {
      for (const f of from) {
        this.store.setCluster(this.store.clusterMembers(f).map((m) => m.id), into);
        this.clusters.merge(into, f);
        this.store.deleteCluster(f);
      }
      this.persistCluster(this.clusters.get(into)!);
    });
    this.refreshGauges();
    for (const f of from) this.emit('cluster', { event: 'merged', clusterId: f });
    this.emit('cluster', { event: 'updated', clusterId: into });
    return this.clusterInfo(this.clusters.get(into)!);
  }

  /** Moves some members of a cluster to a new cluster; both centroids are recomputed from their members. */
  splitCluster(id: number, appearanceIds: readonly number[]): { from: ClusterInfo; to: ClusterInfo } {
    const members = this.store.clusterMembers(id);
    this.requireCluster(id);
    const moving = new Set(appearanceIds);
    for (const a of moving) if (!members.some((m) => m.id === a)) throw new FacestreamError('BAD_REQUEST', `appearance ${a} is not in cluster ${id}`, { clusterId: id, appearanceId: a });
    if (moving.size === 0 || moving.size >= members.length) throw new FacestreamError('BAD_REQUEST', 'a split moves some, not all, of a cluster\'s appearances', { clusterId: id });
    const withV = members.map((m) => ({ id: m.id, v: this.store.embedding(m.id, this.opts.dimension)!, startedAt: m.started_at, endedAt: m.ended_at }));
    const stay = withV.filter((m) => !moving.has(m.id));
    const go = withV.filter((m) => moving.has(m.id));
    let newId = 0;
    this.store.transaction(() => {
      const kept = this.clusters.reset(id, stay)!;
      this.persistCluster(kept);
      newId = this.store.insertCluster(new Float32Array(this.opts.dimension), 0, 0, 0);
      const created = this.clusters.reset(newId, go)!;
      this.persistCluster(created);
      this.store.setCluster(go.map((m) => m.id), newId);
    });
    this.refreshGauges();
    this.emit('cluster', { event: 'split', clusterId: id });
    this.emit('cluster', { event: 'created', clusterId: newId });
    return { from: this.clusterInfo(this.clusters.get(id)!), to: this.clusterInfo(this.clusters.get(newId)!) };
  }

  /** Deletes a cluster with all its appearances. Returns how many appearances went. */
  async discardCluster(id: number): Promise<number> {
    this.requireCluster(id);
    const n = await this.deleteWhere({ clusterId: id });
    if (this.clusters.get(id)) {
      this.clusters.drop(id);
      this.store.deleteCluster(id);
    }
    this.refreshGauges();
    this.emit('cluster', { event: 'discarded', clusterId: id });
    return n;
  }

  // ------------------------------------------------------------------ shutdown

  /**
   * Stops following the pipeline, writes the appearances still open and those queued (their
   * tracks end now), saves the search index and closes the database.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const u of this.unsubscribe.splice(0)) u();
    for (const t of this.timers) clearInterval(t);
    this.flushing = true;
    this.recorder.endAll();
    await this.flush();
    this.flushing = false;
    this.closed = true;
    await this.retentionRunning;
    await this.index.save().catch((err) => this.opts.logger.warn({ err: (err as Error).message }, 'history: search index not saved'));
    this.store.close();
  }
}
