import fs from 'node:fs';
import path from 'node:path';
import type { ErrorCode } from '../errors.js';
import { errorMessage, FacestreamError, isFacestreamError } from '../errors.js';
import { contentHash, type EnrollOptions, type Enroller } from './enroll.js';

/** Picture extensions enroll-dir and eval pick up (what sharp decodes). */
export const PICTURE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif', '.heic', '.heif', '.bmp']);

const naturalOrder = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

/** `<root>/<identity>/<pictures>` as identity folders, each with its pictures in natural order ("2.jpg" before "10.jpg"). */
export function listIdentityFolders(root: string): { identity: string; files: string[] }[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(root, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new FacestreamError('FILE_NOT_FOUND', `${root}: no such directory`, { dir: root });
    throw new FacestreamError('NOT_A_FILE', `${root}: ${code === 'ENOTDIR' ? 'not a directory' : errorMessage(err)}`, { dir: root });
  }
  return entries
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort(naturalOrder.compare)
    .map((identity) => ({
      identity,
      files: fs
        .readdirSync(path.join(root, identity), { withFileTypes: true })
        .filter((f) => (f.isFile() || f.isSymbolicLink()) && PICTURE_EXTENSIONS.has(path.extname(f.name).toLowerCase()))
        .map((f) => f.name)
        .sort(naturalOrder.compare)
        .map((f) => path.join(root, identity, f)),
    }));
}

/** A folder name as an identity id: kept when valid, else reduced to the allowed characters. */
export function folderIdentityId(folder: string): string {
  const id = folder.replace(/[^A-Za-z0-9._:@-]+/g, '_').replace(/^[^A-Za-z0-9]+/, '').slice(0, 128);
  return id || 'identity';
}

export type FileOutcome =
  | { file: string; identity: string; status: 'added'; templateId: string }
  | { file: string; identity: string; status: 'skipped'; reason: string }
  | { file: string; identity: string; status: 'rejected'; code: ErrorCode | 'READ_FAILED'; reason: string };

export interface DirEnrollSummary {
  identities: number;
  files: number;
  added: number;
  skipped: number;
  rejected: number;
  failures: Extract<FileOutcome, { status: 'rejected' }>[];
  seconds: number;
}

export interface DirEnrollOptions extends EnrollOptions {
  /** Called once with the number of picture files found. */
  onStart?: (files: number) => void;
  /** Called for each file after its outcome is final (for "added": after the commit). */
  onFile?: (outcome: FileOutcome) => void;
  /** Pictures per enrollment call (one transaction each). */
  batch?: number;
}

/**
 * Bulk enrollment of `<root>/<identity>/<pictures>`. The folder name is the identity's id and
 * name. Files already enrolled for that identity (same content) are skipped, so an interrupted
 * run is resumed by running it again; a file that fails is reported and the run goes on.
 */
export async function enrollDirectory(enroller: Enroller, root: string, opts: DirEnrollOptions = {}): Promise<DirEnrollSummary> {
  const started = performance.now();
  const folders = listIdentityFolders(root);
  const total = folders.reduce((n, f) => n + f.files.length, 0);
  opts.onStart?.(total);
  const summary: DirEnrollSummary = { identities: folders.length, files: total, added: 0, skipped: 0, rejected: 0, failures: [], seconds: 0 };
  const report = (o: FileOutcome) => {
    if (o.status === 'added') summary.added++;
    else if (o.status === 'skipped') summary.skipped++;
    else {
      summary.rejected++;
      summary.failures.push(o);
    }
    opts.onFile?.(o);
  };
  const batch = opts.batch ?? enroller.config.enrollment.batch;
  for (const { identity: folder, files } of folders) {
    const id = folderIdentityId(folder);
    const known = enroller.gallery.pictureHashes(id);
    let queue: { file: string; data: Buffer }[] = [];
    const run = async () => {
      if (queue.length === 0) return;
      const pictures = queue;
      queue = [];
      try {
        const r = await enroller.enrollPictures({ id, name: folder }, pictures.map((p) => ({ name: p.file, data: p.data })), opts);
        for (const res of r.results) {
          if (res.status === 'added') report({ file: res.picture, identity: id, status: 'added', templateId: res.template.id });
          else if (res.code === 'DUPLICATE_TEMPLATE') report({ file: res.picture, identity: id, status: 'skipped', reason: 'already enrolled' });
          else report({ file: res.picture, identity: id, status: 'rejected', code: res.code, reason: res.reason });
        }
      } catch (err) {
        const code = isFacestreamError(err) ? err.code : 'READ_FAILED';
        for (const p of pictures) report({ file: p.file, identity: id, status: 'rejected', code, reason: errorMessage(err) });
      }
    };
    for (const file of files) {
      let data: Buffer;
      try {
        data = fs.readFileSync(file);
      } catch (err) {
        report({ file, identity: id, status: 'rejected', code: 'READ_FAILED', reason: `${file}: ${errorMessage(err)}` });
        continue;
      }
      if (known.has(contentHash(data))) {
        report({ file, identity: id, status: 'skipped', reason: 'already enrolled' });
        continue;
      }
      queue.push({ file, data });
      if (queue.length >= batch) await run();
    }
    await run();
  }
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}
