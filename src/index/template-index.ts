import fs from 'node:fs';
import path from 'node:path';
import type { GalleryConfig } from '../config/sections/gallery.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { HnswIndex } from './hnsw.js';
import { hnswFileProblem } from './hnsw-file-check.js';
import { readSavedIndex, removeStrayIndexFiles, saveIndex, savedIndexProblem, type SavedIndex } from './index-file.js';
import { Mutex } from './mutex.js';
import { ChangeOp, type GalleryStore } from './store.js';
import { ExactMatrix, TopK, dot, type ScoredTemplate } from './vectors.js';

/** How the last open got its index: a new empty one, the saved file (plus replayed changes), or a rebuild (and why). */
export interface IndexLoadReport {
  source: 'new' | 'loaded' | 'rebuilt';
  replayedChanges: number;
  reason?: string;
  ms: number;
}

/** What the index needs to know of the records: how many templates exist and whether one still does. */
export interface LiveTemplates {
  readonly templateCount: number;
  ownerOf(templateId: number): number;
}

export interface TemplateIndexOptions {
  dir: string;
  dimension: number;
  config: GalleryConfig;
  readOnly: boolean;
  logger: Logger;
}

/** Never compact an index over fewer deleted entries than this: rebuilding is not free. */
const MIN_DELETED_FOR_COMPACTION = 256;

/**
 * The search side of a gallery: an HNSW index over template embeddings (or an exact matrix while
 * the gallery is small), and its lifecycle on disk. It is a cache of the embeddings SQLite holds:
 * on open it is loaded from its last save and brought up to date from the change log, or rebuilt
 * when missing, stale or corrupt. While it is being saved or compacted it must not change, so
 * changes made meanwhile wait in a small overlay that searches consult exactly.
 */
export class TemplateIndex {
  loadReport: IndexLoadReport = { source: 'new', replayedChanges: 0, ms: 0 };
  private index!: HnswIndex;
  /** Exact search over every template while the gallery is small (see config.index.exactBelow). */
  private exact: ExactMatrix | null = null;
  private frozen = false;
  private readonly pendingAdds = new Map<number, Float32Array>();
  private readonly pendingRemoves = new Set<number>();
  private changesSinceSave = 0;
  private readonly maintenance = new Mutex();
  private timer?: NodeJS.Timeout;
  private closed = false;
  private background?: Promise<unknown>;
  /** A background save or compaction is queued or running: do not queue another. */
  private scheduled = false;
  private readonly dir: string;
  private readonly dimension: number;
  private readonly config: GalleryConfig;
  private readonly readOnly: boolean;
  private readonly logger: Logger;

  private constructor(
    opts: TemplateIndexOptions,
    private readonly store: GalleryStore,
    private readonly records: LiveTemplates,
  ) {
    this.dir = opts.dir;
    this.dimension = opts.dimension;
    this.config = opts.config;
    this.readOnly = opts.readOnly;
    this.logger = opts.logger;
  }

  /**
   * Opens the index of a gallery whose records are loaded: the saved file plus replayed changes,
   * else a rebuild from the database (saved in the background). `loading` is the saved index's
   * load, started by the caller before it read the records (see start()).
   */
  static async open(opts: TemplateIndexOptions, store: GalleryStore, records: LiveTemplates, started: TemplateIndexStart): Promise<TemplateIndex> {
    const index = new TemplateIndex(opts, store, records);
    await index.loadState(started);
    index.startTimer();
    return index;
  }

  /**
   * Starts loading the saved index on a libuv thread, so the caller can read the database
   * meanwhile: at 1M templates the load, the records and the checksum take ~14, ~1 and ~3 s.
   */
  static start(opts: TemplateIndexOptions, store: GalleryStore): TemplateIndexStart {
    const started = performance.now();
    const saved = readSavedIndex(store);
    const sizeProblem = saved ? savedIndexProblem(opts.dir, saved, opts.dimension, false) : undefined;
    // The structural check runs whatever the checksum setting: hnswlib trusts the file it loads,
    // and a damaged link list would make it read out of bounds (a segfault, not an exception).
    const loading = saved
      ? sizeProblem!.then(async (p) => {
          if (p) return undefined;
          const file = path.join(opts.dir, saved.file);
          const damage = await hnswFileProblem(file, opts.dimension, opts.config.index.initialCapacity);
          if (damage) throw new Error(damage);
          return HnswIndex.load(file, opts.dimension, opts.config.index);
        })
      : undefined;
    loading?.catch(() => undefined); // awaited in open(); a rejection before then must not go unhandled
    return { started, saved, loading };
  }

  // ---------------------------------------------------------------- loading and saving

  private async loadState({ started, saved, loading }: TemplateIndexStart): Promise<void> {
    if (!this.readOnly) removeStrayIndexFiles(this.dir, saved?.file);
    const failure = await this.tryLoadIndex(saved, loading);
    if (failure !== undefined) {
      if (failure) this.logger.warn({ dir: this.dir, reason: failure }, 'gallery: saved index unusable, rebuilding it from the database');
      this.index = await this.buildIndex();
      this.exact = null;
      this.loadReport = { source: 'rebuilt', replayedChanges: 0, reason: failure || 'no saved index', ms: 0 };
      this.changesSinceSave = Math.max(1, this.records.templateCount);
      // Save right away so the next open is fast; the gallery is usable meanwhile.
      if (this.records.templateCount > 0) this.saveInBackground();
    }
    this.loadReport.ms = performance.now() - started;
  }

  /** Takes the saved index (loading meanwhile) and replays later changes; returns why it must be rebuilt instead ('' when there is none). */
  private async tryLoadIndex(saved: SavedIndex | undefined, loading: Promise<HnswIndex | undefined> | undefined): Promise<string | undefined> {
    if (!saved) {
      if (this.records.templateCount > 0) return '';
      this.index = HnswIndex.create(this.dimension, this.config.index);
      this.loadReport = { source: 'new', replayedChanges: 0, ms: 0 };
      return undefined;
    }
    const reason = await savedIndexProblem(this.dir, saved, this.dimension, this.config.index.verifyChecksum);
    if (reason) return reason;
    let index: HnswIndex | undefined;
    try {
      index = await loading;
      if (!index) return 'index file unusable';
      index.setDeletedCount(saved.deleted);
    } catch (err) {
      return `the saved index ${saved.file} is damaged: ${errorMessage(err)}`;
    }
    const { complete, changes } = this.store.changesAfter(saved.seq);
    if (!complete) return 'the change log does not reach back to the saved index';
    for (const c of changes) {
      if (c.op === ChangeOp.Add) {
        const v = this.store.embedding(c.template, this.dimension);
        if (v) index.add(c.template, v);
      } else index.remove(c.template);
    }
    const problem = this.contentProblem(index);
    if (problem) return `the saved index is stale: ${problem}`;
    this.index = index;
    this.changesSinceSave = changes.length;
    this.loadReport = { source: 'loaded', replayedChanges: changes.length, ms: 0 };
    return undefined;
  }

  /** Cheap consistency checks after loading: counts, and a sample of vectors against SQLite. */
  private contentProblem(index: HnswIndex): string | undefined {
    if (index.size !== this.records.templateCount) return `index holds ${index.size} live entries, the database ${this.records.templateCount} templates`;
    const labels = index.labels();
    if (labels.length !== index.size + index.deletedCount) return 'index entry count disagrees with its deleted count';
    for (let i = 0; i < Math.min(16, labels.length); i++) {
      const label = labels[Math.floor(Math.random() * labels.length)];
      if (this.records.ownerOf(label) === 0) continue; // deleted since
      const stored = this.store.embedding(label, this.dimension);
      const indexed = index.vector(label);
      if (!stored) continue;
      for (let d = 0; d < this.dimension; d++) if (Math.abs(stored[d] - indexed[d]) > 1e-5) return `template ${label} differs between index and database`;
    }
    return undefined;
  }

  /** Builds a fresh index from every stored embedding, yielding to the event loop now and then. */
  private async buildIndex(upToId = Infinity): Promise<HnswIndex> {
    const live = this.records.templateCount;
    const index = HnswIndex.create(this.dimension, this.config.index, Math.max(this.config.index.initialCapacity, Math.ceil(live * 1.25)));
    const started = performance.now();
    let after = 0;
    for (;;) {
      // Pages, not one long iterator: writes may happen between pages (during compaction).
      const page = this.store.embeddingsPage(this.dimension, after, 4096);
      if (page.length === 0) break;
      for (const [id, v] of page) {
        if (id > upToId) break;
        index.add(id, v);
      }
      after = page[page.length - 1][0];
      if (after >= upToId) break;
      if (performance.now() - started > 2000) this.logger.info({ dir: this.dir, built: index.size, of: live }, 'gallery: building index');
      await new Promise((r) => setImmediate(r));
    }
    return index;
  }

  private startTimer(): void {
    if (this.readOnly || this.config.index.saveIntervalSeconds <= 0) return;
    this.timer = setInterval(() => {
      if (this.changesSinceSave > 0) this.saveInBackground();
    }, this.config.index.saveIntervalSeconds * 1000);
    this.timer.unref();
  }

  /** Stops index changes; later ones wait in the overlay until thaw(). */
  private freeze(): void {
    this.frozen = true;
  }

  private thaw(target: HnswIndex = this.index): void {
    for (const [id, v] of this.pendingAdds) target.add(id, v);
    for (const id of this.pendingRemoves) target.remove(id);
    this.pendingAdds.clear();
    this.pendingRemoves.clear();
    this.index = target;
    this.frozen = false;
  }

  /**
   * Saves the index atomically (see index-file.ts) when it changed since the last save. Changes
   * made meanwhile wait in the overlay, so the file reflects exactly the change log up to `seq`.
   */
  save(): Promise<void> {
    if (this.readOnly) return Promise.resolve();
    return this.maintenance.run(async () => {
      if (this.closed && !this.store.db.open) return;
      const saved = this.store.getMeta('index_file');
      if (this.changesSinceSave === 0 && saved && fs.existsSync(path.join(this.dir, saved))) return;
      const seq = this.store.lastChangeSeq();
      this.freeze();
      const changes = this.changesSinceSave;
      try {
        await saveIndex(this.dir, this.store, this.index, seq);
        this.changesSinceSave = Math.max(0, this.changesSinceSave - changes);
      } finally {
        this.thaw();
      }
    });
  }

  private inBackground(what: string, job: () => Promise<void>): void {
    if (this.readOnly || this.closed || this.scheduled) return;
    this.scheduled = true;
    this.background = job()
      .catch((err: unknown) => this.logger.error({ dir: this.dir, err: errorMessage(err) }, `gallery: ${what} failed`))
      .finally(() => (this.scheduled = false));
  }

  private saveInBackground(): void {
    this.inBackground('saving the index', () => this.save());
  }

  /**
   * Builds the index again from the database (without its deleted entries). Searches keep using
   * the old index meanwhile; changes made during the build are applied to the new one before it
   * replaces the old. Then saves it.
   */
  rebuild(): Promise<void> {
    return this.maintenance
      .run(async () => {
        this.freeze();
        let fresh: HnswIndex | undefined;
        try {
          fresh = await this.buildIndex(this.store.maxTemplateId());
        } finally {
          this.thaw(fresh ?? this.index);
        }
        this.changesSinceSave = Math.max(1, this.changesSinceSave);
      })
      .then(() => this.save());
  }

  /** Counts `n` committed changes; saves or compacts in the background when due. */
  afterChanges(n: number): void {
    this.changesSinceSave += n;
    if (this.readOnly || this.closed || this.scheduled) return;
    const total = this.index.size + this.index.deletedCount;
    if (this.index.deletedCount >= MIN_DELETED_FOR_COMPACTION && this.index.deletedCount / total >= this.config.index.compactDeletedRatio) {
      this.inBackground('compaction', () => this.rebuild());
    } else if (this.changesSinceSave >= this.config.index.saveAfterChanges) this.saveInBackground();
  }

  /** Waits for a running save or compaction. */
  settled(): Promise<void> {
    return this.maintenance.run(async () => undefined);
  }

  // ---------------------------------------------------------------- changes

  /** Adds a committed template (the records already count it). */
  add(id: number, v: Float32Array): void {
    if (this.frozen) this.pendingAdds.set(id, v);
    else this.index.add(id, v);
    if (this.exact) {
      if (this.records.templateCount <= this.config.index.exactBelow) this.exact.add(id, v);
      else this.exact = null;
    }
  }

  /** Removes a template the records no longer hold. */
  remove(id: number): void {
    if (this.frozen) {
      if (!this.pendingAdds.delete(id)) this.pendingRemoves.add(id);
    } else this.index.remove(id);
    this.exact?.remove(id);
  }

  // ---------------------------------------------------------------- search

  private exactMatrix(): ExactMatrix {
    if (!this.exact) {
      const m = new ExactMatrix(this.dimension, Math.max(64, this.records.templateCount));
      for (const [id, v] of this.store.embeddings(this.dimension)) m.add(id, v);
      this.exact = m;
    }
    return this.exact;
  }

  /** Whether searches are exact (small gallery) rather than through HNSW. */
  get isExact(): boolean {
    return this.records.templateCount <= this.config.index.exactBelow;
  }

  /** The `want` most similar templates to `vector` (unit vectors; similarity = inner product). */
  hits(vector: Float32Array, want: number): ScoredTemplate[] {
    if (this.isExact) return this.exactMatrix().search(vector, want);
    const hits = this.index.search(vector, want + this.pendingRemoves.size);
    if (!this.frozen || (this.pendingAdds.size === 0 && this.pendingRemoves.size === 0)) return hits;
    const top = new TopK(want);
    for (const h of hits) if (!this.pendingRemoves.has(h.templateId)) top.push(h.templateId, h.similarity);
    for (const [id, v] of this.pendingAdds) top.push(id, dot(v, 0, vector, this.dimension));
    return top.items;
  }

  /**
   * Exact top-`want` for many queries in one pass over the stored embeddings (from memory when
   * small, else read from SQLite page by page). For recall checks, not requests.
   */
  exactHitsBatch(vectors: readonly Float32Array[], want: number): ScoredTemplate[][] {
    if (this.isExact) return vectors.map((v) => this.exactMatrix().search(v, want));
    const tops = vectors.map(() => new TopK(want));
    let after = 0;
    for (;;) {
      const page = this.store.embeddingsPage(this.dimension, after, 4096);
      if (page.length === 0) break;
      for (const [id, row] of page) for (let q = 0; q < vectors.length; q++) tops[q].push(id, dot(row, 0, vectors[q], this.dimension));
      after = page[page.length - 1][0];
    }
    return tops.map((t) => t.items);
  }

  // ---------------------------------------------------------------- checks and statistics

  /** The index against the database's templates (label -> owner): every template searchable, nothing else. */
  problems(owners: ReadonlyMap<number, number>): string[] {
    const problems: string[] = [];
    const live = this.records.templateCount;
    if (this.index.size !== live) problems.push(`index holds ${this.index.size} live entries, the database ${live} templates`);
    const labels = this.index.labels();
    let missing = owners.size;
    for (const label of labels) if (owners.has(label)) missing--;
    if (missing > 0) problems.push(`${missing} templates are missing from the index`);
    if (labels.length - (owners.size - missing) !== this.index.deletedCount) {
      problems.push(`index holds ${labels.length - (owners.size - missing)} entries of removed templates, ${this.index.deletedCount} marked deleted`);
    }
    // Every template's own embedding must find itself (exact vectors; catches a wrong index entry).
    const sample = [...owners.keys()].sort(() => Math.random() - 0.5).slice(0, 50);
    for (const id of sample) {
      const v = this.store.embedding(id, this.dimension);
      if (!v) continue;
      const hits = this.index.search(v, 10);
      if (!hits.some((h) => h.templateId === id || h.similarity >= 0.9999)) problems.push(`template ${id} is not found by its own embedding in the index`);
    }
    return problems;
  }

  /** Index figures for `gallery check`, logs and metrics. */
  summary(): { entries: number; deleted: number; capacity: number; file: string | null; savedAtChange: number; pendingChanges: number } {
    return {
      entries: this.index.size,
      deleted: this.index.deletedCount,
      capacity: this.index.capacity,
      file: this.store.getMeta('index_file') ?? null,
      savedAtChange: Number(this.store.getMeta('index_seq') ?? 0),
      pendingChanges: this.changesSinceSave,
    };
  }

  stats(): { entries: number; deleted: number; capacity: number; exact: boolean; frozen: boolean } {
    return { entries: this.index.size, deleted: this.index.deletedCount, capacity: this.index.capacity, exact: this.isExact, frozen: this.frozen };
  }

  /** Sets the HNSW search breadth at run time (benchmarks trade recall for speed with it). */
  setEf(ef: number): void {
    this.config.index.efSearch = ef;
    this.index.setEf(ef);
  }

  /** Stops the save timer, waits for background work and saves pending changes. The caller closes the store after. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.background;
    if (!this.readOnly && this.changesSinceSave > 0) await this.save();
    else await this.settled();
  }
}

/** A saved index being loaded while the caller reads the records (see TemplateIndex.start). */
export interface TemplateIndexStart {
  started: number;
  saved: SavedIndex | undefined;
  loading: Promise<HnswIndex | undefined> | undefined;
}
