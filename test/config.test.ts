import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { defaultConfig } from '../src/config/schema.js';
import { FacestreamError } from '../src/errors.js';
import { REPO } from './helpers/paths.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-config-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(tmp, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

/** The error loadConfig throws, for asserting on its code and message. */
function configError(fn: () => unknown): FacestreamError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FacestreamError);
    return err as FacestreamError;
  }
  throw new Error('expected loadConfig to throw');
}

describe('configuration', () => {
  it('has documented defaults when nothing is given', () => {
    const cfg = loadConfig({ env: {} });
    expect(cfg).toEqual(defaultConfig());
    expect(cfg.models.dir).toBe(path.join(REPO, 'models')); // the installation's, whatever the working directory
    expect(cfg.detector).toMatchObject({ minFaceSize: 20, scaleFactor: 0.709, thresholds: [0.6, 0.7, 0.7], minScore: 0, mode: 'tracked', keyframeIntervalMs: 1000, cropPadding: 'zero', picturePadding: 0.25 });
    expect(cfg.pipeline.workers).toBeGreaterThanOrEqual(1);
    expect(cfg.runtime.executionProviders).toEqual(['cuda', 'cpu']);
    expect(cfg.runtime.spinning).toBe(false);
    expect(cfg.runtime.intraOpThreads).toBeGreaterThanOrEqual(1);
    expect(cfg.embedding.model).toBe('arcface-mbf-112');
    expect(cfg.attributes.enabled).toBe(true);
    expect(cfg.limits.maxImagePixels).toBe(40_000_000);
    expect(cfg.logLevel).toBe('info');
  });

  it('rejects unknown keys, naming them', () => {
    const err = configError(() => loadConfig({ env: {}, overrides: { detector: { minFace: 30 } } }));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toMatch(/detector/);
    expect(err.message).toMatch(/minFace\b/);
    const top = configError(() => loadConfig({ env: {}, overrides: { detectr: {} } }));
    expect(top.message).toMatch(/detectr/);
  });

  it('says what a cluster section lacks, and which environment variable gives it', () => {
    const err = configError(() => loadConfig({ env: {}, overrides: { cluster: { postgres: 'postgres://u@127.0.0.1/db' } } }));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toMatch(/cluster\.nats: required in cluster mode: a NATS URL .*FACESTREAM_CLUSTER_NATS/);
    const both = configError(() => loadConfig({ env: {}, overrides: { cluster: {} } }));
    expect(both.message).toMatch(/cluster\.postgres: required in cluster mode: .*FACESTREAM_CLUSTER_POSTGRES/);
    // Given but wrong is still said as such.
    const wrong = configError(() => loadConfig({ env: {}, overrides: { cluster: { postgres: 'mysql://x', nats: 'nats://127.0.0.1:4222' } } }));
    expect(wrong.message).toMatch(/starts with postgres:\/\//);
  });

  it('reports every problem at once', () => {
    const file = write('many-problems.json', JSON.stringify({ logLevel: 'loud', runtime: { intraOpThreads: 0 }, detector: { minFaceSize: 3, typo: 1 } }));
    const err = configError(() => loadConfig({ env: {}, file }));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toContain(file);
    for (const where of ['logLevel', 'runtime.intraOpThreads', 'detector.minFaceSize', 'typo']) expect(err.message).toContain(where);
    expect((err.details.issues as unknown[]).length).toBeGreaterThanOrEqual(4);
  });

  it('maps environment variables onto options, lists and numbers included', () => {
    const cfg = loadConfig({
      env: {
        FACESTREAM_MODELS_DIR: '/srv/models',
        FACESTREAM_EXECUTION_PROVIDERS: 'cuda, cpu',
        FACESTREAM_THREADS: '3',
        FACESTREAM_MAX_IMAGE_PIXELS: '1000',
        FACESTREAM_EMBEDDING_MODEL: 'vggface2-resnet50-arch',
        FACESTREAM_LOG_LEVEL: 'debug',
      },
    });
    expect(cfg.models.dir).toBe('/srv/models');
    expect(cfg.runtime.executionProviders).toEqual(['cuda', 'cpu']);
    expect(cfg.runtime.intraOpThreads).toBe(3);
    expect(cfg.limits.maxImagePixels).toBe(1000);
    expect(cfg.embedding.model).toBe('vggface2-resnet50-arch');
    expect(cfg.logLevel).toBe('debug');
    expect(loadConfig({ env: { FACESTREAM_EXECUTION_PROVIDERS: '["cpu"]' } }).runtime.executionProviders).toEqual(['cpu']);
    // A bad value from the environment is reported like any other.
    const err = configError(() => loadConfig({ env: { FACESTREAM_THREADS: 'many' } }));
    expect(err.message).toContain('runtime.intraOpThreads');
  });

  it('reads YAML and JSON files; flags beat the environment, which beats the file', () => {
    const yamlFile = write('a/facestream.yaml', 'detector:\n  minFaceSize: 40\n  thresholds: [0.5, 0.6, 0.7]\nruntime:\n  intraOpThreads: 2\nlogLevel: warn\n');
    const fromYaml = loadConfig({ env: {}, file: yamlFile });
    expect(fromYaml.detector.minFaceSize).toBe(40);
    expect(fromYaml.detector.thresholds).toEqual([0.5, 0.6, 0.7]);
    expect(fromYaml.detector.scaleFactor).toBe(0.709);
    expect(fromYaml.logLevel).toBe('warn');

    const jsonFile = write('b/facestream.json', JSON.stringify({ embedding: { maxBatch: 8 }, runtime: { intraOpThreads: 2 } }));
    expect(loadConfig({ env: {}, file: jsonFile }).embedding.maxBatch).toBe(8);
    // FACESTREAM_CONFIG names the file when no file is passed.
    expect(loadConfig({ env: { FACESTREAM_CONFIG: jsonFile } }).embedding.maxBatch).toBe(8);

    const layered = loadConfig({ env: { FACESTREAM_THREADS: '5' }, file: jsonFile, overrides: { embedding: { maxBatch: 16 } } });
    expect(layered.runtime.intraOpThreads).toBe(5);
    expect(layered.embedding.maxBatch).toBe(16);

    expect(configError(() => loadConfig({ env: {}, file: write('bad.yaml', 'detector: [unclosed\n') })).message).toMatch(/bad\.yaml.*YAML/);
    expect(configError(() => loadConfig({ env: {}, file: write('bad.json', '{"detector": ') })).message).toMatch(/bad\.json.*JSON/);
    expect(configError(() => loadConfig({ env: {}, file: path.join(tmp, 'nowhere.yaml') })).message).toMatch(/cannot read config file/);
    expect(configError(() => loadConfig({ env: {}, file: write('list.yaml', '- 1\n- 2\n') })).message).toMatch(/object at the top level/);
  });

  it('resolves relative paths in a file against the file, and leaves absolute paths and URLs alone', () => {
    const file = write('deploy/conf/facestream.yml', 'models:\n  dir: ../models\n  manifest: manifest.json\n  mirror: http://127.0.0.1:9/models\n');
    const cfg = loadConfig({ env: {}, file });
    expect(cfg.models.dir).toBe(path.join(tmp, 'deploy', 'models'));
    expect(cfg.models.manifest).toBe(path.join(tmp, 'deploy', 'conf', 'manifest.json'));
    expect(cfg.models.mirror).toBe('http://127.0.0.1:9/models');
    const abs = write('abs.json', JSON.stringify({ models: { dir: '/opt/models', mirror: 'mirror' } }));
    const cfgAbs = loadConfig({ env: {}, file: abs });
    expect(cfgAbs.models.dir).toBe('/opt/models');
    expect(cfgAbs.models.mirror).toBe(path.join(tmp, 'mirror'));
  });
});
