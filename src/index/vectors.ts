/** Embeddings as stored (little-endian float32 blobs) and an exact, in-memory search over them. */

export function vectorToBlob(v: Float32Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** A blob back to a vector; copies, because SQLite's buffers need not be 4-byte aligned. */
export function blobToVector(blob: Uint8Array, dimension: number): Float32Array {
  if (blob.byteLength !== dimension * 4) throw new Error(`embedding blob holds ${blob.byteLength} bytes, expected ${dimension * 4}`);
  const out = new Float32Array(dimension);
  new Uint8Array(out.buffer).set(blob);
  return out;
}

export function dot(a: Float32Array, aOffset: number, b: Float32Array, dim: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 3 < dim; i += 4) {
    s0 += a[aOffset + i] * b[i];
    s1 += a[aOffset + i + 1] * b[i + 1];
    s2 += a[aOffset + i + 2] * b[i + 2];
    s3 += a[aOffset + i + 3] * b[i + 3];
  }
  for (; i < dim; i++) s0 += a[aOffset + i] * b[i];
  return s0 + s1 + s2 + s3;
}

export interface ScoredTemplate {
  templateId: number;
  similarity: number;
}

/**
 * Keeps the `k` best (highest similarity) of a stream of scores; a small sorted array beats a
 * heap for the k <= a few hundred used here.
 */
export class TopK {
  readonly items: ScoredTemplate[] = [];
  constructor(private readonly k: number) {}

  get floor(): number {
    return this.items.length < this.k ? -Infinity : this.items[this.items.length - 1].similarity;
  }

  push(templateId: number, similarity: number): void {
    if (this.k <= 0 || similarity <= this.floor) return;
    let i = this.items.length;
    while (i > 0 && this.items[i - 1].similarity < similarity) i--;
    this.items.splice(i, 0, { templateId, similarity });
    if (this.items.length > this.k) this.items.pop();
  }
}

/**
 * Rows of unit vectors in one growable Float32Array, searched by brute force. Removal swaps the
 * last row into the hole so the matrix stays dense.
 */
export class ExactMatrix {
  private data: Float32Array;
  private ids: Float64Array;
  private rowOf = new Map<number, number>();
  private rows = 0;

  constructor(
    readonly dimension: number,
    capacity = 64,
  ) {
    this.data = new Float32Array(Math.max(1, capacity) * dimension);
    this.ids = new Float64Array(Math.max(1, capacity));
  }

  get size(): number {
    return this.rows;
  }

  has(id: number): boolean {
    return this.rowOf.has(id);
  }

  add(id: number, v: Float32Array): void {
    const existing = this.rowOf.get(id);
    if (existing !== undefined) {
      this.data.set(v, existing * this.dimension);
      return;
    }
    if (this.rows === this.ids.length) {
      const data = new Float32Array(this.data.length * 2);
      data.set(this.data);
      this.data = data;
      const ids = new Float64Array(this.ids.length * 2);
      ids.set(this.ids);
      this.ids = ids;
    }
    this.data.set(v, this.rows * this.dimension);
    this.ids[this.rows] = id;
    this.rowOf.set(id, this.rows);
    this.rows++;
  }

  remove(id: number): boolean {
    const row = this.rowOf.get(id);
    if (row === undefined) return false;
    const last = this.rows - 1;
    if (row !== last) {
      this.data.copyWithin(row * this.dimension, last * this.dimension, (last + 1) * this.dimension);
      this.ids[row] = this.ids[last];
      this.rowOf.set(this.ids[row], row);
    }
    this.rowOf.delete(id);
    this.rows--;
    return true;
  }

  /** Feeds every row's similarity to `top` (callers filter or merge first). */
  scan(query: Float32Array, top: TopK, skip?: (id: number) => boolean): void {
    const d = this.dimension;
    for (let r = 0; r < this.rows; r++) {
      const id = this.ids[r];
      if (skip?.(id)) continue;
      top.push(id, dot(this.data, r * d, query, d));
    }
  }

  search(query: Float32Array, k: number): ScoredTemplate[] {
    const top = new TopK(k);
    this.scan(query, top);
    return top.items;
  }
}

/** How far a template's L2 norm may be from 1 (float32 rounding of a normalised 512-d vector is ~1e-6). */
export const UNIT_NORM_TOLERANCE = 1e-3;

/**
 * The one check every embedding entering the gallery passes (enrollment, import, reindex, the
 * API) and every query is held to: `dimension` values, all finite, and for templates an L2 norm
 * of 1 within UNIT_NORM_TOLERANCE. Similarity is a dot product of unit vectors, so a template
 * scaled by 1000 would beat every real match, and one NaN poisons the HNSW graph around it.
 * Throws Error with a message saying which rule failed; callers wrap it in their own error.
 */
export function checkEmbedding(v: Float32Array, dimension: number, kind: 'template' | 'query' = 'template'): void {
  if (v.length !== dimension) throw new Error(`embedding has ${v.length} values, expected ${dimension}`);
  let sq = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (!Number.isFinite(x)) throw new Error(`embedding value ${i} is ${x}; every value must be a finite number`);
    sq += x * x;
  }
  const norm = Math.sqrt(sq);
  if (kind === 'template' && Math.abs(norm - 1) > UNIT_NORM_TOLERANCE) throw new Error(`embedding has L2 norm ${norm.toPrecision(6)}; templates are unit vectors (within ${UNIT_NORM_TOLERANCE})`);
  if (kind === 'query' && norm === 0) throw new Error('embedding is all zeros');
}
