import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { createLogger, setRootLogger, type Logger } from '../log.js';
import { BUNDLED_MANIFEST, loadManifest } from '../models/manifest.js';
import { ModelRuntime } from '../models/runtime.js';
import { ModelStore } from '../models/store.js';
import { FaceAnalyzer } from '../pipeline/analyzer.js';
import { MtcnnDetector } from '../pipeline/detect/mtcnn.js';

/** Options every command accepts (declared once on the root program). */
export interface GlobalOptions {
  config?: string;
  modelsDir?: string;
  provider?: string;
  threads?: string;
  logLevel?: string;
  maxPixels?: string;
}

export function addGlobalOptions(program: Command): Command {
  return program
    .option('-c, --config <file>', 'config file (JSON or YAML); also FACESTREAM_CONFIG')
    .option('--models-dir <dir>', 'directory holding model files (default: the installation\'s models/; also FACESTREAM_MODELS_DIR)')
    .option('--provider <list>', 'onnxruntime execution providers in order, e.g. cuda,cpu')
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)')
    .option('--max-pixels <n>', 'refuse pictures larger than this many pixels')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (CLI default: warn)');
}

/** Turns global flags into a partial config; anything not given is left to file, env, defaults. */
export function globalOverrides(g: GlobalOptions): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const set = (section: string, key: string, value: unknown) => {
    (o[section] ??= {}) as Record<string, unknown>;
    (o[section] as Record<string, unknown>)[key] = value;
  };
  if (g.modelsDir) set('models', 'dir', g.modelsDir);
  if (g.provider) set('runtime', 'executionProviders', g.provider.split(',').map((s) => s.trim()));
  if (g.threads) set('runtime', 'intraOpThreads', Number(g.threads));
  if (g.maxPixels) set('limits', 'maxImagePixels', Number(g.maxPixels));
  if (g.logLevel) o.logLevel = g.logLevel;
  return o;
}

/** What a command needs, built lazily so `facestream models` works without loading any model. */
export class CliContext {
  readonly config: Config;
  readonly logger: Logger;
  private runtimePromise?: ModelRuntime;
  private analyzerPromise?: Promise<FaceAnalyzer>;
  private detectorPromise?: Promise<MtcnnDetector>;

  constructor(globals: GlobalOptions, overrides: Record<string, unknown> = {}) {
    const env = { ...process.env };
    // CLI output is for people and scripts: only warnings and errors on stderr unless asked.
    if (!globals.logLevel && !env.FACESTREAM_LOG_LEVEL) env.FACESTREAM_LOG_LEVEL = 'warn';
    const merged = { ...globalOverrides(globals) };
    for (const [k, v] of Object.entries(overrides)) merged[k] = typeof v === 'object' && v && !Array.isArray(v) ? { ...(merged[k] as object), ...v } : v;
    this.config = loadConfig({ file: globals.config, overrides: merged, env });
    this.logger = createLogger(this.config.logLevel);
    setRootLogger(this.logger);
  }

  get store(): ModelStore {
    const manifest = loadManifest(this.config.models.manifest ?? BUNDLED_MANIFEST);
    return new ModelStore(manifest, path.resolve(this.config.models.dir));
  }

  get runtime(): ModelRuntime {
    this.runtimePromise ??= new ModelRuntime(this.store, this.config.runtime, this.logger);
    return this.runtimePromise;
  }

  analyzer(): Promise<FaceAnalyzer> {
    this.analyzerPromise ??= FaceAnalyzer.create(this.runtime, this.config);
    return this.analyzerPromise;
  }

  /** The detector alone: `detect` needs neither the embedding nor the attribute models. */
  detector(): Promise<MtcnnDetector> {
    const d = this.config.detector;
    this.detectorPromise ??= MtcnnDetector.load(this.runtime, { minFaceSize: d.minFaceSize, scaleFactor: d.scaleFactor, thresholds: d.thresholds, cropPadding: d.cropPadding });
    return this.detectorPromise;
  }

  async close(): Promise<void> {
    if (this.runtimePromise) await this.runtimePromise.close();
  }
}

export function contextFor(cmd: Command, overrides: Record<string, unknown> = {}): CliContext {
  return new CliContext(cmd.optsWithGlobals() as GlobalOptions, overrides);
}

export function printJson(value: unknown, pretty = false): void {
  process.stdout.write(`${JSON.stringify(value, roundingReplacer, pretty ? 2 : undefined)}\n`);
}

/** Keeps JSON output readable: pixel coordinates and scores to 4 significant decimals. */
function roundingReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'number' && !Number.isInteger(value)) return Math.round(value * 1e4) / 1e4;
  if (value instanceof Float32Array) return Array.from(value, (v) => Math.round(v * 1e6) / 1e6);
  return value;
}

export function parseNumber(name: string, min?: number, max?: number): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || (min !== undefined && n < min) || (max !== undefined && n > max)) {
      throw new InvalidArgumentError(`${name} must be a number${min !== undefined ? ` >= ${min}` : ''}${max !== undefined ? ` <= ${max}` : ''}, got "${v}"`);
    }
    return n;
  };
}

/** Picture formats an annotated copy can be written in, by file extension. */
const ANNOTATION_FORMATS: Record<string, 'png' | 'jpeg'> = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg' };

/**
 * The format of an annotated picture written to `file`, from its extension: .png, .jpg or .jpeg;
 * PNG for a name without one. Throws InvalidArgumentError (a usage error, exit 2) for any other
 * extension, rather than writing PNG bytes under a name that says otherwise.
 */
export function annotationFormat(name: string, file: string): 'png' | 'jpeg' {
  const ext = path.extname(file).toLowerCase();
  if (ext === '') return 'png';
  const format = ANNOTATION_FORMATS[ext];
  if (!format) throw new InvalidArgumentError(`${name}: cannot write "${ext}" pictures; use .png or .jpg, got "${file}"`);
  return format;
}

/** Commander parser of an annotated-picture path (see annotationFormat): refused before any work. */
export function parseAnnotationPath(name: string): (v: string) => string {
  return (v: string) => {
    annotationFormat(name, v);
    return v;
  };
}

/** "1 template", "2 templates": a count with its noun (plural: noun + "s", or `plural`). */
export function counted(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}
