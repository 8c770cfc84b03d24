import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { FacestreamError } from '../errors.js';
import type { Manifest, ModelSpec } from './manifest.js';
import { modelSpec } from './manifest.js';

export type ModelFileState = 'ok' | 'missing' | 'truncated' | 'wrong-size' | 'wrong-hash';

export interface ModelFileCheck {
  id: string;
  file: string;
  path: string;
  state: ModelFileState;
  bytes?: number;
}

/** Remembers which files were hashed, keyed by size and mtime, so each start doesn't re-hash 100 MB. */
const STAMP_FILE = '.verified.json';

type Stamps = Record<string, { bytes: number; mtimeMs: number; sha256: string }>;

export async function sha256File(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * The models directory: finds model files by the manifest's relative paths and proves they are the
 * files the manifest describes before anything hands them to onnxruntime.
 */
export class ModelStore {
  constructor(
    readonly manifest: Manifest,
    readonly dir: string,
  ) {}

  pathOf(id: string): string {
    return path.resolve(this.dir, modelSpec(this.manifest, id).file);
  }

  private readStamps(): Stamps {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.dir, STAMP_FILE), 'utf8')) as Stamps;
    } catch {
      return {};
    }
  }

  private writeStamp(file: string, entry: Stamps[string]): void {
    const stamps = this.readStamps();
    stamps[file] = entry;
    const target = path.join(this.dir, STAMP_FILE);
    const tmp = `${target}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(tmp, JSON.stringify(stamps, null, 1));
      fs.renameSync(tmp, target);
    } catch {
      // A read-only models directory still works; it just re-hashes on every start.
      fs.rmSync(tmp, { force: true });
    }
  }

  /** Checks one model file. `deep` forces a fresh sha256 even when a stamp vouches for the file. */
  async check(id: string, deep = false): Promise<ModelFileCheck> {
    const spec = modelSpec(this.manifest, id);
    const file = this.pathOf(id);
    const base = { id, file: spec.file, path: file };
    let stat: fs.Stats;
    try {
      stat = fs.statSync(file);
    } catch {
      return { ...base, state: 'missing' };
    }
    if (!stat.isFile()) return { ...base, state: 'missing' };
    if (stat.size < spec.bytes) return { ...base, state: 'truncated', bytes: stat.size };
    if (stat.size !== spec.bytes) return { ...base, state: 'wrong-size', bytes: stat.size };
    const stamp = this.readStamps()[spec.file];
    if (!deep && stamp && stamp.bytes === stat.size && stamp.mtimeMs === stat.mtimeMs && stamp.sha256 === spec.sha256) {
      return { ...base, state: 'ok', bytes: stat.size };
    }
    const digest = await sha256File(file);
    if (digest !== spec.sha256) return { ...base, state: 'wrong-hash', bytes: stat.size };
    this.writeStamp(spec.file, { bytes: stat.size, mtimeMs: stat.mtimeMs, sha256: digest });
    return { ...base, state: 'ok', bytes: stat.size };
  }

  /** The verified path of a model file, or a clear error saying what is wrong and how to fix it. */
  async require(id: string): Promise<string> {
    const result = await this.check(id);
    if (result.state === 'ok') return result.path;
    throw modelFileError(this.manifest.models[id], result, this.dir);
  }
}

export function modelFileError(spec: ModelSpec, check: ModelFileCheck, dir: string): FacestreamError {
  const fix = `run \`facestream models fill --models-dir ${dir} --mirror <directory or URL>\` (in a checkout beside ../shared: \`facestream models fill --mirror ../shared/models\`)`;
  const details = { model: check.id, file: check.path, state: check.state, expectedBytes: spec.bytes, bytes: check.bytes };
  switch (check.state) {
    case 'missing':
      return new FacestreamError('MODEL_MISSING', `model "${check.id}" is missing: ${check.path} does not exist; ${fix}`, details);
    case 'truncated':
      return new FacestreamError('MODEL_CORRUPT', `model "${check.id}" is truncated: ${check.path} has ${check.bytes} of ${spec.bytes} bytes; ${fix}`, details);
    case 'wrong-size':
      return new FacestreamError('MODEL_CORRUPT', `model "${check.id}" has the wrong size: ${check.path} has ${check.bytes} bytes, the manifest says ${spec.bytes}; ${fix}`, details);
    case 'wrong-hash':
      return new FacestreamError('MODEL_CORRUPT', `model "${check.id}" does not match the manifest's sha256: ${check.path} is damaged or a different file; ${fix}`, details);
    default:
      return new FacestreamError('MODEL_CORRUPT', `model "${check.id}": unexpected state ${check.state}`, details);
  }
}
