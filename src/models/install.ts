import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FacestreamError, errorMessage } from '../errors.js';
import { modelSpec } from './manifest.js';
import type { ModelStore } from './store.js';
import { makeDirectories } from '../private-files.js';

export interface FillResult {
  id: string;
  /** `built`: made by the manifest's build recipe from a package's weights, not downloaded. */
  action: 'present' | 'fetched' | 'built' | 'failed';
  from?: string;
  bytes?: number;
  error?: string;
}

/** Bytes received so far of a model file, for progress bars. */
export type ProgressCallback = (id: string, bytes: number, total: number) => void;

/**
 * Writes one model file from a stream (a download, a copy, or bytes built by project code) the
 * only safe way: hashed while written to a temporary file, renamed into place only when size and
 * sha256 are the manifest's. `from` names the source in results and errors.
 */
export async function installModelFile(store: ModelStore, id: string, from: string, open: () => Promise<Readable>, onProgress?: ProgressCallback): Promise<FillResult> {
  const spec = modelSpec(store.manifest, id);
  const target = store.pathOf(id);
  makeDirectories(path.dirname(target));
  const tmp = `${target}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.part`;
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  try {
    const input = await open();
    input.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
      if (bytes > spec.bytes) input.destroy(new Error(`received more than the expected ${spec.bytes} bytes`));
      onProgress?.(id, bytes, spec.bytes);
    });
    const out = fs.createWriteStream(tmp, { flags: 'wx' });
    await pipeline(input, out);
    if (bytes !== spec.bytes) throw new Error(`received ${bytes} bytes, expected ${spec.bytes}`);
    const digest = hash.digest('hex');
    if (digest !== spec.sha256) throw new Error(`sha256 ${digest.slice(0, 12)}... does not match the manifest's ${spec.sha256.slice(0, 12)}...`);
    const fd = await fs.promises.open(tmp, 'r');
    await fd.sync();
    await fd.close();
    await fs.promises.rename(tmp, target);
    return { id, action: 'fetched', from, bytes };
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    if (err instanceof FacestreamError) throw err;
    throw new FacestreamError('MODEL_FETCH_FAILED', `installing model "${id}" from ${from} failed: ${errorMessage(err)}`, { model: id, from });
  }
}
