import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FacestreamError } from '../src/errors.js';
import { loadImageFile } from '../src/image/decode.js';
import { createLogger } from '../src/log.js';
import ort from 'onnxruntime-node';
import { fetchModel, fillModels } from '../src/models/fetch.js';
import { OnnxGraph } from '../src/models/graph/onnx.js';
import { rewritePrelu } from '../src/models/graph/prelu.js';
import { embeddingDimension, embeddingSpec, loadManifest, type Manifest } from '../src/models/manifest.js';
import { ModelRuntime } from '../src/models/runtime.js';
import { ModelStore, sha256File } from '../src/models/store.js';
import { MtcnnDetector } from '../src/pipeline/detect/mtcnn.js';
import { Embedder, type FaceInPicture } from '../src/pipeline/embed/embedder.js';
import { testConfig } from './helpers/models.js';
import { MODELS_DIR, MODELS_MIRROR, dataFile } from './helpers/paths.js';

const manifest = loadManifest();
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-models-'));
let dirCount = 0;
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

/** A fresh, empty models directory. */
function freshDir(): string {
  const dir = path.join(tmpRoot, `models-${++dirCount}`);
  fs.mkdirSync(dir);
  return dir;
}

/** Every file under `dir`, relative, for "nothing was left behind" checks. */
function listFiles(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.relative(dir, path.join(d.parentPath, d.name))).sort();
}

function runtimeFor(dir: string, m: Manifest = manifest, logger = createLogger('silent'), providers: ('cuda' | 'cpu')[] = ['cpu']): ModelRuntime {
  return new ModelRuntime(new ModelStore(m, dir), { ...testConfig().runtime, executionProviders: providers }, logger);
}

async function rejection(p: Promise<unknown>): Promise<FacestreamError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(FacestreamError);
    return err as FacestreamError;
  }
  throw new Error('expected a rejection');
}

describe('model manifest', () => {
  it('validates and describes every model the mirror holds, with matching size and sha256', () => {
    expect(Object.keys(manifest.models).sort()).toEqual(
      ['age-ssrnet-64', 'arcface-mbf-112', 'faceapi-resnet34-150', 'gender-ssrnet-64', 'mtcnn-onet', 'mtcnn-pnet', 'mtcnn-rnet', 'vggface2-resnet50-arch'].sort(),
    );
    const mirror = JSON.parse(fs.readFileSync(path.join(MODELS_MIRROR, 'manifest.json'), 'utf8')) as { models: Record<string, { file: string; sha256: string; bytes: number }> };
    // Built models come from an npm package's weights, not from the mirror (test/faceapi-model.test.ts).
    expect(Object.entries(manifest.models).filter(([, spec]) => spec.build).map(([id]) => id)).toEqual(['faceapi-resnet34-150']);
    for (const [id, spec] of Object.entries(manifest.models).filter(([, spec]) => !spec.build)) {
      expect(mirror.models[id], id).toBeDefined();
      expect({ file: spec.file, sha256: spec.sha256, bytes: spec.bytes }, id).toEqual({ file: mirror.models[id].file, sha256: mirror.models[id].sha256, bytes: mirror.models[id].bytes });
      expect(fs.statSync(path.join(MODELS_MIRROR, spec.file)).size, id).toBe(spec.bytes);
    }
    expect(embeddingDimension(embeddingSpec(manifest, 'arcface-mbf-112'))).toBe(512);
    expect(embeddingDimension(embeddingSpec(manifest, 'vggface2-resnet50-arch'))).toBe(2048);
    expect(embeddingDimension(embeddingSpec(manifest, 'faceapi-resnet34-150'))).toBe(128);
  });

  it('rejects a broken manifest listing every problem', () => {
    const broken = structuredClone(JSON.parse(fs.readFileSync(path.join(MODELS_DIR, 'manifest.json'), 'utf8'))) as { models: Record<string, Record<string, unknown>> };
    broken.models['mtcnn-pnet'].sha256 = 'not-a-hash';
    broken.models['mtcnn-rnet'].colour = 'blue';
    delete broken.models['arcface-mbf-112'].crop;
    const file = path.join(tmpRoot, 'broken-manifest.json');
    fs.writeFileSync(file, JSON.stringify(broken));
    let err: FacestreamError | undefined;
    try {
      loadManifest(file);
    } catch (e) {
      err = e as FacestreamError;
    }
    expect(err?.code).toBe('CONFIG_INVALID');
    expect(err?.message).toContain('models.mtcnn-pnet.sha256');
    expect(err?.message).toContain('colour');
    expect(err?.message).toContain('models.arcface-mbf-112.crop');
  });
});

describe('models fill from a local mirror directory', () => {
  const ids = ['mtcnn-pnet', 'mtcnn-rnet', 'age-ssrnet-64'];

  it('copies and verifies the files, then finds them present', async () => {
    const dir = freshDir();
    const store = new ModelStore(manifest, dir);
    const first = await fillModels(store, { mirror: MODELS_MIRROR, ids });
    expect(first.map((r) => r.action)).toEqual(['fetched', 'fetched', 'fetched']);
    for (const id of ids) {
      expect((await store.check(id, true)).state).toBe('ok');
      expect(await sha256File(store.pathOf(id))).toBe(manifest.models[id].sha256);
    }
    const second = await fillModels(store, { mirror: MODELS_MIRROR, ids });
    expect(second.map((r) => r.action)).toEqual(['present', 'present', 'present']);
    // A damaged file is replaced.
    fs.truncateSync(store.pathOf('mtcnn-rnet'), 1000);
    expect((await store.check('mtcnn-rnet')).state).toBe('truncated');
    const third = await fillModels(store, { mirror: MODELS_MIRROR, ids });
    expect(third.map((r) => r.action)).toEqual(['present', 'fetched', 'present']);
    expect((await store.check('mtcnn-rnet', true)).state).toBe('ok');
    expect(listFiles(dir).filter((f) => f.endsWith('.part'))).toEqual([]);
  });

  it('reports a mirror without the file as a failure, leaving nothing behind', async () => {
    const dir = freshDir();
    const results = await fillModels(new ModelStore(manifest, dir), { mirror: path.join(tmpRoot, 'no-such-mirror'), ids: ['mtcnn-pnet'] });
    expect(results[0].action).toBe('failed');
    expect(results[0].error).toMatch(/no-such-mirror.*does not exist/);
    expect(listFiles(dir)).toEqual([]);
  });
});

describe('models fill for models built from npm package weights', () => {
  it('builds faceapi-resnet34-150 (no mirror needed), and installs nothing when the build does not match the manifest', async () => {
    const dir = freshDir();
    const built = await fillModels(new ModelStore(manifest, dir), { mirror: path.join(tmpRoot, 'no-such-mirror'), ids: ['faceapi-resnet34-150'] });
    expect(built).toEqual([expect.objectContaining({ id: 'faceapi-resnet34-150', action: 'built', bytes: manifest.models['faceapi-resnet34-150'].bytes })]);
    expect(await sha256File(path.join(dir, 'recognition', 'faceapi-resnet34-150.onnx'))).toBe(manifest.models['faceapi-resnet34-150'].sha256);

    const wrong = structuredClone(manifest);
    wrong.models['faceapi-resnet34-150'].sha256 = '0'.repeat(64);
    const other = freshDir();
    const [failed] = await fillModels(new ModelStore(wrong, other), { ids: ['faceapi-resnet34-150'] });
    expect(failed.action).toBe('failed');
    expect(failed.error).toMatch(/build recipe faceapi-recognition.*sha256 .* does not match/);
    expect(listFiles(other)).toEqual([]);
  });
});

describe('models fill over HTTP', () => {
  let server: http.Server;
  let base = '';
  const pnet = fs.readFileSync(path.join(MODELS_MIRROR, manifest.models['mtcnn-pnet'].file));
  const requests: string[] = [];

  beforeAll(async () => {
    // /<mode>/<manifest file path>: good, missing (404), truncated (connection cut mid-body),
    // short (a complete but shorter body), wrong (same size, other bytes), slow (good, in pauses).
    server = http.createServer((req, res) => {
      requests.push(req.url ?? '');
      const [, mode, ...rest] = (req.url ?? '').split('/');
      const file = path.join(MODELS_MIRROR, ...rest);
      if (mode === 'missing' || !fs.existsSync(file)) {
        res.writeHead(404).end('not found');
        return;
      }
      const body = fs.readFileSync(file);
      const half = body.subarray(0, body.length >> 1);
      switch (mode) {
        case 'good':
          res.writeHead(200, { 'content-length': body.length }).end(body);
          return;
        case 'truncated':
          res.writeHead(200, { 'content-length': body.length });
          res.write(half, () => setTimeout(() => res.destroy(), 20));
          return;
        case 'short':
          res.writeHead(200, { 'content-length': half.length }).end(half);
          return;
        case 'wrong': {
          const other = Buffer.from(body);
          other[other.length >> 1] ^= 0xff;
          res.writeHead(200, { 'content-length': other.length }).end(other);
          return;
        }
        case 'slow': {
          res.writeHead(200, { 'content-length': body.length });
          const parts = 4;
          const size = Math.ceil(body.length / parts);
          let i = 0;
          const next = () => {
            const chunk = body.subarray(i * size, (i + 1) * size);
            i++;
            if (i === parts) res.end(chunk);
            else res.write(chunk, () => setTimeout(next, 80));
          };
          next();
          return;
        }
        default:
          res.writeHead(400).end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('downloads, verifies and writes the file atomically: it appears only when complete', async () => {
    const dir = freshDir();
    const store = new ModelStore(manifest, dir);
    const target = store.pathOf('mtcnn-pnet');
    const seen: { bytes: number; targetExists: boolean; partial: string[] }[] = [];
    const result = await fetchModel(store, 'mtcnn-pnet', {
      mirror: `${base}/slow`,
      onProgress: (_id, bytes) => seen.push({ bytes, targetExists: fs.existsSync(target), partial: listFiles(dir).filter((f) => f.endsWith('.part')) }),
    });
    expect(result).toMatchObject({ id: 'mtcnn-pnet', action: 'fetched', bytes: pnet.length, from: `${base}/slow/mtcnn/pnet.onnx` });
    expect(seen.length).toBeGreaterThanOrEqual(4);
    // While bytes were arriving the model path did not exist; the data went to a temporary file
    // beside it (opened asynchronously, so it may not exist yet at the first chunk).
    const inProgress = seen.filter((x) => x.bytes < pnet.length);
    expect(inProgress.length).toBeGreaterThanOrEqual(3);
    for (const s of inProgress) {
      expect(s.targetExists).toBe(false);
      expect(s.partial.length).toBeLessThanOrEqual(1);
    }
    expect(inProgress.slice(1).every((s) => s.partial.length === 1)).toBe(true);
    expect(fs.readFileSync(target).equals(pnet)).toBe(true);
    expect(listFiles(dir)).toEqual(['mtcnn/pnet.onnx']);
  });

  it('reports HTTP errors, cut connections, short bodies and wrong content, leaving no partial file and the old file untouched', async () => {
    const dir = freshDir();
    const store = new ModelStore(manifest, dir);
    const target = store.pathOf('mtcnn-pnet');
    fs.mkdirSync(path.dirname(target), { recursive: true });
    // A damaged file from an earlier attempt: a failed download must not replace it with something worse.
    const old = Buffer.from('an old, damaged model file');
    fs.writeFileSync(target, old);
    const cases: [string, RegExp][] = [
      ['missing', /HTTP 404/],
      ['truncated', /mtcnn-pnet.*(terminated|closed|aborted|socket|premature|other side)/i],
      ['short', /received \d+ bytes, expected 28442/],
      ['wrong', /sha256 .* does not match/],
    ];
    for (const [mode, message] of cases) {
      const [result] = await fillModels(store, { mirror: `${base}/${mode}`, ids: ['mtcnn-pnet'], timeoutMs: 10_000 });
      expect(result.action, mode).toBe('failed');
      expect(result.error, mode).toMatch(message);
      expect(listFiles(dir), mode).toEqual(['mtcnn/pnet.onnx']);
      expect(fs.readFileSync(target).equals(old), mode).toBe(true);
    }
    const err = await rejection(fetchModel(store, 'mtcnn-pnet', { mirror: `${base}/missing` }));
    expect(err.code).toBe('MODEL_FETCH_FAILED');
    expect(err.message).toContain(`${base}/missing/mtcnn/pnet.onnx`);
    // And a good mirror then repairs it.
    const [ok] = await fillModels(store, { mirror: `${base}/good`, ids: ['mtcnn-pnet'] });
    expect(ok.action).toBe('fetched');
    expect(fs.readFileSync(target).equals(pnet)).toBe(true);
  });

  it('says so when a model has no URL and no mirror is given', async () => {
    const noUrl = structuredClone(manifest);
    delete noUrl.models['mtcnn-pnet'].url;
    const err = await rejection(fetchModel(new ModelStore(noUrl, freshDir()), 'mtcnn-pnet'));
    expect(err.code).toBe('MODEL_FETCH_FAILED');
    expect(err.message).toMatch(/no download URL.*--mirror/);
  });
});

describe('model runtime', () => {
  it('refuses missing, truncated and wrong-hash files with a clear error naming the file and the fix', async () => {
    const dir = freshDir();
    const runtime = runtimeFor(dir);
    const file = path.join(dir, 'mtcnn', 'pnet.onnx');
    const missing = await rejection(runtime.load('mtcnn-pnet'));
    expect(missing.code).toBe('MODEL_MISSING');
    expect(missing.message).toContain(file);
    expect(missing.message).toContain('facestream models fill');

    fs.mkdirSync(path.dirname(file), { recursive: true });
    const good = fs.readFileSync(path.join(MODELS_MIRROR, 'mtcnn', 'pnet.onnx'));
    fs.writeFileSync(file, good.subarray(0, 1000));
    const truncated = await rejection(runtime.load('mtcnn-pnet'));
    expect(truncated.code).toBe('MODEL_CORRUPT');
    expect(truncated.message).toMatch(/truncated.*1000 of 28442 bytes/);
    expect(truncated.message).toContain(file);
    expect(truncated.message).toContain('facestream models fill');

    const flipped = Buffer.from(good);
    flipped[20_000] ^= 0x55;
    fs.writeFileSync(file, flipped);
    const wrong = await rejection(runtime.load('mtcnn-pnet'));
    expect(wrong.code).toBe('MODEL_CORRUPT');
    expect(wrong.message).toMatch(/sha256/);
    expect(wrong.message).toContain(file);

    fs.writeFileSync(file, Buffer.concat([good, Buffer.from('extra')]));
    expect((await rejection(runtime.load('mtcnn-pnet'))).message).toMatch(/wrong size/);

    // A failed load is not cached: after a fill the same runtime loads the model.
    await fillModels(new ModelStore(manifest, dir), { mirror: MODELS_MIRROR, ids: ['mtcnn-pnet'] });
    expect((await runtime.load('mtcnn-pnet')).id).toBe('mtcnn-pnet');
    await runtime.close();
  });

  it('turns a file that is not a model into MODEL_LOAD_FAILED, not an onnxruntime crash', async () => {
    const dir = freshDir();
    const junk = Buffer.from('this is not an ONNX model, but its hash is in the manifest\n'.repeat(50));
    const custom = structuredClone(manifest);
    custom.models['mtcnn-pnet'] = { ...custom.models['mtcnn-pnet'], bytes: junk.length, sha256: crypto.createHash('sha256').update(junk).digest('hex') };
    fs.mkdirSync(path.join(dir, 'mtcnn'));
    fs.writeFileSync(path.join(dir, 'mtcnn', 'pnet.onnx'), junk);
    const err = await rejection(runtimeFor(dir, custom).load('mtcnn-pnet'));
    expect(err.code).toBe('MODEL_LOAD_FAILED');
    expect(err.message).toContain('mtcnn-pnet');
    expect(err.message).toContain(path.join(dir, 'mtcnn', 'pnet.onnx'));
  });

  it('unknown model ids are a clear error', async () => {
    const err = await rejection(runtimeFor(MODELS_DIR).load('no-such-model'));
    expect(err.code).toBe('MODEL_UNKNOWN');
    expect(err.message).toContain('arcface-mbf-112');
  });

  it('shares one session per model between callers', async () => {
    const runtime = runtimeFor(MODELS_DIR);
    const [a, b] = await Promise.all([runtime.load('mtcnn-onet'), runtime.load('mtcnn-onet')]);
    expect(a).toBe(b);
    expect(await runtime.load('mtcnn-onet')).toBe(a);
    expect(await runtime.load('mtcnn-rnet')).not.toBe(a);
    expect((await runtime.models()).map((m) => m.id).sort()).toEqual(['mtcnn-onet', 'mtcnn-rnet']);
    await runtime.close();
  });

  it('answers many requests posted at once on the inference thread, each with its own result, as when run one by one', async () => {
    const feeds = [0, 1, 2, 3, 4, 5].map((i) => {
      const data = new Float32Array(3 * 48 * 48);
      for (let k = 0; k < data.length; k++) data[k] = Math.sin(k * 0.01 + i);
      return data;
    });
    const runtime = new ModelRuntime(new ModelStore(loadManifest(), MODELS_DIR), { ...testConfig().runtime, executionProviders: ['cpu'] }, createLogger('silent'));
    const onet = await runtime.load('mtcnn-onet');
    const started = performance.now();
    const together = await Promise.all(feeds.map((f) => onet.run(f.slice(), [1, 3, 48, 48])));
    const wall = performance.now() - started;
    // Each run is timed alone: their times add up to no more than the wall time of them all
    // (runs started together used to count the runs before them too).
    expect(onet.timing.calls).toBe(feeds.length);
    expect(onet.timing.ms).toBeLessThanOrEqual(wall);
    const oneByOne = [];
    for (const f of feeds) oneByOne.push(await onet.run(f.slice(), [1, 3, 48, 48]));
    await runtime.close();
    const results = [together, oneByOne].map((outs) => outs.map((o) => Array.from(o.prob.data as Float32Array)));
    expect(results[1]).toEqual(results[0]);
    // Different inputs, different outputs: the replies went back to the requests they answer.
    expect(new Set(results[0].map((r) => r.join())).size).toBe(feeds.length);
  });

  it('falls back from CUDA to CPU on this machine and logs which provider it uses', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const runtime = runtimeFor(MODELS_DIR, manifest, pino({ level: 'info' }, sink), ['cuda', 'cpu']);
    const model = await runtime.load('mtcnn-pnet');
    expect(model.provider).toBe('cpu');
    expect(runtime.executionProvider).toBe('cpu');
    const chosen = lines.filter((l) => l.executionProvider === 'cpu');
    expect(chosen.length).toBe(1);
    expect(chosen[0].msg).toMatch(/using the CPU execution provider/);
    // Why CUDA was not used is in the log too (not installed, or installed but failing).
    const why = JSON.stringify(lines);
    expect(why).toMatch(/cuda/i);
    // The choice is made once: loading more models logs nothing new about providers.
    await runtime.load('mtcnn-rnet');
    expect(lines.filter((l) => l.executionProvider).length).toBe(1);
    await runtime.close();

    const cudaOnly = runtimeFor(MODELS_DIR, manifest, createLogger('silent'), ['cuda']);
    const err = await rejection(cudaOnly.load('mtcnn-pnet'));
    expect(err.code).toBe('MODEL_LOAD_FAILED');
    expect(err.message).toMatch(/no configured execution provider works: cuda/);
  });
});

describe('embedding models plug in from the manifest', () => {
  let runtime: ModelRuntime;
  let faces: FaceInPicture[];

  beforeAll(async () => {
    runtime = runtimeFor(MODELS_DIR);
    const detector = await MtcnnDetector.load(runtime);
    const scenes = ['multiface.jpg', 'two_people.jpg'];
    faces = [];
    for (const name of scenes) {
      const image = await loadImageFile(dataFile('scenes', name), testConfig().limits);
      const found = await detector.detect(image);
      faces.push(...found.map((face) => ({ image, face })));
    }
    faces = faces.slice(0, 4);
    expect(faces.length).toBe(4);
  });
  afterAll(() => runtime.close());

  for (const id of ['arcface-mbf-112', 'faceapi-resnet34-150', 'vggface2-resnet50-arch']) {
    it(`${id}: unit vectors of the manifest's dimension, a batch of 4 equal to one at a time`, async () => {
      const spec = embeddingSpec(manifest, id);
      const embedder = await Embedder.load(runtime, id, 4);
      expect(embedder.dimension).toBe(embeddingDimension(spec));
      const batched = await embedder.embedFaces(faces);
      expect(batched.length).toBe(4);
      for (let i = 0; i < faces.length; i++) {
        const v = batched[i];
        expect(v.length).toBe(embedder.dimension);
        expect(Math.hypot(...v)).toBeCloseTo(1, 5);
        const [single] = await embedder.embedFaces([faces[i]]);
        let maxDiff = 0;
        for (let k = 0; k < v.length; k++) maxDiff = Math.max(maxDiff, Math.abs(v[k] - single[k]));
        expect(maxDiff).toBeLessThan(1e-4);
      }
      // Different faces give different vectors.
      expect(batched[0]).not.toEqual(batched[1]);
    });
  }

  it('a new manifest entry is all a further embedding model needs', async () => {
    const custom = structuredClone(manifest);
    custom.models['my-face-model'] = { ...custom.models['arcface-mbf-112'] };
    const other = runtimeFor(MODELS_DIR, custom);
    const embedder = await Embedder.load(other, 'my-face-model');
    expect(embedder.modelId).toBe('my-face-model');
    const [v] = await embedder.embedFaces([faces[0]]);
    const [ref] = await (await Embedder.load(runtime, 'arcface-mbf-112')).embedFaces([faces[0]]);
    expect(Array.from(v)).toEqual(Array.from(ref));
    await other.close();
  });
});

describe('PReLU graph rewrite', () => {
  const options: ort.InferenceSession.SessionOptions = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: 1, logSeverityLevel: 3 };
  /** Deterministic pseudo-random input in [-1, 1]. */
  const input = (dims: number[]) => {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    let x = 12345;
    for (let i = 0; i < data.length; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      data[i] = (x / 2147483648) * 2 - 1;
    }
    return new ort.Tensor('float32', data, dims);
  };

  const cases: [string, number[][], { poolSwaps: number; softmaxToSigmoid: number; depthwiseSplits: number }][] = [
    ['mtcnn-pnet', [[1, 3, 37, 61], [2, 3, 12, 12], [1, 3, 150, 97]], { poolSwaps: 1, softmaxToSigmoid: 1, depthwiseSplits: 2 }],
    ['mtcnn-rnet', [[5, 3, 24, 24]], { poolSwaps: 0, softmaxToSigmoid: 0, depthwiseSplits: 3 }],
    ['mtcnn-onet', [[3, 3, 48, 48]], { poolSwaps: 0, softmaxToSigmoid: 0, depthwiseSplits: 4 }],
    ['arcface-mbf-112', [[2, 3, 112, 112]], { poolSwaps: 0, softmaxToSigmoid: 0, depthwiseSplits: 33 }],
  ];
  for (const [id, shapes, expected] of cases) {
    it(`${id}: the rewritten graph computes the same outputs`, async () => {
      const spec = manifest.models[id];
      const bytes = fs.readFileSync(path.join(MODELS_DIR, spec.file));
      const { model, report } = rewritePrelu(bytes);
      expect(report).toEqual(expected);
      const original = await ort.InferenceSession.create(bytes, options);
      const rewritten = await ort.InferenceSession.create(model, options);
      expect(rewritten.outputNames).toEqual(original.outputNames);
      for (const dims of shapes) {
        const feed = { [spec.input.name]: input(dims) };
        const [a, b] = [await original.run(feed), await rewritten.run(feed)];
        for (const name of original.outputNames) {
          expect(b[name].dims, name).toEqual(a[name].dims);
          const x = a[name].data as Float32Array;
          const y = b[name].data as Float32Array;
          let maxDiff = 0;
          for (let i = 0; i < x.length; i++) maxDiff = Math.max(maxDiff, Math.abs(x[i] - y[i]));
          expect(maxDiff, `${id} ${name} [${dims.join('x')}]`).toBeLessThan(1e-5);
        }
      }
      await original.release();
      await rewritten.release();
    });
  }

  it('leaves a model without PReLU byte for byte as it was, and re-encodes an unchanged graph faithfully', async () => {
    const bytes = fs.readFileSync(path.join(MODELS_DIR, manifest.models['age-ssrnet-64'].file));
    const { model, report } = rewritePrelu(bytes);
    expect(model).toBe(bytes);
    expect(report).toEqual({ poolSwaps: 0, softmaxToSigmoid: 0, depthwiseSplits: 0 });
    // Parsing and encoding without edits keeps a model onnxruntime runs with identical results.
    const again = OnnxGraph.parse(bytes).encode();
    const feed = { input: input([1, 3, 64, 64]) };
    const [a, b] = [await (await ort.InferenceSession.create(bytes, options)).run(feed), await (await ort.InferenceSession.create(again, options)).run(feed)];
    for (const name of Object.keys(a)) expect(Array.from(b[name].data as Float32Array)).toEqual(Array.from(a[name].data as Float32Array));
  });

  it('is what the runtime loads on the CPU provider, unless configured off', async () => {
    const pnet = manifest.models['mtcnn-pnet'];
    const feed = input([1, 3, 40, 50]);
    const outputs = async (rewrite: boolean) => {
      const runtime = new ModelRuntime(new ModelStore(manifest, MODELS_DIR), { ...testConfig().runtime, executionProviders: ['cpu'], rewritePrelu: rewrite }, createLogger('silent'));
      // run() takes its input over (it moves to the inference thread): give each run its own copy.
      const out = await (await runtime.load('mtcnn-pnet')).run((feed.data as Float32Array).slice(), feed.dims);
      await runtime.close();
      return out;
    };
    const plain = await outputs(false);
    const fast = await outputs(true);
    const reference = await (await ort.InferenceSession.create(path.join(MODELS_DIR, pnet.file), options)).run({ input: feed });
    // Off: exactly the file's results; on: the same within float rounding, but not bit-identical (a different graph ran).
    expect(Array.from(plain.prob.data as Float32Array)).toEqual(Array.from(reference.prob.data as Float32Array));
    const x = reference.prob.data as Float32Array;
    const y = fast.prob.data as Float32Array;
    let maxDiff = 0;
    let differs = false;
    for (let i = 0; i < x.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(x[i] - y[i]));
      if (x[i] !== y[i]) differs = true;
    }
    expect(maxDiff).toBeLessThan(1e-5);
    expect(differs).toBe(true);
  });
});
