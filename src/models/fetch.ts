import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { FacestreamError, errorMessage } from '../errors.js';
import { buildModel } from './build/recipes.js';
import { installModelFile, type FillResult, type ProgressCallback } from './install.js';

export type { FillResult } from './install.js';
import type { ModelSpec } from './manifest.js';
import { modelSpec } from './manifest.js';
import type { ModelStore } from './store.js';

export interface FillOptions {
  /** A local directory or an http(s) base URL laid out like the manifest; default: each model's `url`. */
  mirror?: string;
  /** Only these model ids (default: all in the manifest). */
  ids?: string[];
  /** Called with bytes received so far, for progress bars. */
  onProgress?: ProgressCallback;
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
