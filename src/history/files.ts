import fs from 'node:fs';
import path from 'node:path';
import { makeDirectories } from '../private-files.js';

/**
 * The history's picture files: `pictures/<YYYY-MM-DD>/<appearance id>.<kind>.jpg` under the
 * history directory (one folder per UTC day keeps folders small and retention's deletions local).
 * Each file is written atomically: a temporary name, fsync, rename, so a reader (or a restart after
 * kill -9) never sees half a picture.
 */

export type PictureKind = 'crop' | 'snapshot';

export class PictureFiles {
  readonly root: string;

  constructor(dir: string) {
    this.root = path.join(dir, 'pictures');
    makeDirectories(this.root, 0o700);
  }

  /** The relative name a picture of an appearance gets (stored in its row). */
  name(id: number, kind: PictureKind, at: number): string {
    return `${new Date(at).toISOString().slice(0, 10)}/${id}.${kind}.jpg`;
  }

  resolve(name: string): string {
    return path.join(this.root, name);
  }

  /** Writes `data` under `name` atomically; resolves once it is durable. */
  async write(name: string, data: Buffer): Promise<void> {
    const file = this.resolve(name);
    const dir = path.dirname(file);
    await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.tmp`;
    const handle = await fs.promises.open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(tmp, file);
  }

  read(name: string): Promise<Buffer> {
    return fs.promises.readFile(this.resolve(name));
  }

  async remove(names: readonly (string | null)[]): Promise<void> {
    await Promise.all(names.filter((n): n is string => !!n).map((n) => fs.promises.rm(this.resolve(n), { force: true })));
  }

  /**
   * Removes what no row points to: temporary files of writes a crash interrupted, pictures whose
   * row was never inserted (crash between the files and the row) or whose row was deleted
   * (crash between the row and the files), and empty day folders. Returns the files removed.
   */
  async sweep(referenced: Set<string>): Promise<number> {
    let removed = 0;
    for (const day of await fs.promises.readdir(this.root)) {
      const dir = path.join(this.root, day);
      let entries: string[];
      try {
        entries = await fs.promises.readdir(dir);
      } catch {
        continue;
      }
      let kept = 0;
      for (const f of entries) {
        if (referenced.has(`${day}/${f}`)) {
          kept++;
          continue;
        }
        await fs.promises.rm(path.join(dir, f), { force: true });
        removed++;
      }
      if (kept === 0) await fs.promises.rmdir(dir).catch(() => {});
    }
    return removed;
  }
}
