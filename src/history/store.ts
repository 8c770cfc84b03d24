import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Box } from '../image/types.js';
import { blobToVector, vectorToBlob } from '../index/vectors.js';
import { makeDirectories } from '../private-files.js';

/**
 * The appearance history's durable state in SQLite (WAL): one row per stored appearance (one
 * track of one person on one stream), the clusters of unknown appearances, and what the search
 * index file reflects. Pictures are files beside it (see files.ts); a row is inserted only after
 * its files are complete on disk, so every row's pictures exist.
 */

export const HISTORY_DB_FILE = 'history.db';
const SCHEMA_VERSION = 1;

export interface AppearanceRow {
  id: number;
  stream_id: string;
  /** 1: an enrolled identity; 0: unknown. */
  known: number;
  identity_id: string | null;
  identity_name: string | null;
  cluster_id: number | null;
  track_id: number;
  started_at: number;
  ended_at: number;
  best_similarity: number | null;
  frames: number;
  face_score: number;
  face_size: number;
  sharpness: number | null;
  quality: number;
  box: string;
  frame_width: number;
  frame_height: number;
  best_at: number;
  crop_file: string;
  snapshot_file: string | null;
  bytes: number;
  model_id: string | null;
  has_embedding: number;
}

/** An appearance ready to be inserted (its files already written). */
export interface NewAppearance {
  id: number;
  streamId: string;
  identity: { id: string; name: string } | null;
  trackId: number;
  startedAt: number;
  endedAt: number;
  bestSimilarity: number | null;
  frames: number;
  faceScore: number;
  faceSize: number;
  sharpness: number | null;
  quality: number;
  box: Box;
  frameWidth: number;
  frameHeight: number;
  bestAt: number;
  cropFile: string;
  snapshotFile: string | null;
  /** Bytes this appearance costs: its files plus its embedding. */
  bytes: number;
  modelId: string | null;
  embedding: Float32Array | null;
}

export interface ClusterRow {
  id: number;
  /** Sum of the members' unit embeddings (its direction is the centroid). */
  sum: Buffer;
  size: number;
  first_seen: number;
  last_seen: number;
  created_at: number;
}

export interface AppearanceFilter {
  identityId?: string;
  streamId?: string;
  known?: boolean;
  clusterId?: number;
  /** Epoch ms: appearances that were still going on at or after this time. */
  from?: number;
  /** Epoch ms: appearances that started before this time. */
  to?: number;
  /** Keyset cursor: only ids below this one (the next page of a newest-first list). */
  before?: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS appearances (
  id INTEGER PRIMARY KEY,
  stream_id TEXT NOT NULL,
  known INTEGER NOT NULL,
  identity_id TEXT,
  identity_name TEXT,
  cluster_id INTEGER,
  track_id INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  ended_at INTEGER NOT NULL,
  best_similarity REAL,
  frames INTEGER NOT NULL,
  face_score REAL NOT NULL,
  face_size REAL NOT NULL,
  sharpness REAL,
  quality REAL NOT NULL,
  box TEXT NOT NULL,
  frame_width INTEGER NOT NULL,
  frame_height INTEGER NOT NULL,
  best_at INTEGER NOT NULL,
  crop_file TEXT NOT NULL,
  snapshot_file TEXT,
  bytes INTEGER NOT NULL,
  model_id TEXT,
  embedding BLOB
);
CREATE INDEX IF NOT EXISTS appearances_identity ON appearances (identity_id, id);
CREATE INDEX IF NOT EXISTS appearances_stream ON appearances (stream_id, id);
CREATE INDEX IF NOT EXISTS appearances_known ON appearances (known, id);
CREATE INDEX IF NOT EXISTS appearances_known_ended ON appearances (known, ended_at);
CREATE INDEX IF NOT EXISTS appearances_cluster ON appearances (cluster_id, quality);
CREATE INDEX IF NOT EXISTS appearances_started ON appearances (started_at);
CREATE TABLE IF NOT EXISTS clusters (
  id INTEGER PRIMARY KEY,
  sum BLOB NOT NULL,
  size INTEGER NOT NULL,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
-- Appearances deleted since the search index file was saved: replayed as deletions when it is loaded.
CREATE TABLE IF NOT EXISTS index_removed (id INTEGER PRIMARY KEY);
`;

const COLUMNS = 'id, stream_id, known, identity_id, identity_name, cluster_id, track_id, started_at, ended_at, best_similarity, frames, face_score, face_size, sharpness, quality, box, frame_width, frame_height, best_at, crop_file, snapshot_file, bytes, model_id, embedding IS NOT NULL AS has_embedding';

export class HistoryStore {
  readonly db: Database.Database;

  constructor(readonly dir: string) {
    makeDirectories(dir, 0o700);
    const file = path.join(dir, HISTORY_DB_FILE);
    this.db = new Database(file);
    fs.chmodSync(file, 0o600);
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode: a power cut may lose the last commits, never corrupt the database.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    const version = this.getMeta('schema_version');
    if (version === undefined) this.setMeta('schema_version', SCHEMA_VERSION);
    else if (Number(version) !== SCHEMA_VERSION) throw new Error(`history database ${file} has schema version ${version}; this facestream reads version ${SCHEMA_VERSION}`);
  }

  getMeta(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  setMeta(key: string, value: string | number): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, String(value));
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  maxAppearanceId(): number {
    return (this.db.prepare('SELECT MAX(id) AS m FROM appearances').get() as { m: number | null }).m ?? 0;
  }

  insert(a: NewAppearance, clusterId: number | null): void {
    this.db
      .prepare(
        `INSERT INTO appearances (id, stream_id, known, identity_id, identity_name, cluster_id, track_id, started_at, ended_at, best_similarity, frames, face_score, face_size, sharpness, quality, box, frame_width, frame_height, best_at, crop_file, snapshot_file, bytes, model_id, embedding)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        a.id,
        a.streamId,
        a.identity ? 1 : 0,
        a.identity?.id ?? null,
        a.identity?.name ?? null,
        clusterId,
        a.trackId,
        a.startedAt,
        a.endedAt,
        a.bestSimilarity,
        a.frames,
        a.faceScore,
        a.faceSize,
        a.sharpness,
        a.quality,
        JSON.stringify(a.box.map((v) => Math.round(v * 10) / 10)),
        a.frameWidth,
        a.frameHeight,
        a.bestAt,
        a.cropFile,
        a.snapshotFile,
        a.bytes,
        a.modelId,
        a.embedding ? vectorToBlob(a.embedding) : null,
      );
  }

  get(id: number): AppearanceRow | undefined {
    return this.db.prepare(`SELECT ${COLUMNS} FROM appearances WHERE id = ?`).get(id) as AppearanceRow | undefined;
  }

  getMany(ids: readonly number[]): AppearanceRow[] {
    if (ids.length === 0) return [];
    const rows = this.db.prepare(`SELECT ${COLUMNS} FROM appearances WHERE id IN (SELECT value FROM json_each(?))`).all(JSON.stringify(ids)) as AppearanceRow[];
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.flatMap((id) => byId.get(id) ?? []);
  }

  embedding(id: number, dimension: number): Float32Array | undefined {
    const row = this.db.prepare('SELECT embedding FROM appearances WHERE id = ?').get(id) as { embedding: Buffer | null } | undefined;
    return row?.embedding ? blobToVector(row.embedding, dimension) : undefined;
  }

  private where(f: AppearanceFilter): { sql: string; args: unknown[] } {
    const parts: string[] = [];
    const args: unknown[] = [];
    if (f.identityId !== undefined) (parts.push('identity_id = ?'), args.push(f.identityId));
    if (f.streamId !== undefined) (parts.push('stream_id = ?'), args.push(f.streamId));
    if (f.known !== undefined) (parts.push('known = ?'), args.push(f.known ? 1 : 0));
    if (f.clusterId !== undefined) (parts.push('cluster_id = ?'), args.push(f.clusterId));
    if (f.from !== undefined) (parts.push('ended_at >= ?'), args.push(f.from));
    if (f.to !== undefined) (parts.push('started_at < ?'), args.push(f.to));
    if (f.before !== undefined) (parts.push('id < ?'), args.push(f.before));
    return { sql: parts.length ? `WHERE ${parts.join(' AND ')}` : '', args };
  }

  /** Newest first (ids grow with the start of the appearance), `limit` rows. */
  list(f: AppearanceFilter, limit: number): AppearanceRow[] {
    const { sql, args } = this.where(f);
    return this.db.prepare(`SELECT ${COLUMNS} FROM appearances ${sql} ORDER BY id DESC LIMIT ?`).all(...args, limit) as AppearanceRow[];
  }

  count(f: AppearanceFilter): number {
    const { sql, args } = this.where(f);
    return (this.db.prepare(`SELECT COUNT(*) AS n FROM appearances ${sql}`).get(...args) as { n: number }).n;
  }

  /** Bytes and rows per kind, for retention's size limits. */
  usage(): { known: { rows: number; bytes: number }; unknown: { rows: number; bytes: number } } {
    const out = { known: { rows: 0, bytes: 0 }, unknown: { rows: 0, bytes: 0 } };
    for (const r of this.db.prepare('SELECT known, COUNT(*) AS rows, COALESCE(SUM(bytes), 0) AS bytes FROM appearances GROUP BY known').all() as { known: number; rows: number; bytes: number }[]) {
      out[r.known ? 'known' : 'unknown'] = { rows: r.rows, bytes: r.bytes };
    }
    return out;
  }

  /** The oldest appearances of a kind (by end time), for retention. */
  oldest(known: boolean, endedBefore: number, limit: number): AppearanceRow[] {
    return this.db.prepare(`SELECT ${COLUMNS} FROM appearances WHERE known = ? AND ended_at < ? ORDER BY ended_at LIMIT ?`).all(known ? 1 : 0, endedBefore, limit) as AppearanceRow[];
  }

  /** Deletes rows (one transaction) and records them for the search index; returns the deleted rows. */
  delete(ids: readonly number[]): AppearanceRow[] {
    if (ids.length === 0) return [];
    return this.transaction(() => {
      const rows = this.getMany(ids);
      const del = this.db.prepare('DELETE FROM appearances WHERE id = ?');
      const removed = this.db.prepare('INSERT OR IGNORE INTO index_removed (id) VALUES (?)');
      for (const r of rows) {
        del.run(r.id);
        if (r.has_embedding) removed.run(r.id);
      }
      return rows;
    });
  }

  /** Ids matching a filter, oldest first, at most `limit`. */
  ids(f: AppearanceFilter, limit = Number.MAX_SAFE_INTEGER): number[] {
    const { sql, args } = this.where(f);
    return this.db.prepare(`SELECT id FROM appearances ${sql} ORDER BY id LIMIT ?`).pluck().all(...args, limit) as number[];
  }

  /** Every embedding with id above `afterId`, in id order, in pages (index rebuilds and replays). */
  *embeddings(afterId: number, dimension: number, page = 5000): Generator<{ id: number; embedding: Float32Array }> {
    let last = afterId;
    const stmt = this.db.prepare('SELECT id, embedding FROM appearances WHERE id > ? AND embedding IS NOT NULL ORDER BY id LIMIT ?');
    for (;;) {
      const rows = stmt.all(last, page) as { id: number; embedding: Buffer }[];
      for (const r of rows) yield { id: r.id, embedding: blobToVector(r.embedding, dimension) };
      if (rows.length < page) return;
      last = rows[rows.length - 1].id;
    }
  }

  /**
   * Drops the embeddings another embedding model made (the pipeline's model changed, e.g. after
   * `gallery reindex --model`): vectors of two models are not comparable, and may not even have
   * the same length. The unknown-people clusters (sums of such vectors) go with them, and the
   * saved search index is marked stale so that it is rebuilt from what remains. The appearances
   * themselves (rows, crops, snapshots) stay. Returns how many appearances lost their embedding.
   */
  retireOtherModels(modelId: string): number {
    return this.transaction(() => {
      const { changes } = this.db.prepare('UPDATE appearances SET embedding = NULL, model_id = NULL WHERE embedding IS NOT NULL AND (model_id IS NULL OR model_id != ?)').run(modelId);
      if (changes === 0) return 0;
      this.db.prepare('UPDATE appearances SET cluster_id = NULL WHERE cluster_id IS NOT NULL').run();
      this.db.prepare('DELETE FROM clusters').run();
      this.db.prepare('DELETE FROM index_removed').run();
      this.setMeta('index_max_id', -1);
      return changes;
    });
  }

  removedSinceIndexSave(): number[] {
    return this.db.prepare('SELECT id FROM index_removed').pluck().all() as number[];
  }

  clearRemovedUpTo(ids: readonly number[]): void {
    const del = this.db.prepare('DELETE FROM index_removed WHERE id = ?');
    this.transaction(() => ids.forEach((id) => del.run(id)));
  }

  relabel(ids: readonly number[], identity: { id: string; name: string }): void {
    const stmt = this.db.prepare('UPDATE appearances SET known = 1, identity_id = ?, identity_name = ?, cluster_id = NULL WHERE id = ?');
    this.transaction(() => ids.forEach((id) => stmt.run(identity.id, identity.name, id)));
  }

  renameIdentity(identityId: string, name: string): void {
    this.db.prepare('UPDATE appearances SET identity_name = ? WHERE identity_id = ?').run(name, identityId);
  }

  setCluster(ids: readonly number[], clusterId: number | null): void {
    const stmt = this.db.prepare('UPDATE appearances SET cluster_id = ? WHERE id = ?');
    this.transaction(() => ids.forEach((id) => stmt.run(clusterId, id)));
  }

  // ------------------------------------------------------------------ clusters

  clusters(): ClusterRow[] {
    return this.db.prepare('SELECT * FROM clusters').all() as ClusterRow[];
  }

  getCluster(id: number): ClusterRow | undefined {
    return this.db.prepare('SELECT * FROM clusters WHERE id = ?').get(id) as ClusterRow | undefined;
  }

  insertCluster(sum: Float32Array, size: number, firstSeen: number, lastSeen: number): number {
    return Number(this.db.prepare('INSERT INTO clusters (sum, size, first_seen, last_seen, created_at) VALUES (?, ?, ?, ?, ?)').run(vectorToBlob(sum), size, firstSeen, lastSeen, Date.now()).lastInsertRowid);
  }

  updateCluster(id: number, sum: Float32Array, size: number, firstSeen: number, lastSeen: number): void {
    this.db.prepare('UPDATE clusters SET sum = ?, size = ?, first_seen = ?, last_seen = ? WHERE id = ?').run(vectorToBlob(sum), size, firstSeen, lastSeen, id);
  }

  deleteCluster(id: number): void {
    this.db.prepare('DELETE FROM clusters WHERE id = ?').run(id);
  }

  /** Per cluster: its streams, and its members' ids by quality (best first). */
  clusterMembers(id: number): { id: number; stream_id: string; quality: number; started_at: number; ended_at: number }[] {
    return this.db.prepare('SELECT id, stream_id, quality, started_at, ended_at FROM appearances WHERE cluster_id = ? ORDER BY quality DESC').all(id) as { id: number; stream_id: string; quality: number; started_at: number; ended_at: number }[];
  }

  allFiles(): Set<string> {
    const out = new Set<string>();
    for (const r of this.db.prepare('SELECT crop_file, snapshot_file FROM appearances').iterate() as IterableIterator<{ crop_file: string; snapshot_file: string | null }>) {
      out.add(r.crop_file);
      if (r.snapshot_file) out.add(r.snapshot_file);
    }
    return out;
  }

  close(): void {
    this.db.close();
  }
}
