import fs from 'node:fs';
import path from 'node:path';

/**
 * Data the server owns (the gallery: names, faces and embeddings, which are biometric data; the
 * server's stream definitions with camera passwords and key hashes) is readable by its user only,
 * whatever the umask: directories 0700, files 0600. Existing ones are tightened when opened,
 * so a gallery created by an older version is fixed on its next start.
 */

/**
 * Creates `dir` and its missing parents, one level at a time. Node's own recursive mkdir never
 * returns under a parent that answers ENOENT to every creation (`/proc/nope`: it spins forever,
 * Node 20 to 24); this one fails with that error. Returns nothing; throws the first real error.
 */
export function makeDirectories(dir: string, mode = 0o777): void {
  const target = path.resolve(dir);
  const missing: string[] = [];
  for (let d = target; !fs.existsSync(d); d = path.dirname(d)) {
    missing.push(d);
    if (path.dirname(d) === d) break;
  }
  for (const d of missing.reverse()) {
    try {
      fs.mkdirSync(d, { mode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

/** Creates `dir` (and parents) if needed and makes it 0700. */
export function ensurePrivateDir(dir: string): void {
  makeDirectories(dir, 0o700);
  fs.chmodSync(dir, 0o700);
}

/** Makes each existing file 0600 (SQLite creates -wal and -shm with the database's mode, once it has it). */
export function makePrivate(...files: string[]): void {
  for (const f of files) {
    try {
      fs.chmodSync(f, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}
