import { blobToVector } from '../index/vectors.js';
import type { ClusterRow } from './store.js';

/**
 * Incremental clustering of unknown appearances: online centroid clustering (the "leader-follower"
 * scheme, i.e. sequential k-means with a distance threshold instead of a fixed k; Hartigan,
 * Clustering Algorithms, 1975, ch. 3). Each cluster keeps the sum of its members' unit embeddings;
 * its centroid is that sum's direction. A new appearance joins the cluster whose centroid is most
 * similar (cosine) when that similarity reaches `threshold`, else it starts a new cluster. Joining
 * updates the sum in O(dimension), so clustering keeps pace with arrivals and never re-runs over
 * the history; removing a member subtracts its embedding. Averaging makes a centroid steadier than
 * any single face, so a person's later appearances match it better than they match each other.
 */

export interface ClusterState {
  id: number;
  sum: Float32Array;
  size: number;
  firstSeen: number;
  lastSeen: number;
}

export class UnknownClusters {
  private readonly clusters = new Map<number, ClusterState>();

  constructor(
    readonly dimension: number,
    public threshold: number,
  ) {}

  static fromRows(rows: readonly ClusterRow[], dimension: number, threshold: number): UnknownClusters {
    const c = new UnknownClusters(dimension, threshold);
    for (const r of rows) c.clusters.set(r.id, { id: r.id, sum: blobToVector(r.sum, dimension), size: r.size, firstSeen: r.first_seen, lastSeen: r.last_seen });
    return c;
  }

  get size(): number {
    return this.clusters.size;
  }

  get(id: number): ClusterState | undefined {
    return this.clusters.get(id);
  }

  all(): ClusterState[] {
    return [...this.clusters.values()];
  }

  /** Cosine similarity of a unit vector to a cluster's centroid. */
  similarity(c: ClusterState, v: Float32Array): number {
    let dot = 0;
    let norm = 0;
    const s = c.sum;
    for (let i = 0; i < this.dimension; i++) {
      dot += s[i] * v[i];
      norm += s[i] * s[i];
    }
    return norm > 0 ? dot / Math.sqrt(norm) : -1;
  }

  /** The cluster a unit embedding would join (best centroid at or above the threshold), or null. */
  nearest(v: Float32Array, exclude?: number): { cluster: ClusterState; similarity: number } | null {
    let best: ClusterState | null = null;
    let bestSim = -Infinity;
    for (const c of this.clusters.values()) {
      if (c.id === exclude) continue;
      const sim = this.similarity(c, v);
      if (sim > bestSim) [best, bestSim] = [c, sim];
    }
    return best && bestSim >= this.threshold ? { cluster: best, similarity: bestSim } : null;
  }

  /** Adds a member to a cluster (which must exist). */
  add(id: number, v: Float32Array, startedAt: number, endedAt: number): ClusterState {
    const c = this.clusters.get(id)!;
    for (let i = 0; i < this.dimension; i++) c.sum[i] += v[i];
    c.size++;
    c.firstSeen = Math.min(c.firstSeen, startedAt);
    c.lastSeen = Math.max(c.lastSeen, endedAt);
    return c;
  }

  /** Registers a new cluster holding one member, under the id the store gave it. */
  create(id: number, v: Float32Array, startedAt: number, endedAt: number): ClusterState {
    const c = { id, sum: Float32Array.from(v), size: 1, firstSeen: startedAt, lastSeen: endedAt };
    this.clusters.set(id, c);
    return c;
  }

  /** Removes a member's embedding from its cluster; returns the cluster, or null when it became empty (and was dropped). */
  remove(id: number, v: Float32Array): ClusterState | null {
    const c = this.clusters.get(id);
    if (!c) return null;
    c.size--;
    if (c.size <= 0) {
      this.clusters.delete(id);
      return null;
    }
    for (let i = 0; i < this.dimension; i++) c.sum[i] -= v[i];
    return c;
  }

  /** Folds cluster `from` into `into`. */
  merge(into: number, from: number): ClusterState {
    const a = this.clusters.get(into)!;
    const b = this.clusters.get(from)!;
    for (let i = 0; i < this.dimension; i++) a.sum[i] += b.sum[i];
    a.size += b.size;
    a.firstSeen = Math.min(a.firstSeen, b.firstSeen);
    a.lastSeen = Math.max(a.lastSeen, b.lastSeen);
    this.clusters.delete(from);
    return a;
  }

  drop(id: number): void {
    this.clusters.delete(id);
  }

  /** Recomputes a cluster from its members (after a split: sums of floats drift, members are exact). */
  reset(id: number, members: readonly { v: Float32Array; startedAt: number; endedAt: number }[]): ClusterState | null {
    if (members.length === 0) {
      this.clusters.delete(id);
      return null;
    }
    const sum = new Float32Array(this.dimension);
    for (const m of members) for (let i = 0; i < this.dimension; i++) sum[i] += m.v[i];
    const c = { id, sum, size: members.length, firstSeen: Math.min(...members.map((m) => m.startedAt)), lastSeen: Math.max(...members.map((m) => m.endedAt)) };
    this.clusters.set(id, c);
    return c;
  }
}
