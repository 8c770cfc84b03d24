import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { FacestreamError } from '../errors.js';
import { dropSavedIndex } from './index-file.js';
import { DirectoryLock } from './lock.js';
import { DB_FILE, GalleryStore, sqliteDamage } from './store.js';

/** What a database repair did: rows kept and lost per table, and where the damaged file went. */
export interface DatabaseRepair {
  damaged: boolean;
  /** SQLite's integrity_check lines (or the open error) that showed the damage. */
  problems: string[];
  identities?: { kept: number; lost: number };
  templates?: { kept: number; lost: number };
  /** The damaged database, set aside (never deleted). */
  setAside?: string;
}

function integrityProblems(file: string): string[] {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    const rows = db.pragma('integrity_check') as { integrity_check: string }[];
    return rows
      .flatMap((r) => r.integrity_check.split('\n'))
      .filter((r) => r && r !== 'ok' && !r.startsWith('***'))
      .slice(0, 20);
  } catch (err) {
    const damage = sqliteDamage(err);
    if (damage) return [damage];
    throw err;
  } finally {
    db?.close();
  }
}

/** Copies every readable row of `table` from `old` into `main`, row by row so one bad page loses only its rows. */
function salvage(db: Database.Database, table: 'identities' | 'templates' | 'meta', key: string): { kept: number; lost: number } {
  let ids: number[] | string[];
  try {
    ids = (db.prepare(`SELECT ${key} AS k FROM old.${table}`).all() as { k: number | string }[]).map((r) => r.k) as number[] | string[];
  } catch {
    // The table's b-tree cannot be walked: probe rowids up to the largest still readable.
    let max = 0;
    try {
      max = (db.prepare(`SELECT max(rowid) AS m FROM old.${table}`).get() as { m: number | null }).m ?? 0;
    } catch {
      max = 0;
    }
    ids = Array.from({ length: max }, (_, i) => i + 1);
    key = 'rowid';
  }
  const copy = db.prepare(`INSERT OR IGNORE INTO main.${table} SELECT * FROM old.${table} WHERE ${key} = ?`);
  let kept = 0;
  let lost = 0;
  for (const id of ids) {
    try {
      kept += copy.run(id).changes;
    } catch {
      lost++;
    }
  }
  return { kept, lost };
}

/**
 * Checks the gallery database and, when SQLite finds it damaged, rebuilds it from every row that
 * can still be read: a new database with the same schema gets the readable meta, identity and
 * template rows (a template whose identity was lost goes too), the damaged file is set aside as
 * `gallery.db.damaged-<time>` and the saved index is dropped (the next open rebuilds it). Takes
 * the gallery's writer lock: the server must not be using it.
 */
export function repairDatabase(dir: string): DatabaseRepair {
  const file = path.join(dir, DB_FILE);
  if (!fs.existsSync(file)) throw new FacestreamError('FILE_NOT_FOUND', `${dir} is not a gallery (no ${DB_FILE})`, { dir });
  const lock = DirectoryLock.acquire(dir);
  try {
    const problems = integrityProblems(file);
    if (problems.length === 0) return { damaged: false, problems };
    const work = fs.mkdtempSync(path.join(dir, '.repair-'));
    try {
      new GalleryStore(work).close(); // the schema
      const db = new Database(path.join(work, DB_FILE));
      let identities = { kept: 0, lost: 0 };
      let templates = { kept: 0, lost: 0 };
      try {
        db.pragma('foreign_keys = OFF');
        // No transaction around the copy: a corrupt page read inside one makes its COMMIT fail.
        // Row by row in autocommit instead, unsynced (the file is renamed into place only when done).
        db.pragma('main.journal_mode = MEMORY');
        db.pragma('main.synchronous = OFF');
        db.prepare('ATTACH DATABASE ? AS old').run(file);
        salvage(db, 'meta', 'key');
        identities = salvage(db, 'identities', 'pk');
        templates = salvage(db, 'templates', 'id');
        const orphans = db.prepare('DELETE FROM main.templates WHERE identity NOT IN (SELECT pk FROM main.identities)').run().changes;
        templates = { kept: templates.kept - orphans, lost: templates.lost + orphans };
        db.prepare('DETACH DATABASE old').run();
        db.pragma('main.journal_mode = DELETE');
      } catch (err) {
        if (!sqliteDamage(err)) throw err;
        throw new FacestreamError('GALLERY_CORRUPT', `gallery database ${file} is damaged beyond repair (sqlite: ${(err as Error).message}); restore it from a backup, or import an export into a new gallery`, { dir });
      } finally {
        db.close();
      }
      const setAside = `${file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      fs.renameSync(file, setAside);
      for (const suffix of ['-wal', '-shm']) if (fs.existsSync(file + suffix)) fs.renameSync(file + suffix, setAside + suffix);
      fs.renameSync(path.join(work, DB_FILE), file);
      const store = new GalleryStore(dir);
      try {
        dropSavedIndex(dir, store);
      } finally {
        store.close();
      }
      return { damaged: true, problems, identities, templates, setAside };
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  } finally {
    lock.release();
  }
}
