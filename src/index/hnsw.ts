import crypto from 'node:crypto';
import fs from 'node:fs';
import hnswlib from 'hnswlib-node';
import type { GalleryIndexConfig } from '../config/sections/gallery.js';
import type { ScoredTemplate } from './vectors.js';

const { HierarchicalNSW } = hnswlib;
type Hnsw = InstanceType<typeof HierarchicalNSW>;

/**
 * The approximate nearest-neighbour index over template embeddings (hnswlib, inner product on
 * unit vectors, so similarity = 1 - distance). Labels are template ids. It is a cache of what
 * SQLite holds: it can always be rebuilt from there.
 */
export class HnswIndex {
  private deleted = 0;
  private live = 0;
  /** A plain array reused for every query: hnswlib's binding accepts only JS arrays. */
  private readonly scratch: number[];

  private constructor(
    private readonly index: Hnsw,
    readonly dimension: number,
    private readonly cfg: GalleryIndexConfig,
  ) {
    this.scratch = new Array<number>(dimension).fill(0);
  }

  static create(dimension: number, cfg: GalleryIndexConfig, capacity = cfg.initialCapacity): HnswIndex {
    const index = new HierarchicalNSW('ip', dimension);
    index.initIndex({ maxElements: Math.max(16, capacity), m: cfg.m, efConstruction: cfg.efConstruction, randomSeed: 100 });
    index.setEf(cfg.efSearch);
    return new HnswIndex(index, dimension, cfg);
  }

  /**
   * Loads a saved index on a libuv thread, so the caller can verify the file's checksum and read
   * the database meanwhile. hnswlib's loader checks the file's structure (sizes) as it reads;
   * content is trusted only after the caller's checksum matched.
   */
  static async load(file: string, dimension: number, cfg: GalleryIndexConfig): Promise<HnswIndex> {
    const index = new HierarchicalNSW('ip', dimension);
    await index.readIndex(file, false);
    if (index.getNumDimensions() !== dimension) throw new Error(`index file has dimension ${index.getNumDimensions()}, expected ${dimension}`);
    index.setEf(cfg.efSearch);
    const out = new HnswIndex(index, dimension, cfg);
    out.live = index.getCurrentCount();
    return out;
  }

  /** Entries searchable (added and not deleted). */
  get size(): number {
    return this.live;
  }

  /** Entries marked deleted but still in the graph (compaction removes them). */
  get deletedCount(): number {
    return this.deleted;
  }

  get capacity(): number {
    return this.index.getMaxElements();
  }

  /** After loading, the caller tells how many of the file's entries were already deleted when it was saved. */
  setDeletedCount(n: number): void {
    this.deleted = n;
    this.live = this.index.getCurrentCount() - n;
  }

  private toArray(v: Float32Array): number[] {
    const a = this.scratch;
    for (let i = 0; i < this.dimension; i++) a[i] = v[i];
    return a;
  }

  add(label: number, v: Float32Array): void {
    if (v.length !== this.dimension) throw new Error(`vector has ${v.length} values, index dimension is ${this.dimension}`);
    // A saved empty index loads with a capacity of 0 (hnswlib's loader takes the saved capacity only
    // when the file holds elements): doubling 0 fails ("resizeIndex failed to allocate base layer")
    // and leaves the heap corrupted.
    if (this.index.getCurrentCount() >= this.index.getMaxElements()) this.index.resizeIndex(Math.max(16, this.index.getMaxElements() * 2));
    this.index.addPoint(this.toArray(v), label);
    this.live++;
  }

  /** Marks a label deleted; false when it is not in the index (or already deleted). */
  remove(label: number): boolean {
    try {
      this.index.markDelete(label);
    } catch {
      return false;
    }
    this.live--;
    this.deleted++;
    return true;
  }

  search(v: Float32Array, k: number): ScoredTemplate[] {
    if (this.live === 0 || k <= 0) return [];
    const n = Math.min(k, this.index.getMaxElements());
    if (this.index.getEf() < n) this.index.setEf(n);
    else if (this.index.getEf() !== Math.max(this.cfg.efSearch, n)) this.index.setEf(Math.max(this.cfg.efSearch, n));
    const { distances, neighbors } = this.index.searchKnn(this.toArray(v), n);
    const out: ScoredTemplate[] = new Array(neighbors.length);
    for (let i = 0; i < neighbors.length; i++) out[i] = { templateId: neighbors[i], similarity: 1 - distances[i] };
    return out;
  }

  setEf(ef: number): void {
    this.index.setEf(ef);
  }

  /** Every label in the graph, deleted ones included. */
  labels(): number[] {
    return this.index.getIdsList();
  }

  vector(label: number): Float32Array {
    return Float32Array.from(this.index.getPoint(label));
  }

  /** Writes the index to `file` (mode 0600) on a libuv thread; the caller keeps the index unchanged until it resolves. */
  async writeTo(file: string): Promise<void> {
    const ok = await this.index.writeIndex(file);
    if (!ok) throw new Error(`hnswlib could not write ${file}`);
    // hnswlib creates it with the umask's mode; the vectors are biometric data (see SECURITY.md).
    fs.chmodSync(file, 0o600);
  }
}

/** SHA-256 of a file, streamed so a multi-gigabyte index is never held in memory twice. */
export async function fileSha256(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 8 * 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
