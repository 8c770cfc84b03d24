import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { GalleryConfig } from '../config/sections/gallery.js';
import { errorMessage, FacestreamError } from '../errors.js';
import { rootLogger, type Logger } from '../log.js';
import { HnswIndex } from './hnsw.js';
import { readSavedIndex, removeStrayIndexFiles, saveIndex, savedIndexProblem, type SavedIndex } from './index-file.js';
import { DirectoryLock } from './lock.js';
import { Mutex } from './mutex.js';
import { ChangeOp, DB_FILE, GalleryStore, SCHEMA_VERSION, type IdentityRow, type NewTemplate, type StoredCrop, type TemplateRow } from './store.js';
import { checkEmbedding, ExactMatrix, TopK, dot, type ScoredTemplate } from './vectors.js';
import { ensurePrivateDir } from '../private-files.js';
import { TemplateIds } from './template-ids.js';

export type { NewTemplate, StoredCrop, CropGeometry } from './store.js';

export interface IdentityMatch {
  identityId: string;
  name: string;
  similarity: number;
  /** The identity's best-matching template. */
  templateId: string;
}

export interface IdentityRecord {
  id: string;
  name: string;
  metadata: unknown;
  createdAt: string;
  updatedAt: string;
  templates: number;
}

export interface Template {
  id: string;
  identityId: string;
  source: string;
  contentHash: string | null;
  detectionScore: number | null;
  faceSize: number | null;
  modelId: string;
  createdAt: string;
}

/** Who a template is added to: an existing identity (by id, or by a unique name) or a new one. */
export interface IdentityRef {
  id?: string;
  name?: string;
  metadata?: unknown;
}

export interface GalleryOpenOptions {
  modelId: string;
  dimension: number;
  config: GalleryConfig;
  logger?: Logger;
  /** The embedding model's own threshold, used when the configuration sets none. */
  defaultMinSimilarity?: number;
  /**
   * Open without the writer lock, for inspection while another process (the server) owns the
   * gallery: no writes, and the index is loaded or built in memory but never saved.
   */
  readOnly?: boolean;
}

export interface GalleryCheck {
  ok: boolean;
  problems: string[];
  identities: number;
  templates: number;
  index: { entries: number; deleted: number; capacity: number; file: string | null; savedAtChange: number; pendingChanges: number };
}

export interface GalleryInfo {
  dir: string;
  modelId: string;
  dimension: number;
  identities: number;
  templates: number;
  createdAt: string | null;
}

/** How the last open got its index: a new empty one, the saved file (plus replayed changes), or a rebuild (and why). */
export interface IndexLoadReport {
  source: 'new' | 'loaded' | 'rebuilt';
  replayedChanges: number;
  reason?: string;
  ms: number;
}

export type GalleryEvent = 'identity-created' | 'identity-updated' | 'identity-removed' | 'template-added' | 'template-removed';

const IDENTITY_ID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
/** Never compact an index over fewer deleted entries than this: rebuilding is not free. */
const MIN_DELETED_FOR_COMPACTION = 256;

function now(): string {
  return new Date().toISOString();
}

/** Model and size of a gallery directory, read without taking its lock. */
export function readGalleryInfo(dir: string): GalleryInfo {
  const store = new GalleryStore(dir, { readOnly: true });
  try {
    const modelId = store.getMeta('model_id');
    if (!modelId) throw new FacestreamError('GALLERY_CORRUPT', `gallery ${dir} has no model recorded`, { dir });
    return {
      dir,
      modelId,
      dimension: Number(store.getMeta('dimension')),
      identities: store.identityCount(),
      templates: store.templateCount(),
      createdAt: store.getMeta('created_at') ?? null,
    };
  } finally {
    store.close();
  }
}

/**
 * The enrolled people a server recognises: identities with templates (one embedding each) in
 * SQLite, searched through an HNSW index kept in memory and saved beside the database.
 *
 * Writes are SQLite transactions: a method that adds or removes something returns after its
 * commit, so an acknowledged enrollment survives a crash. The index is a cache of the stored
 * embeddings: on open it is loaded from its last save and brought up to date from the change log,
 * or rebuilt when missing, stale or corrupt. While the index is being saved or compacted it must
 * not change, so changes made meanwhile wait in a small overlay that searches consult exactly.
 */
export class Gallery extends EventEmitter {
  minSimilarity: number;
  loadReport: IndexLoadReport = { source: 'new', replayedChanges: 0, ms: 0 };
  private index!: HnswIndex;
  /** Exact search over every template while the gallery is small (see config.index.exactBelow). */
  private exact: ExactMatrix | null = null;
  /** Template id -> identity pk (0: none). Template ids are dense, so a typed array beats a Map. */
  private owner = new Int32Array(1024);
  private identities = new Map<number, { id: string; name: string }>();
  private live = 0;
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
  /** Public template ids (unguessable; see template-ids.ts). */
  private readonly templateIds: TemplateIds;

  private constructor(
    readonly dir: string,
    readonly modelId: string,
    readonly dimension: number,
    readonly config: GalleryConfig,
    readonly readOnly: boolean,
    private readonly store: GalleryStore,
    private readonly lock: DirectoryLock | undefined,
    private readonly logger: Logger,
    defaultMinSimilarity: number | undefined,
  ) {
    super();
    this.minSimilarity = config.minSimilarity ?? defaultMinSimilarity ?? 0.5;
    this.templateIds = TemplateIds.forStore(store, readOnly);
  }

  static async open(dir: string, opts: GalleryOpenOptions): Promise<Gallery> {
    const logger = opts.logger ?? rootLogger();
    const readOnly = opts.readOnly ?? false;
    if (!readOnly) ensurePrivateDir(dir);
    else if (!fs.existsSync(path.join(dir, DB_FILE))) throw new FacestreamError('FILE_NOT_FOUND', `${dir} is not a gallery (no ${DB_FILE})`, { dir });
    const lock = readOnly ? undefined : DirectoryLock.acquire(dir);
    let store: GalleryStore | undefined;
    try {
      store = new GalleryStore(dir, { readOnly, durability: opts.config.durability });
      Gallery.checkModel(store, dir, opts, readOnly);
      const gallery = new Gallery(dir, opts.modelId, opts.dimension, opts.config, readOnly, store, lock, logger, opts.defaultMinSimilarity);
      await gallery.loadState();
      gallery.startTimer();
      return gallery;
    } catch (err) {
      store?.close();
      lock?.release();
      throw err;
    }
  }

  private static checkModel(store: GalleryStore, dir: string, opts: GalleryOpenOptions, readOnly: boolean): void {
    const modelId = store.getMeta('model_id');
    if (!modelId) {
      if (readOnly) throw new FacestreamError('GALLERY_CORRUPT', `gallery ${dir} has no model recorded`, { dir });
      store.transaction(() => {
        store.setMeta('schema_version', SCHEMA_VERSION);
        store.setMeta('model_id', opts.modelId);
        store.setMeta('dimension', opts.dimension);
        store.setMeta('created_at', now());
      });
      return;
    }
    const version = Number(store.getMeta('schema_version'));
    if (version > SCHEMA_VERSION) throw new FacestreamError('GALLERY_CORRUPT', `gallery ${dir} has schema version ${version}; this facestream reads up to ${SCHEMA_VERSION}`, { dir });
    const dimension = Number(store.getMeta('dimension'));
    if (modelId !== opts.modelId || dimension !== opts.dimension) {
      throw new FacestreamError(
        'GALLERY_MODEL_MISMATCH',
        `gallery ${dir} was built with embedding model "${modelId}" (${dimension}-d) but this process uses "${opts.modelId}" (${opts.dimension}-d); ` +
          `set embedding.model to "${modelId}", or convert the gallery with \`facestream gallery reindex --model ${opts.modelId}\``,
        { dir, galleryModel: modelId, galleryDimension: dimension, model: opts.modelId, dimension: opts.dimension },
      );
    }
  }

  // ---------------------------------------------------------------- loading and saving the index

  private async loadState(): Promise<void> {
    const started = performance.now();
    // The saved index loads on a libuv thread while this thread reads the database and checks
    // the file's checksum: at 1M templates the three take ~14, ~1 and ~3 s.
    const saved = readSavedIndex(this.store);
    const sizeProblem = saved ? savedIndexProblem(this.dir, saved, this.dimension, false) : undefined;
    const loading = saved && !(await sizeProblem) ? HnswIndex.load(path.join(this.dir, saved.file), this.dimension, this.config.index) : undefined;
    loading?.catch(() => undefined); // awaited below; a rejection before then must not go unhandled
    for (const { pk, id, name } of this.store.allIdentityNames()) this.identities.set(pk, { id, name });
    for (const [id, pk] of this.store.templateOwners()) {
      this.setOwner(id, pk);
      this.live++;
    }
    if (!this.readOnly) removeStrayIndexFiles(this.dir, saved?.file);
    const failure = await this.tryLoadIndex(saved, loading);
    if (failure !== undefined) {
      if (failure) this.logger.warn({ dir: this.dir, reason: failure }, 'gallery: saved index unusable, rebuilding it from the database');
      await this.rebuildIndex();
      this.loadReport = { source: 'rebuilt', replayedChanges: 0, reason: failure || 'no saved index', ms: 0 };
      this.changesSinceSave = Math.max(1, this.live);
      // Save right away so the next open is fast; the gallery is usable meanwhile.
      if (this.live > 0) this.saveInBackground();
    }
    this.loadReport.ms = performance.now() - started;
  }

  /** Takes the saved index (loading meanwhile) and replays later changes; returns why it must be rebuilt instead ('' when there is none). */
  private async tryLoadIndex(saved: SavedIndex | undefined, loading: Promise<HnswIndex> | undefined): Promise<string | undefined> {
    if (!saved) {
      if (this.live > 0) return '';
      this.index = HnswIndex.create(this.dimension, this.config.index);
      this.loadReport = { source: 'new', replayedChanges: 0, ms: 0 };
      return undefined;
    }
    const reason = await savedIndexProblem(this.dir, saved, this.dimension, this.config.index.verifyChecksum);
    if (reason || !loading) return reason ?? 'index file unusable';
    let index: HnswIndex;
    try {
      index = await loading;
      index.setDeletedCount(saved.deleted);
    } catch (err) {
      return `the saved index could not be read (${errorMessage(err)})`;
    }
    const { complete, changes } = this.store.changesAfter(saved.seq);
    if (!complete) return 'the change log does not reach back to the saved index';
    for (const c of changes) {
      if (c.op === ChangeOp.Add) {
        const v = this.store.embedding(c.template, this.dimension);
        if (v) index.add(c.template, v);
      } else index.remove(c.template);
    }
    const problem = this.indexContentProblem(index);
    if (problem) return `the saved index is stale: ${problem}`;
    this.index = index;
    this.changesSinceSave = changes.length;
    this.loadReport = { source: 'loaded', replayedChanges: changes.length, ms: 0 };
    return undefined;
  }

  /** Cheap consistency checks after loading: counts, and a sample of vectors against SQLite. */
  private indexContentProblem(index: HnswIndex): string | undefined {
    if (index.size !== this.live) return `index holds ${index.size} live entries, the database ${this.live} templates`;
    const labels = index.labels();
    if (labels.length !== index.size + index.deletedCount) return 'index entry count disagrees with its deleted count';
    for (let i = 0; i < Math.min(16, labels.length); i++) {
      const label = labels[Math.floor(Math.random() * labels.length)];
      if (this.ownerOf(label) === 0) continue; // deleted since
      const stored = this.store.embedding(label, this.dimension);
      const indexed = index.vector(label);
      if (!stored) continue;
      for (let d = 0; d < this.dimension; d++) if (Math.abs(stored[d] - indexed[d]) > 1e-5) return `template ${label} differs between index and database`;
    }
    return undefined;
  }

  /** Builds a fresh index from every stored embedding, yielding to the event loop now and then. */
  private async buildIndex(upToId = Infinity): Promise<HnswIndex> {
    const index = HnswIndex.create(this.dimension, this.config.index, Math.max(this.config.index.initialCapacity, Math.ceil(this.live * 1.25)));
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
      if (performance.now() - started > 2000) this.logger.info({ dir: this.dir, built: index.size, of: this.live }, 'gallery: building index');
      await new Promise((r) => setImmediate(r));
    }
    return index;
  }

  private async rebuildIndex(): Promise<void> {
    this.index = await this.buildIndex();
    this.exact = null;
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
   * Rebuilds the index without its deleted entries. Searches keep using the old index meanwhile;
   * changes made during the rebuild are applied to the new one before it replaces the old.
   */
  compact(): Promise<void> {
    return this.maintenance.run(async () => {
      this.freeze();
      const upTo = this.store.maxTemplateId();
      let fresh: HnswIndex | undefined;
      try {
        fresh = await this.buildIndex(upTo);
      } finally {
        this.thaw(fresh ?? this.index);
      }
      this.changesSinceSave = Math.max(1, this.changesSinceSave);
    }).then(() => this.save());
  }

  private afterChanges(n: number): void {
    this.changesSinceSave += n;
    if (this.readOnly || this.closed || this.scheduled) return;
    const total = this.index.size + this.index.deletedCount;
    if (this.index.deletedCount >= MIN_DELETED_FOR_COMPACTION && this.index.deletedCount / total >= this.config.index.compactDeletedRatio) {
      this.inBackground('compaction', () => this.compact());
    } else if (this.changesSinceSave >= this.config.index.saveAfterChanges) this.saveInBackground();
  }

  // ---------------------------------------------------------------- in-memory state

  private ownerOf(templateId: number): number {
    return templateId < this.owner.length ? this.owner[templateId] : 0;
  }

  private setOwner(templateId: number, pk: number): void {
    if (templateId >= this.owner.length) {
      let n = this.owner.length;
      while (n <= templateId) n *= 2;
      const grown = new Int32Array(n);
      grown.set(this.owner);
      this.owner = grown;
    }
    this.owner[templateId] = pk;
  }

  private indexAdd(id: number, pk: number, v: Float32Array): void {
    this.setOwner(id, pk);
    this.live++;
    if (this.frozen) this.pendingAdds.set(id, v);
    else this.index.add(id, v);
    if (this.exact) {
      if (this.live <= this.config.index.exactBelow) this.exact.add(id, v);
      else this.exact = null;
    }
  }

  private indexRemove(id: number): void {
    if (this.ownerOf(id) === 0) return;
    this.owner[id] = 0;
    this.live--;
    if (this.frozen) {
      if (!this.pendingAdds.delete(id)) this.pendingRemoves.add(id);
    } else this.index.remove(id);
    this.exact?.remove(id);
  }

  private exactMatrix(): ExactMatrix {
    if (!this.exact) {
      const m = new ExactMatrix(this.dimension, Math.max(64, this.live));
      for (const [id, v] of this.store.embeddings(this.dimension)) m.add(id, v);
      this.exact = m;
    }
    return this.exact;
  }

  // ---------------------------------------------------------------- search

  counts(): { identities: number; templates: number } {
    return { identities: this.identities.size, templates: this.live };
  }

  private templateHits(vector: Float32Array, want: number): ScoredTemplate[] {
    if (this.live <= this.config.index.exactBelow) return this.exactMatrix().search(vector, want);
    const hits = this.index.search(vector, want + this.pendingRemoves.size);
    if (!this.frozen || (this.pendingAdds.size === 0 && this.pendingRemoves.size === 0)) return hits;
    const top = new TopK(want);
    for (const h of hits) if (!this.pendingRemoves.has(h.templateId)) top.push(h.templateId, h.similarity);
    for (const [id, v] of this.pendingAdds) top.push(id, dot(v, 0, vector, this.dimension));
    return top.items;
  }

  private checkVector(vector: Float32Array, kind: 'template' | 'query' = 'query'): void {
    try {
      checkEmbedding(vector, this.dimension, kind);
    } catch (err) {
      throw new FacestreamError('BAD_REQUEST', `${(err as Error).message} (gallery ${this.dir} holds ${this.dimension}-d unit embeddings of "${this.modelId}")`, {
        dimension: vector.length,
        expected: this.dimension,
      });
    }
  }

  /** Groups template hits by identity (best template, or the mean of the best few) and ranks identities. */
  private aggregate(hits: readonly ScoredTemplate[], k: number): IdentityMatch[] {
    const per = new Map<number, { best: ScoredTemplate; sims: number[] }>();
    for (const h of hits) {
      const pk = this.ownerOf(h.templateId);
      if (pk === 0) continue;
      const entry = per.get(pk);
      if (entry) entry.sims.push(h.similarity);
      else per.set(pk, { best: h, sims: [h.similarity] });
    }
    const n = this.config.aggregation === 'mean' ? this.config.aggregateTemplates : 1;
    const out: IdentityMatch[] = [];
    for (const [pk, { best, sims }] of per) {
      const used = sims.slice(0, n);
      const identity = this.identities.get(pk);
      if (!identity) continue;
      out.push({ identityId: identity.id, name: identity.name, similarity: used.reduce((a, b) => a + b, 0) / used.length, templateId: this.templateIds.encode(best.templateId) });
    }
    out.sort((a, b) => b.similarity - a.similarity);
    return out.slice(0, k);
  }

  /** The top-k identities for an embedding (aggregated per identity), best first. */
  search(vector: Float32Array, k = this.config.topK): IdentityMatch[] {
    this.checkVector(vector);
    if (this.live === 0) return [];
    const want = Math.min(this.live, Math.max(k * this.config.candidatesPerIdentity, this.config.aggregateTemplates));
    return this.aggregate(this.templateHits(vector, want), k);
  }

  /** Exact search by brute force over every stored embedding: the reference the HNSW path is checked against. */
  searchExact(vector: Float32Array, k = this.config.topK): IdentityMatch[] {
    return this.searchExactBatch([vector], k)[0];
  }

  /**
   * Exact search for many queries in one pass over the stored embeddings (read from SQLite page
   * by page when the gallery is too large for the in-memory matrix). For recall checks, not requests.
   */
  searchExactBatch(vectors: readonly Float32Array[], k = this.config.topK): IdentityMatch[][] {
    for (const v of vectors) this.checkVector(v);
    if (this.live === 0) return vectors.map(() => []);
    const want = Math.min(this.live, Math.max(k * this.config.candidatesPerIdentity, this.config.aggregateTemplates));
    if (this.live <= this.config.index.exactBelow) return vectors.map((v) => this.aggregate(this.exactMatrix().search(v, want), k));
    const tops = vectors.map(() => new TopK(want));
    let after = 0;
    for (;;) {
      const page = this.store.embeddingsPage(this.dimension, after, 4096);
      if (page.length === 0) break;
      for (const [id, row] of page) for (let q = 0; q < vectors.length; q++) tops[q].push(id, dot(row, 0, vectors[q], this.dimension));
      after = page[page.length - 1][0];
    }
    return tops.map((t) => this.aggregate(t.items, k));
  }

  /** The best identity at or above minSimilarity (null: unknown), with the top-k candidates. */
  identify(vector: Float32Array, k = this.config.topK): { match: IdentityMatch | null; candidates: IdentityMatch[] } {
    const candidates = this.search(vector, k);
    const best = candidates[0];
    return { match: best && best.similarity >= this.minSimilarity ? best : null, candidates };
  }

  /** 1:1 against one identity: its score for this embedding over all its templates (exact). */
  identitySimilarity(identity: string, vector: Float32Array): { similarity: number; templateId: string } {
    this.checkVector(vector);
    const row = this.requireIdentityRow(identity);
    const sims: { id: number; s: number }[] = [];
    for (const t of this.store.templatesOf(row.pk)) {
      const v = this.store.embedding(t.id, this.dimension);
      if (v) sims.push({ id: t.id, s: dot(v, 0, vector, this.dimension) });
    }
    if (sims.length === 0) throw new FacestreamError('TEMPLATE_NOT_FOUND', `identity "${row.name}" (${row.id}) has no templates`, { identityId: row.id });
    sims.sort((a, b) => b.s - a.s);
    const n = this.config.aggregation === 'mean' ? this.config.aggregateTemplates : 1;
    const used = sims.slice(0, n);
    return { similarity: used.reduce((a, b) => a + b.s, 0) / used.length, templateId: this.templateIds.encode(sims[0].id) };
  }

  // ---------------------------------------------------------------- identities

  private writable(): void {
    if (this.readOnly) throw new FacestreamError('GALLERY_LOCKED', `gallery ${this.dir} is open read-only`, { dir: this.dir });
    if (this.closed) throw new FacestreamError('BAD_REQUEST', `gallery ${this.dir} is closed`, { dir: this.dir });
  }

  private identityRecord(row: IdentityRow, templates?: number): IdentityRecord {
    return {
      id: row.id,
      name: row.name,
      metadata: row.metadata === null ? null : (JSON.parse(row.metadata) as unknown),
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      templates: templates ?? this.store.templateCountOf(row.pk),
    };
  }

  private templateRecord(row: TemplateRow, identityId?: string): Template {
    return {
      id: this.templateIds.encode(row.id),
      identityId: identityId ?? this.identities.get(row.identity)?.id ?? this.store.identityByPk(row.identity)?.id ?? '',
      source: row.source,
      contentHash: row.content_hash,
      detectionScore: row.detection_score,
      faceSize: row.face_size,
      modelId: row.model_id,
      createdAt: row.created_at,
    };
  }

  /** An identity by id, or else by name when exactly one identity has it. */
  private findIdentityRow(ref: string): IdentityRow | undefined {
    const byId = this.store.identityById(ref);
    if (byId) return byId;
    const byName = this.store.identitiesByName(ref);
    if (byName.length > 1) {
      throw new FacestreamError('BAD_REQUEST', `${byName.length} identities are named "${ref}" (${byName.map((r) => r.id).join(', ')}); use an id`, { name: ref, ids: byName.map((r) => r.id) });
    }
    return byName[0];
  }

  private requireIdentityRow(ref: string): IdentityRow {
    const row = this.findIdentityRow(ref);
    if (!row) throw new FacestreamError('IDENTITY_NOT_FOUND', `no identity "${ref}" in gallery ${this.dir}`, { identity: ref });
    return row;
  }

  private validateNewId(id: string): void {
    if (!IDENTITY_ID.test(id)) {
      throw new FacestreamError('BAD_REQUEST', `identity id "${id}" must be 1-128 characters of letters, digits and . _ : @ - (starting with a letter or digit)`, { id });
    }
    if (this.store.identityById(id)) throw new FacestreamError('IDENTITY_EXISTS', `identity "${id}" already exists`, { id });
  }

  private validateName(name: string): string {
    const trimmed = name.trim();
    if (!trimmed || trimmed.length > 256) throw new FacestreamError('BAD_REQUEST', 'an identity name must have 1 to 256 characters', { name });
    return trimmed;
  }

  createIdentity(input: { id?: string; name: string; metadata?: unknown }): IdentityRecord {
    this.writable();
    const name = this.validateName(input.name);
    const id = input.id ?? crypto.randomUUID();
    this.validateNewId(id);
    const row = this.store.transaction(() => this.store.insertIdentity(id, name, input.metadata, now()));
    this.identities.set(row.pk, { id: row.id, name: row.name });
    const record = this.identityRecord(row, 0);
    this.emit('identity-created', { identity: record });
    return record;
  }

  /** An identity by id (or by a unique name), or undefined. */
  getIdentity(ref: string): IdentityRecord | undefined {
    const row = this.findIdentityRow(ref);
    return row ? this.identityRecord(row) : undefined;
  }

  /** An identity by id only (no name lookup). */
  getIdentityById(id: string): IdentityRecord | undefined {
    const row = this.store.identityById(id);
    return row ? this.identityRecord(row) : undefined;
  }

  requireIdentity(ref: string): IdentityRecord {
    return this.identityRecord(this.requireIdentityRow(ref));
  }

  listIdentities(opts: { offset?: number; limit?: number; search?: string } = {}): IdentityRecord[] {
    return this.store.listIdentities(opts).map((r) => this.identityRecord(r, r.templates));
  }

  updateIdentity(ref: string, fields: { name?: string; metadata?: unknown }): IdentityRecord {
    this.writable();
    const row = this.requireIdentityRow(ref);
    const name = fields.name === undefined ? undefined : this.validateName(fields.name);
    this.store.transaction(() => this.store.updateIdentity(row.pk, { name, metadata: fields.metadata }, now()));
    const updated = this.store.identityByPk(row.pk)!;
    this.identities.set(row.pk, { id: updated.id, name: updated.name });
    const record = this.identityRecord(updated);
    this.emit('identity-updated', { identity: record, previousName: row.name });
    return record;
  }

  renameIdentity(ref: string, name: string): IdentityRecord {
    return this.updateIdentity(ref, { name });
  }

  /** Removes an identity and all its templates in one transaction. */
  removeIdentity(ref: string): IdentityRecord {
    this.writable();
    const row = this.requireIdentityRow(ref);
    const templates = this.store.templatesOf(row.pk);
    this.store.transaction(() => {
      for (const t of templates) this.store.deleteTemplate(t.id);
      this.store.deleteIdentity(row.pk);
    });
    for (const t of templates) this.indexRemove(t.id);
    this.identities.delete(row.pk);
    const record = this.identityRecord(row, 0);
    for (const t of templates) this.emit('template-removed', { templateId: this.templateIds.encode(t.id), identityId: row.id });
    this.emit('identity-removed', { identity: { ...record, templates: templates.length } });
    this.afterChanges(templates.length);
    return { ...record, templates: templates.length };
  }

  // ---------------------------------------------------------------- templates

  /** Whether this identity already holds a template from a picture with this content hash. */
  hasPicture(ref: string, contentHash: string): boolean {
    const row = this.findIdentityRow(ref);
    return row ? this.store.hashesOf(row.pk).has(contentHash) : false;
  }

  /** Content hashes of an identity's pictures (for resumable bulk enrollment). */
  pictureHashes(ref: string): Set<string> {
    const row = this.findIdentityRow(ref);
    return row ? this.store.hashesOf(row.pk) : new Set();
  }

  /**
   * Adds templates to an identity, creating it when `ref` names none, all in one transaction:
   * when this returns, every template is committed; on error nothing is. A picture whose content
   * hash the identity already holds is refused (DUPLICATE_TEMPLATE).
   */
  addTemplates(ref: IdentityRef, templates: readonly NewTemplate[]): { identity: IdentityRecord; templates: Template[]; created: boolean } {
    return this.addTemplatesBatch([{ identity: ref, templates }])[0];
  }

  /**
   * addTemplates for many identities in one transaction: bulk imports and benchmarks, where one
   * commit (and fsync) per identity would dominate. All or nothing.
   */
  addTemplatesBatch(entries: readonly { identity: IdentityRef; templates: readonly NewTemplate[] }[]): { identity: IdentityRecord; templates: Template[]; created: boolean }[] {
    this.writable();
    for (const e of entries) {
      for (const t of e.templates) this.checkVector(t.embedding, 'template');
      if (!e.identity.id && !e.identity.name) throw new FacestreamError('BAD_REQUEST', 'an identity id or name is needed', {});
    }
    const createdAt = now();
    const written = this.store.transaction(() =>
      entries.map(({ identity: ref, templates }) => {
        let row = ref.id ? this.store.identityById(ref.id) : this.findIdentityRow(ref.name!);
        let created = false;
        if (!row) {
          const id = ref.id ?? crypto.randomUUID();
          this.validateNewId(id);
          row = this.store.insertIdentity(id, this.validateName(ref.name ?? id), ref.metadata, createdAt);
          created = true;
        }
        const hashes = created ? new Set<string>() : this.store.hashesOf(row.pk);
        const ids: number[] = [];
        for (const t of templates) {
          if (t.contentHash) {
            if (hashes.has(t.contentHash)) {
              throw new FacestreamError('DUPLICATE_TEMPLATE', `${t.source}: identity "${row.name}" already has this picture`, { source: t.source, identityId: row.id, contentHash: t.contentHash });
            }
            hashes.add(t.contentHash);
          }
          ids.push(this.store.insertTemplate(row.pk, t, this.modelId, createdAt));
        }
        if (!created && ids.length) this.store.touchIdentity(row.pk, createdAt);
        return { row, ids, created };
      }),
    );
    // Committed: now the in-memory state and the listeners learn about it.
    const results = written.map(({ row, ids, created }, e) => {
      const templates = entries[e].templates;
      this.identities.set(row.pk, { id: row.id, name: row.name });
      ids.forEach((id, i) => this.indexAdd(id, row.pk, templates[i].embedding));
      const identity = this.identityRecord(created ? row : this.store.identityByPk(row.pk)!, created ? ids.length : undefined);
      const added = ids.map(
        (id, i): Template => ({
          id: this.templateIds.encode(id),
          identityId: row.id,
          source: templates[i].source,
          contentHash: templates[i].contentHash ?? null,
          detectionScore: templates[i].detectionScore ?? null,
          faceSize: templates[i].faceSize ?? null,
          modelId: this.modelId,
          createdAt,
        }),
      );
      return { identity, templates: added, created };
    });
    if (this.listenerCount('identity-created') + this.listenerCount('template-added') > 0) {
      for (const r of results) {
        if (r.created) this.emit('identity-created', { identity: r.identity });
        for (const t of r.templates) this.emit('template-added', { template: t, identity: { id: r.identity.id, name: r.identity.name } });
      }
    }
    this.afterChanges(results.reduce((n, r) => n + r.templates.length, 0));
    return results;
  }

  listTemplates(ref: string): Template[] {
    const row = this.requireIdentityRow(ref);
    return this.store.templatesOf(row.pk).map((t) => this.templateRecord(t, row.id));
  }

  getTemplate(templateId: string): Template | undefined {
    const label = this.templateIds.decode(templateId);
    const row = label ? this.store.templateById(label) : undefined;
    return row ? this.templateRecord(row) : undefined;
  }

  private requireTemplateRow(templateId: string): TemplateRow {
    const label = this.templateIds.decode(templateId);
    const row = label ? this.store.templateById(label) : undefined;
    if (!row) throw new FacestreamError('TEMPLATE_NOT_FOUND', `no template "${templateId}" in gallery ${this.dir}`, { templateId });
    return row;
  }

  /** The stored face crop of a template (for display and for re-embedding with another model). */
  templateCrop(templateId: string): StoredCrop | undefined {
    return this.store.crop(this.requireTemplateRow(templateId).id);
  }

  templateEmbedding(templateId: string): Float32Array {
    return this.store.embedding(this.requireTemplateRow(templateId).id, this.dimension)!;
  }

  removeTemplate(templateId: string): Template {
    this.writable();
    const row = this.requireTemplateRow(templateId);
    const record = this.templateRecord(row);
    this.store.transaction(() => this.store.deleteTemplate(row.id));
    this.indexRemove(row.id);
    this.emit('template-removed', { templateId: record.id, identityId: record.identityId });
    this.afterChanges(1);
    return record;
  }

  // ---------------------------------------------------------------- maintenance

  /** Integrity check: SQLite, embeddings, and the index against the database (every template searchable, nothing else). */
  async check(): Promise<GalleryCheck> {
    await this.maintenance.run(async () => undefined); // let a running save or compaction finish
    const problems = this.store.integrityProblems(this.dimension);
    const templates = this.store.templateCount();
    if (templates !== this.live) problems.push(`memory holds ${this.live} templates, the database ${templates}`);
    if (this.index.size !== this.live) problems.push(`index holds ${this.index.size} live entries, the database ${this.live} templates`);
    const owners = new Map<number, number>();
    for (const [id, pk] of this.store.templateOwners()) {
      owners.set(id, pk);
      if (this.ownerOf(id) !== pk) problems.push(`template ${id}: owner in memory ${this.ownerOf(id)}, in the database ${pk}`);
      if (!this.identities.has(pk)) problems.push(`template ${id} belongs to identity pk ${pk}, which does not exist`);
    }
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
    return {
      ok: problems.length === 0,
      problems,
      identities: this.identities.size,
      templates,
      index: {
        entries: this.index.size,
        deleted: this.index.deletedCount,
        capacity: this.index.capacity,
        file: this.store.getMeta('index_file') ?? null,
        savedAtChange: Number(this.store.getMeta('index_seq') ?? 0),
        pendingChanges: this.changesSinceSave,
      },
    };
  }

  /** Throws away the index and builds it again from the database, then saves it. */
  async rebuild(): Promise<void> {
    this.writable();
    await this.maintenance.run(async () => {
      this.freeze();
      let fresh: HnswIndex | undefined;
      try {
        fresh = await this.buildIndex(this.store.maxTemplateId());
      } finally {
        this.thaw(fresh ?? this.index);
      }
      this.changesSinceSave = Math.max(1, this.changesSinceSave);
    });
    await this.save();
  }

  /** Index statistics for logs and metrics. */
  indexStats(): { entries: number; deleted: number; capacity: number; exact: boolean; frozen: boolean } {
    return { entries: this.index.size, deleted: this.index.deletedCount, capacity: this.index.capacity, exact: this.live <= this.config.index.exactBelow, frozen: this.frozen };
  }

  /** Sets the HNSW search breadth at run time (benchmarks trade recall for speed with it). */
  setEfSearch(ef: number): void {
    this.config.index.efSearch = ef;
    this.index.setEf(ef);
  }

  /** Saves the index when it changed, then closes the database and releases the lock. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.background;
    try {
      if (!this.readOnly && this.changesSinceSave > 0) await this.save();
      else await this.maintenance.run(async () => undefined);
    } finally {
      this.store.close();
      this.lock?.release();
      this.removeAllListeners();
    }
  }

  /** For tools working on the rows directly (export, reindex); not for request paths. */
  get database(): GalleryStore {
    return this.store;
  }
}
