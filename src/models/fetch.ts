import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FacestreamError, errorMessage } from '../errors.js';
import { buildModel } from './build/recipes.js';
import type { ModelSpec } from './manifest.js';
import { modelSpec } from './manifest.js';
import type { ModelStore } from './store.js';

export interface FillResult {
  id: string;
  /** `built`: made by the manifest's build recipe from a package's weights, not downloaded. */
  action: 'present' | 'fetched' | 'built' | 'failed';
  from?: string;
  bytes?: number;
  error?: string;
}

export interface FillOptions {
  /** A local directory or an http(s) base URL laid out like the manifest; default: each model's `url`. */
  mirror?: string;
  /** Only these model ids (default: all in the manifest). */
  ids?: string[];
  /** Called with bytes received so far, for progress bars. */
  onProgress?: (id: string, bytes: number, total: number) => void;
  /** Per-request timeout for downloads. */
  timeoutMs?: number;
}

const isUrl = (s: string): boolean => /^https?:\/\//i.test(s);

function sourceOf(spec: ModelSpec, mirror: string | undefined): string {
  if (mirror) return isUrl(mirror) ? `${mirror.replace(/\/+$/, '')}/${spec.file}` : path.resolve(mirror, spec.file);
  if (spec.url) return spec.url;
  throw new FacestreamError('MODEL_FETCH_FAILED', `model file ${spec.file} has no download URL in the manifest; pass --mirror <directory or URL>`, {
    file: spec.file,
  });
}

async function openSource(from: string, timeoutMs: number): Promise<Readable> {
  if (!isUrl(from)) {
    try {
      await fs.promises.access(from, fs.constants.R_OK);
    } catch {
      throw new FacestreamError('MODEL_FETCH_FAILED', `mirror file ${from} does not exist or is not readable`, { from });
    }
    return fs.createReadStream(from);
  }
  let res: Response;
  try {
    res = await fetch(from, { signal: AbortSignal.timeout(timeoutMs), redirect: 'follow' });
  } catch (err) {
    throw new FacestreamError('MODEL_FETCH_FAILED', `download of ${from} failed: ${errorMessage((err as Error).cause ?? err)}`, { from });
  }
  if (!res.ok || !res.body) throw new FacestreamError('MODEL_FETCH_FAILED', `download of ${from} failed: HTTP ${res.status} ${res.statusText}`, { from, status: res.status });
  return Readable.fromWeb(res.body as import('node:stream/web').ReadableStream);
}

/**
 * Copies or downloads one model file, hashing while it streams, into a temporary file beside the
 * target; only a file with the manifest's size and sha256 is renamed into place, so a crash or a
 * bad mirror never leaves a half-written model where the server would load it.
 */
export async function fetchModel(store: ModelStore, id: string, opts: FillOptions = {}): Promise<FillResult> {
  const from = sourceOf(modelSpec(store.manifest, id), opts.mirror);
  return installModelFile(store, id, from, () => openSource(from, opts.timeoutMs ?? 10 * 60_000), opts.onProgress);
}

/**
 * Writes one model file from a stream (a download, a copy, or bytes built by project code) the
 * only safe way: hashed while written to a temporary file, renamed into place only when size and
 * sha256 are the manifest's. `from` names the source in results and errors.
 */
export async function installModelFile(store: ModelStore, id: string, from: string, open: () => Promise<Readable>, onProgress?: FillOptions['onProgress']): Promise<FillResult> {
  const spec = modelSpec(store.manifest, id);
  const target = store.pathOf(id);
  await fs.promises.mkdir(path.dirname(target), { recursive: true });
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

/**
 * Makes every (or every listed) model present and valid; keeps going past failures and reports
 * each. Models with a build recipe are built from their source package, never fetched.
 */
export async function fillModels(store: ModelStore, opts: FillOptions = {}): Promise<FillResult[]> {
  const ids = opts.ids ?? Object.keys(store.manifest.models);
  const results: FillResult[] = [];
  for (const id of ids) {
    modelSpec(store.manifest, id);
    const check = await store.check(id, true);
    if (check.state === 'ok') {
      results.push({ id, action: 'present', bytes: check.bytes });
      continue;
    }
    try {
      results.push(store.manifest.models[id].build ? await buildModel(store, id) : await fetchModel(store, id, opts));
    } catch (err) {
      results.push({ id, action: 'failed', error: errorMessage(err) });
    }
  }
  return results;
}
