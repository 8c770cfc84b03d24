import fs from 'node:fs';
import path from 'node:path';
import { galleryIndexSchema } from '../config/sections/gallery.js';
import { HnswIndex } from '../index/hnsw.js';
import type { Logger } from '../log.js';
import type { HistoryStore } from './store.js';

const INDEX_FILE = 'appearances.hnsw';

/**
 * "Search by face" over the best-face embeddings of stored appearances: an hnswlib index (the
 * gallery's HnswIndex, inner product on unit vectors) labelled by appearance id. It is a cache of
 * the database: saved atomically beside it on close and every `saveEvery` changes, with the last
 * appearance id it holds; on open, later appearances are added and deletions recorded since the
 * save (table index_removed) are replayed. A missing or unreadable file is rebuilt from SQLite.
 */
export class AppearanceSearchIndex {
  private changes = 0;
  private maxId: number;

  private constructor(
    private index: HnswIndex,
    private readonly dir: string,
    private readonly store: HistoryStore,
    maxId: number,
    private readonly saveEvery: number,
  ) {
    this.maxId = maxId;
  }

  static async open(dir: string, store: HistoryStore, dimension: number, logger: Logger, saveEvery = 10_000): Promise<AppearanceSearchIndex> {
    const cfg = galleryIndexSchema.parse({});
    const file = path.join(dir, INDEX_FILE);
    const savedMax = Number(store.getMeta('index_max_id') ?? -1);
    let index: HnswIndex | undefined;
    let maxId = 0;
    if (savedMax >= 0 && fs.existsSync(file) && Number(store.getMeta('index_dimension')) === dimension) {
      try {
        index = await HnswIndex.load(file, dimension, cfg);
        index.setDeletedCount(Number(store.getMeta('index_deleted') ?? 0));
        maxId = savedMax;
        for (const id of store.removedSinceIndexSave()) if (id <= savedMax) index.remove(id);
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'appearance search index unreadable; rebuilding it from the database');
        index = undefined;
      }
    }
    const out = new AppearanceSearchIndex(index ?? HnswIndex.create(dimension, cfg), dir, store, maxId, saveEvery);
    let added = 0;
    for (const { id, embedding } of store.embeddings(maxId, dimension)) {
      out.index.add(id, embedding);
      out.maxId = Math.max(out.maxId, id);
      added++;
    }
    out.changes = added;
    if (added > 1000) await out.save();
    return out;
  }

  get size(): number {
    return this.index.size;
  }

  add(id: number, v: Float32Array): void {
    // hnswlib writes the file on a libuv thread: the graph must not change meanwhile.
    if (this.saving) return void this.pending.push(() => this.add(id, v));
    this.index.add(id, v);
    this.maxId = Math.max(this.maxId, id);
    this.changed();
  }

  remove(id: number): void {
    if (this.saving) return void this.pending.push(() => this.remove(id));
    if (this.index.remove(id)) this.changed();
  }

  /** Nearest appearances to a unit vector: ids with cosine similarity, best first. */
  search(v: Float32Array, k: number): { id: number; similarity: number }[] {
    return this.index.search(v, k).map((h) => ({ id: h.templateId, similarity: h.similarity }));
  }

  private changed(): void {
    if (++this.changes >= this.saveEvery) void this.save().catch(() => {});
  }

  private saving: Promise<void> | undefined;
  private pending: (() => void)[] = [];

  /** Writes the index (temporary file, rename) and records what it holds. */
  save(): Promise<void> {
    this.saving ??= (async () => {
      const file = path.join(this.dir, INDEX_FILE);
      const tmp = `${file}.tmp`;
      const removed = this.store.removedSinceIndexSave();
      const maxId = this.maxId;
      const deleted = this.index.deletedCount;
      this.changes = 0;
      try {
        await this.index.writeTo(tmp);
        fs.renameSync(tmp, file);
        this.store.transaction(() => {
          this.store.setMeta('index_max_id', maxId);
          this.store.setMeta('index_deleted', deleted);
          this.store.setMeta('index_dimension', this.index.dimension);
        });
        this.store.clearRemovedUpTo(removed);
      } finally {
        fs.rmSync(tmp, { force: true });
        this.saving = undefined;
        for (const op of this.pending.splice(0)) op();
      }
    })();
    return this.saving;
  }
}
