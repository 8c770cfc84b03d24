import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { GalleryConfig } from '../config/sections/gallery.js';
import { FacestreamError } from '../errors.js';
import { rootLogger, type Logger } from '../log.js';
import { DirectoryLock } from './lock.js';
import { GalleryRecords, now, type IdentityRecord, type IdentityRef, type ReplicatedChanges, type Template } from './records.js';
import { aggregateByIdentity, candidatesWanted, identityScore, type IdentityMatch } from './search.js';
import { DB_FILE, galleryDamageError, GalleryStore, SCHEMA_VERSION, type NewTemplate, type StoredCrop } from './store.js';
import { TemplateIndex, type IndexLoadReport } from './template-index.js';
import { TemplateIds } from './template-ids.js';
import { blobToVector, checkEmbedding, dot } from './vectors.js';
import { ensurePrivateDir } from '../private-files.js';

export type { NewTemplate, StoredCrop, CropGeometry } from './store.js';
export type { IdentityRecord, IdentityRef, ReplicatedChanges, Template } from './records.js';
export type { IdentityMatch } from './search.js';
export type { IndexLoadReport } from './template-index.js';

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
  /**
   * A replica of a system of record (cluster mode: PostgreSQL): the gallery's own write methods
   * refuse, and only applyReplicated changes it.
   */
  replica?: boolean;
}

export interface GalleryCheck {
  ok: boolean;
  problems: string[];
  /** Damage found and already repaired (by this open: a writer saves the index it rebuilt). */
  repaired: string[];
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

export type GalleryEvent = 'identity-created' | 'identity-updated' | 'identity-removed' | 'template-added' | 'template-removed';

/** Model and size of a gallery directory, read without taking its lock. */
export function readGalleryInfo(dir: string): GalleryInfo {
  const store = new GalleryStore(dir, { readOnly: true });
  try {
    return readInfo(store, dir);
  } catch (err) {
    throw galleryDamageError(dir, err) ?? err;
  } finally {
    store.close();
  }
}

function readInfo(store: GalleryStore, dir: string): GalleryInfo {
  {
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
  }
}

/**
 * The enrolled people a server recognises: a facade over the records (identities and templates
 * in SQLite, records.ts) and the search index over their embeddings (template-index.ts), which
 * keeps the two in step and tells listeners about changes.
 *
 * Writes are SQLite transactions: a method that adds or removes something returns after its
 * commit, so an acknowledged enrollment survives a crash; the index learns of it after the commit.
 */
export class Gallery extends EventEmitter {
  minSimilarity: number;
  private closed = false;

  private constructor(
    readonly dir: string,
    readonly modelId: string,
    readonly dimension: number,
    readonly config: GalleryConfig,
    readonly readOnly: boolean,
    readonly replica: boolean,
    private readonly store: GalleryStore,
    private readonly lock: DirectoryLock | undefined,
    private readonly records: GalleryRecords,
    private readonly index: TemplateIndex,
    defaultMinSimilarity: number | undefined,
  ) {
    super();
    this.minSimilarity = config.minSimilarity ?? defaultMinSimilarity ?? 0.5;
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
      const indexOpts = { dir, dimension: opts.dimension, config: opts.config, readOnly, logger };
      const loading = TemplateIndex.start(indexOpts, store);
      const records = new GalleryRecords(dir, opts.modelId, opts.dimension, store, TemplateIds.forStore(store, readOnly));
      records.load();
      const index = await TemplateIndex.open(indexOpts, store, records, loading);
      return new Gallery(dir, opts.modelId, opts.dimension, opts.config, readOnly, opts.replica ?? false, store, lock, records, index, opts.defaultMinSimilarity);
    } catch (err) {
      store?.close();
      lock?.release();
      throw galleryDamageError(dir, err) ?? err;
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

  /** How the last open got its index. */
  get loadReport(): IndexLoadReport {
    return this.index.loadReport;
  }

  private writable(): void {
    if (this.replica) {
      throw new FacestreamError('GALLERY_LOCKED', `gallery ${this.dir} is this node's replica of the cluster's gallery; write through the GalleryWriter (PostgreSQL)`, { dir: this.dir });
    }
    this.maintainable();
  }

  private maintainable(): void {
    if (this.readOnly) throw new FacestreamError('GALLERY_LOCKED', `gallery ${this.dir} is open read-only`, { dir: this.dir });
    if (this.closed) throw new FacestreamError('BAD_REQUEST', `gallery ${this.dir} is closed`, { dir: this.dir });
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

  // ---------------------------------------------------------------- search

  counts(): { identities: number; templates: number } {
    return { identities: this.records.identityCount, templates: this.records.templateCount };
  }

  /** The top-k identities for an embedding (aggregated per identity), best first. */
  search(vector: Float32Array, k = this.config.topK): IdentityMatch[] {
    this.checkVector(vector);
    const live = this.records.templateCount;
    if (live === 0) return [];
    return aggregateByIdentity(this.index.hits(vector, candidatesWanted(this.config, k, live)), k, this.config, this.records);
  }

  /** Exact search by brute force over every stored embedding: the reference the HNSW path is checked against. */
  searchExact(vector: Float32Array, k = this.config.topK): IdentityMatch[] {
    return this.searchExactBatch([vector], k)[0];
  }

  /** Exact search for many queries in one pass over the stored embeddings. For recall checks, not requests. */
  searchExactBatch(vectors: readonly Float32Array[], k = this.config.topK): IdentityMatch[][] {
    for (const v of vectors) this.checkVector(v);
    const live = this.records.templateCount;
    if (live === 0) return vectors.map(() => []);
    return this.index.exactHitsBatch(vectors, candidatesWanted(this.config, k, live)).map((hits) => aggregateByIdentity(hits, k, this.config, this.records));
  }

  /** The best identity at or above minSimilarity (null: unknown), with the top-k candidates. */
  identify(vector: Float32Array, k = this.config.topK): { match: IdentityMatch | null; candidates: IdentityMatch[] } {
    const candidates = this.search(vector, k);
    const best = candidates[0];
    return { match: best && best.similarity >= this.minSimilarity ? best : null, candidates };
  }

  /** Similarities of an embedding to each template of one identity, best first (exact). */
  private templateSimilarities(identity: string, vector: Float32Array): { row: { id: string; name: string }; sims: { id: number; s: number }[] } {
    this.checkVector(vector);
    const { row, vectors } = this.records.identityEmbeddings(identity);
    return { row, sims: vectors.map(({ id, v }) => ({ id, s: dot(v, 0, vector, this.dimension) })).sort((a, b) => b.s - a.s) };
  }

  /** 1:1 against one identity: its score for this embedding over all its templates (exact). */
  identitySimilarity(identity: string, vector: Float32Array): { similarity: number; templateId: string } {
    const { row, sims } = this.templateSimilarities(identity, vector);
    if (sims.length === 0) throw new FacestreamError('TEMPLATE_NOT_FOUND', `identity "${row.name}" (${row.id}) has no templates`, { identityId: row.id });
    return { similarity: identityScore(this.config, sims.map((x) => x.s)), templateId: this.records.publicTemplateId(sims[0].id) };
  }

  /** The identity's template most similar to an embedding (exact), or undefined when it has none. */
  nearestTemplateOf(identity: string, vector: Float32Array): { similarity: number; templateId: string } | undefined {
    const best = this.templateSimilarities(identity, vector).sims[0];
    return best ? { similarity: best.s, templateId: this.records.publicTemplateId(best.id) } : undefined;
  }

  // ---------------------------------------------------------------- identities

  createIdentity(input: { id?: string; name: string; metadata?: unknown }): IdentityRecord {
    this.writable();
    const record = this.records.createIdentity(input);
    this.emit('identity-created', { identity: record });
    return record;
  }

  /** An identity by id (or by a unique name), or undefined. */
  getIdentity(ref: string): IdentityRecord | undefined {
    return this.records.getIdentity(ref);
  }

  /** An identity by id only (no name lookup). */
  getIdentityById(id: string): IdentityRecord | undefined {
    return this.records.getIdentityById(id);
  }

  requireIdentity(ref: string): IdentityRecord {
    return this.records.requireIdentity(ref);
  }

  listIdentities(opts: { offset?: number; limit?: number; search?: string } = {}): IdentityRecord[] {
    return this.records.listIdentities(opts);
  }

  updateIdentity(ref: string, fields: { name?: string; metadata?: unknown }): IdentityRecord {
    this.writable();
    const { identity, previousName } = this.records.updateIdentity(ref, fields);
    this.emit('identity-updated', { identity, previousName });
    return identity;
  }

  renameIdentity(ref: string, name: string): IdentityRecord {
    return this.updateIdentity(ref, { name });
  }

  /** Removes an identity and all its templates in one transaction. */
  removeIdentity(ref: string): IdentityRecord {
    this.writable();
    const { identity, labels } = this.records.removeIdentity(ref);
    for (const id of labels) this.index.remove(id);
    for (const id of labels) this.emit('template-removed', { templateId: this.records.publicTemplateId(id), identityId: identity.id });
    this.emit('identity-removed', { identity });
    this.index.afterChanges(labels.length);
    return identity;
  }

  // ---------------------------------------------------------------- templates

  /** Whether this identity already holds a template from a picture with this content hash. */
  hasPicture(ref: string, contentHash: string): boolean {
    return this.records.hasPicture(ref, contentHash);
  }

  /** Content hashes of an identity's pictures (for resumable bulk enrollment). */
  pictureHashes(ref: string): Set<string> {
    return this.records.pictureHashes(ref);
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
    for (const e of entries) for (const t of e.templates) this.checkVector(t.embedding, 'template');
    const written = this.records.addTemplatesBatch(entries);
    written.forEach((w, e) => w.labels.forEach((id, i) => this.index.add(id, entries[e].templates[i].embedding)));
    if (this.listenerCount('identity-created') + this.listenerCount('template-added') > 0) {
      for (const r of written) {
        if (r.created) this.emit('identity-created', { identity: r.identity });
        for (const t of r.templates) this.emit('template-added', { template: t, identity: { id: r.identity.id, name: r.identity.name } });
      }
    }
    this.index.afterChanges(written.reduce((n, r) => n + r.templates.length, 0));
    return written.map(({ identity, templates, created }) => ({ identity, templates, created }));
  }

  listTemplates(ref: string): Template[] {
    return this.records.listTemplates(ref);
  }

  getTemplate(templateId: string): Template | undefined {
    return this.records.getTemplate(templateId);
  }

  /** The stored face crop of a template (for display and for re-embedding with another model). */
  templateCrop(templateId: string): StoredCrop | undefined {
    return this.records.templateCrop(templateId);
  }

  templateEmbedding(templateId: string): Float32Array {
    return this.records.templateEmbedding(templateId);
  }

  removeTemplate(templateId: string): Template {
    this.writable();
    const { template, label } = this.records.removeTemplate(templateId);
    this.index.remove(label);
    this.emit('template-removed', { templateId: template.id, identityId: template.identityId });
    this.index.afterChanges(1);
    return template;
  }

  // ---------------------------------------------------------------- replica

  /**
   * Applies changes of the system of record this gallery replicates (cluster mode), in one
   * SQLite transaction, then updates the index and tells listeners, exactly as a local write would.
   */
  applyReplicated(changes: ReplicatedChanges): void {
    this.maintainable();
    const vectors = new Map<number, Float32Array>();
    for (const t of changes.templates) {
      const v = blobToVector(t.embedding, this.dimension);
      this.checkVector(v, 'template');
      vectors.set(t.row.id, v);
    }
    const applied = this.records.applyReplicated(changes);
    for (const t of applied.removedTemplates) this.index.remove(t.label);
    for (const t of applied.added) this.index.add(t.label, vectors.get(t.label)!);
    for (const t of applied.removedTemplates) this.emit('template-removed', { templateId: t.templateId, identityId: t.identityId });
    for (const identity of applied.removed) this.emit('identity-removed', { identity });
    for (const identity of applied.created) this.emit('identity-created', { identity });
    for (const u of applied.updated) this.emit('identity-updated', u);
    for (const t of applied.added) this.emit('template-added', { template: t.template, identity: t.identity });
    this.index.afterChanges(applied.removedTemplates.length + applied.added.length);
  }

  /** A meta value of the gallery database (the replica keeps its change sequence there). */
  meta(key: string): string | undefined {
    return this.store.getMeta(key);
  }

  // ---------------------------------------------------------------- maintenance

  /** Integrity check: SQLite, embeddings, and the index against the database (every template searchable, nothing else). */
  async check(): Promise<GalleryCheck> {
    await this.index.settled(); // let a running save or compaction finish
    let found: { problems: string[]; owners: Map<number, number> };
    try {
      found = this.records.problems();
    } catch (err) {
      throw galleryDamageError(this.dir, err) ?? err;
    }
    const { problems, owners } = found;
    problems.push(...this.index.problems(owners));
    // A saved index found damaged on open was rebuilt from the database: the damage is news.
    const report = this.index.loadReport;
    const repaired: string[] = [];
    if (report.source === 'rebuilt' && report.reason && report.reason !== 'no saved index') {
      if (this.readOnly) problems.push(`${report.reason}; it was rebuilt in memory for this check only: run \`facestream gallery check --repair\``);
      else repaired.push(`${report.reason}; rebuilt from the database and saved`);
    }
    return { ok: problems.length === 0, problems, repaired, identities: this.records.identityCount, templates: owners.size, index: this.index.summary() };
  }

  /** Saves the index atomically when it changed since the last save. */
  save(): Promise<void> {
    return this.index.save();
  }

  /** Rebuilds the index without its deleted entries, then saves it; searches keep working meanwhile. */
  compact(): Promise<void> {
    return this.index.rebuild();
  }

  /** Throws away the index and builds it again from the database, then saves it. */
  async rebuild(): Promise<void> {
    this.maintainable();
    await this.index.rebuild();
  }

  /** Index statistics for logs and metrics. */
  indexStats(): { entries: number; deleted: number; capacity: number; exact: boolean; frozen: boolean } {
    return this.index.stats();
  }

  /** Sets the HNSW search breadth at run time (benchmarks trade recall for speed with it). */
  setEfSearch(ef: number): void {
    this.index.setEf(ef);
  }

  /** Saves the index when it changed, then closes the database and releases the lock. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.index.close();
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
