import fs from 'node:fs';
import path from 'node:path';
import { fileSha256, type HnswIndex } from './hnsw.js';
import type { GalleryStore } from './store.js';

/**
 * The saved HNSW index beside the database. A save writes a new file (temporary name, fsync,
 * rename, directory fsync) and only then records it, with its size, checksum and the last change
 * it reflects, in one SQLite transaction; a crash at any point leaves the previous record and
 * file, or none, never a record of a half-written file.
 */

export interface SavedIndex {
  file: string;
  /** The change-log sequence number the file reflects: later changes are replayed on load. */
  seq: number;
  bytes: number;
  sha256: string;
  /** Entries of the file already marked deleted. */
  deleted: number;
  dimension: number;
}

const KEYS = ['index_file', 'index_seq', 'index_bytes', 'index_sha256', 'index_deleted', 'index_dimension'] as const;

export function readSavedIndex(store: GalleryStore): SavedIndex | undefined {
  const file = store.getMeta('index_file');
  if (!file) return undefined;
  return {
    file,
    seq: Number(store.getMeta('index_seq')),
    bytes: Number(store.getMeta('index_bytes')),
    sha256: store.getMeta('index_sha256') ?? '',
    deleted: Number(store.getMeta('index_deleted') ?? 0),
    dimension: Number(store.getMeta('index_dimension')),
  };
}

/** Why the recorded file cannot be loaded (missing, other dimension, wrong size or checksum), or undefined. */
export async function savedIndexProblem(dir: string, saved: SavedIndex, dimension: number, verifyChecksum: boolean): Promise<string | undefined> {
  const file = path.join(dir, saved.file);
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch {
    return 'index file missing';
  }
  if (saved.dimension !== dimension) return `index built for ${saved.dimension}-d embeddings, the gallery holds ${dimension}-d`;
  if (size !== saved.bytes) return `index file is ${size} bytes, ${saved.bytes} were saved`;
  if (verifyChecksum && (await fileSha256(file)) !== saved.sha256) return 'index file checksum mismatch';
  return undefined;
}

function fsyncPath(p: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(p, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* directories cannot be synced on every filesystem; the rename is atomic regardless */
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Writes `index` (which must not change until this resolves) as the gallery's saved index at
 * change `seq`, records it, prunes the change log up to `seq` and removes the previous file.
 */
export async function saveIndex(dir: string, store: GalleryStore, index: HnswIndex, seq: number): Promise<SavedIndex> {
  const name = `index-${seq}-${Date.now().toString(36)}.hnsw`;
  const file = path.join(dir, name);
  const tmp = `${file}.tmp`;
  const deleted = index.deletedCount;
  try {
    await index.writeTo(tmp);
    fsyncPath(tmp);
    const bytes = fs.statSync(tmp).size;
    const sha256 = await fileSha256(tmp);
    fs.renameSync(tmp, file);
    fsyncPath(dir);
    const previous = store.getMeta('index_file');
    const saved: SavedIndex = { file: name, seq, bytes, sha256, deleted, dimension: index.dimension };
    store.transaction(() => {
      store.setMeta('index_file', saved.file);
      store.setMeta('index_seq', saved.seq);
      store.setMeta('index_bytes', saved.bytes);
      store.setMeta('index_sha256', saved.sha256);
      store.setMeta('index_deleted', saved.deleted);
      store.setMeta('index_dimension', saved.dimension);
      store.pruneChanges(seq);
    });
    if (previous && previous !== name) fs.rmSync(path.join(dir, previous), { force: true });
    return saved;
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** Forgets the saved index (its embeddings changed wholesale, e.g. after a reindex) and removes its files. */
export function dropSavedIndex(dir: string, store: GalleryStore): void {
  store.db.prepare(`DELETE FROM meta WHERE key IN (${KEYS.map(() => '?').join(', ')})`).run(...KEYS);
  removeStrayIndexFiles(dir, undefined);
}

/** Index files no record points to: left by a crash during a save, or by a save whose record was superseded. */
export function removeStrayIndexFiles(dir: string, keep: string | undefined): void {
  for (const f of fs.readdirSync(dir)) {
    if ((/^index-.*\.hnsw$/.test(f) && f !== keep) || /^index-.*\.hnsw\.tmp$/.test(f)) fs.rmSync(path.join(dir, f), { force: true });
  }
}
