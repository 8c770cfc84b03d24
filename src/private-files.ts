import fs from 'node:fs';

/**
 * Data the server owns (the gallery: names, faces and embeddings, which are biometric data; the
 * server's stream definitions with camera passwords and key hashes) is readable by its user only,
 * whatever the umask: directories 0700, files 0600. Existing ones are tightened when opened,
 * so a gallery created by an older version is fixed on its next start.
 */

/** Creates `dir` (and parents) if needed and makes it 0700. */
export function ensurePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
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
