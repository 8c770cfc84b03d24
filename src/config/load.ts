import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { FacestreamError } from '../errors.js';
import { configSchema, type Config } from './schema.js';

type Plain = Record<string, unknown>;

function isPlainObject(v: unknown): v is Plain {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge where arrays and scalars from `over` replace those in `base`. */
export function deepMerge(base: Plain, over: Plain): Plain {
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = isPlainObject(v) && isPlainObject(out[k]) ? deepMerge(out[k] as Plain, v) : v;
  }
  return out;
}

function setPath(target: Plain, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let node = target;
  for (const k of keys.slice(0, -1)) {
    if (!isPlainObject(node[k])) node[k] = {};
    node = node[k] as Plain;
  }
  node[keys[keys.length - 1]] = value;
}

/**
 * Environment variables that map onto config paths. Values are parsed as JSON when they look like
 * JSON (numbers, booleans, arrays), otherwise taken as strings.
 */
export const ENV_VARS: Record<string, string> = {
  FACESTREAM_LOG_LEVEL: 'logLevel',
  FACESTREAM_MODELS_DIR: 'models.dir',
  FACESTREAM_MODELS_MIRROR: 'models.mirror',
  FACESTREAM_MODELS_MANIFEST: 'models.manifest',
  FACESTREAM_EXECUTION_PROVIDERS: 'runtime.executionProviders',
  FACESTREAM_THREADS: 'runtime.intraOpThreads',
  FACESTREAM_EMBEDDING_MODEL: 'embedding.model',
  FACESTREAM_MAX_IMAGE_PIXELS: 'limits.maxImagePixels',
  FACESTREAM_GALLERY: 'gallery.dir',
  FACESTREAM_HOST: 'server.host',
  FACESTREAM_PORT: 'server.port',
  FACESTREAM_DATA_DIR: 'server.dataDir',
  FACESTREAM_API_KEYS: 'server.auth.keys',
  FACESTREAM_READ_ONLY_KEYS: 'server.auth.readOnlyKeys',
  FACESTREAM_CORS_ORIGINS: 'server.cors.origins',
  FACESTREAM_SOURCE_DIRS: 'server.sources.allowedDirs',
  FACESTREAM_DATA: 'server.demo.dataDir',
  FACESTREAM_FFMPEG: 'ingest.ffmpegPath',
  FACESTREAM_RTSP_TRANSPORT: 'ingest.rtspTransport',
  FACESTREAM_MQTT_URL: 'mqtt.url',
  FACESTREAM_CLUSTER_POSTGRES: 'cluster.postgres',
  FACESTREAM_CLUSTER_NATS: 'cluster.nats',
  FACESTREAM_CLUSTER_ROLE: 'cluster.role',
  FACESTREAM_NODE_ID: 'cluster.nodeId',
  FACESTREAM_MQTT_USERNAME: 'mqtt.username',
  FACESTREAM_MQTT_PASSWORD: 'mqtt.password',
};

/** Paths whose env value is a comma-separated list. */
const LIST_PATHS = new Set(['server.auth.keys', 'server.auth.readOnlyKeys', 'server.cors.origins', 'server.sources.allowedDirs', 'runtime.executionProviders']);

function parseEnvValue(pathName: string, raw: string): unknown {
  if (LIST_PATHS.has(pathName) && !raw.trim().startsWith('[')) return raw.split(',').map((s) => s.trim()).filter(Boolean);
  try {
    const v: unknown = JSON.parse(raw);
    if (typeof v !== 'string') return v;
  } catch {
    /* a plain string */
  }
  return raw;
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env, vars: Record<string, string> = ENV_VARS): Plain {
  const out: Plain = {};
  for (const [name, p] of Object.entries(vars)) {
    const raw = env[name];
    if (raw !== undefined && raw !== '') setPath(out, p, parseEnvValue(p, raw));
  }
  return out;
}

export function readConfigFile(file: string): Plain {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new FacestreamError('CONFIG_INVALID', `cannot read config file ${file}: ${(err as Error).message}`, { file });
  }
  let parsed: unknown;
  try {
    parsed = /\.ya?ml$/i.test(file) ? YAML.parse(text) : JSON.parse(text);
  } catch (err) {
    throw new FacestreamError('CONFIG_INVALID', `config file ${file} is not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(err as Error).message}`, { file });
  }
  if (parsed == null) return {};
  if (!isPlainObject(parsed)) throw new FacestreamError('CONFIG_INVALID', `config file ${file} must hold an object at the top level`, { file });
  return parsed;
}

export interface LoadConfigOptions {
  /** Config file path; default FACESTREAM_CONFIG, else none. */
  file?: string;
  /** Overrides from command-line flags, as a partial config object. */
  overrides?: Plain;
  env?: NodeJS.ProcessEnv;
}

/**
 * Builds the effective configuration, reporting every problem at once. Relative paths in the
 * file are resolved against the file's directory so a config can travel with its data.
 */
export function loadConfig(opts: LoadConfigOptions = {}): Config {
  const env = opts.env ?? process.env;
  const file = opts.file ?? (env.FACESTREAM_CONFIG || undefined);
  let merged: Plain = {};
  if (file) {
    const fromFile = readConfigFile(file);
    resolveRelativePaths(fromFile, path.dirname(path.resolve(file)));
    merged = deepMerge(merged, fromFile);
  }
  merged = deepMerge(merged, configFromEnv(env));
  if (opts.overrides) merged = deepMerge(merged, opts.overrides);
  const result = configSchema.safeParse(merged);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `  - ${i.path.join('.') || '(top level)'}: ${i.message}`);
    throw new FacestreamError('CONFIG_INVALID', `invalid configuration${file ? ` (${file})` : ''}:\n${problems.join('\n')}`, {
      issues: result.error.issues,
    });
  }
  return result.data;
}

/** Config paths holding filesystem paths, resolved relative to the config file that sets them. */
export const PATH_KEYS = ['server.dataDir', 'server.demo.video', 'server.demo.faces', 'server.demo.dataDir', 'models.dir', 'models.manifest', 'models.mirror', 'gallery.dir', 'history.dir'];

function resolveRelativePaths(cfg: Plain, baseDir: string): void {
  for (const dotted of PATH_KEYS) {
    const keys = dotted.split('.');
    let node: unknown = cfg;
    for (const k of keys.slice(0, -1)) node = isPlainObject(node) ? node[k] : undefined;
    const last = keys[keys.length - 1];
    if (!isPlainObject(node)) continue;
    const v = node[last];
    if (typeof v === 'string' && v && !/^[a-z]+:\/\//i.test(v) && !path.isAbsolute(v)) node[last] = path.resolve(baseDir, v);
  }
}
