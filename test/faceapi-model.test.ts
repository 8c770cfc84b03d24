import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadImageFile } from '../src/image/decode.js';
import { buildFaceapiRecognition, faceapiPackage } from '../src/models/build/faceapi-recognition.js';
import { readTfjsWeights } from '../src/models/build/tfjs-weights.js';
import { embeddingSpec, loadManifest } from '../src/models/manifest.js';
import type { ModelRuntime } from '../src/models/runtime.js';
import { cropTransform } from '../src/pipeline/align/crop.js';
import { normalisationOf, warpInto } from '../src/pipeline/align/warp.js';
import { largestFace } from '../src/pipeline/analyzer.js';
import { MtcnnDetector } from '../src/pipeline/detect/mtcnn.js';
import { Embedder } from '../src/pipeline/embed/embedder.js';
import { testConfig, testRuntime } from './helpers/models.js';
import { dataFile } from './helpers/paths.js';

/**
 * faceapi-resnet34-150 is built by project code from @vladmandic/face-api's weights; these tests
 * prove the ONNX graph computes what face-api itself computes (its FaceRecognitionNet on
 * TensorFlow.js's CPU backend) on the same real, aligned face crops, and that the build is
 * reproducible to the manifest's sha256.
 */

const MODEL = 'faceapi-resnet34-150';
const SIZE = 150;
const FACEAPI_MEAN = [122.782, 117.001, 104.298] as const;

// face-api's own network, run by TensorFlow.js (CPU backend): the reference implementation.
interface Tf {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  tensor3d(values: Float32Array, shape: [number, number, number]): unknown;
  io: { decodeWeights(buffer: ArrayBuffer, specs: unknown[]): Record<string, { shape: number[]; dataSync(): Float32Array }> };
}
interface FaceApi {
  tf: Tf;
  FaceRecognitionNet: new () => { loadFromWeightMap(map: unknown): void; computeFaceDescriptor(input: unknown): Promise<Float32Array | Float32Array[]> };
}

async function loadFaceApi() {
  const require = createRequire(import.meta.url);
  const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js') as FaceApi;
  await faceapi.tf.setBackend('cpu');
  await faceapi.tf.ready();
  const dir = path.join(faceapiPackage().dir, 'model');
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'face_recognition_model-weights_manifest.json'), 'utf8')) as { weights: unknown[] }[];
  const bin = fs.readFileSync(path.join(dir, 'face_recognition_model.bin'));
  const net = new faceapi.FaceRecognitionNet();
  // What face-api's loadFromUri/loadFromDisk do once the bytes are read: tfjs decodes (and dequantizes) them.
  const weightMap = faceapi.tf.io.decodeWeights(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength), manifest[0].weights);
  const decoded = Object.fromEntries(Object.entries(weightMap).map(([name, t]) => [name, { shape: t.shape, data: t.dataSync().slice() }]));
  net.loadFromWeightMap(weightMap);
  return { tf: faceapi.tf, net, decoded };
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));

describe('faceapi-resnet34-150 (face-api.js descriptor built into ONNX)', () => {
  let runtime: ModelRuntime;
  let faceapi: Awaited<ReturnType<typeof loadFaceApi>>;
  /** Real faces of data/faces aligned onto the model's template: 150x150 RGB, interleaved, whole 0-255 values. */
  const crops: { file: string; rgb: Float32Array }[] = [];

  beforeAll(async () => {
    faceapi = await loadFaceApi();
    runtime = testRuntime();
    const config = testConfig();
    const detector = await MtcnnDetector.load(runtime, config.detector);
    const spec = embeddingSpec(runtime.manifest, MODEL);
    const identity = normalisationOf({ channels: 'RGB', mean: [0, 0, 0], scale: 1 });
    for (const file of ['barack_obama/1.jpg', 'angelina_jolie/1.jpg', 'rose_leslie/2.jpg']) {
      const image = await loadImageFile(dataFile('faces', ...file.split('/')), config.limits);
      const face = largestFace(await detector.detect(image));
      if (!face) throw new Error(`no face in ${file}`);
      const planar = new Float32Array(3 * SIZE * SIZE);
      warpInto(image, cropTransform(spec.crop, face, image.width, image.height), SIZE, SIZE, planar, 0, identity);
      const rgb = new Float32Array(3 * SIZE * SIZE);
      // Whole pixel values, so that the 8-bit path (Embedder.embedCrops) sees exactly the same picture.
      for (let p = 0; p < SIZE * SIZE; p++) for (let c = 0; c < 3; c++) rgb[p * 3 + c] = Math.round(planar[c * SIZE * SIZE + p]);
      crops.push({ file, rgb });
    }
  });
  afterAll(() => runtime.close());

  it('builds byte-identically, to the size and sha256 the manifest records', () => {
    const spec = loadManifest().models[MODEL];
    const first = buildFaceapiRecognition();
    const second = buildFaceapiRecognition();
    expect(Buffer.compare(Buffer.from(first), Buffer.from(second))).toBe(0);
    expect(first.length).toBe(spec.bytes);
    expect(crypto.createHash('sha256').update(first).digest('hex')).toBe(spec.sha256);
  });

  it('reads (and dequantizes) every weight exactly as tfjs does', () => {
    const ours = readTfjsWeights(path.join(faceapiPackage().dir, 'model', 'face_recognition_model-weights_manifest.json'));
    expect([...ours.keys()].sort()).toEqual(Object.keys(faceapi.decoded).sort());
    expect(ours.size).toBe(29 * 4 + 1);
    for (const [name, t] of ours) {
      expect(t.shape, name).toEqual(faceapi.decoded[name].shape);
      expect(Buffer.compare(Buffer.from(t.data.buffer), Buffer.from(faceapi.decoded[name].data.buffer)), name).toBe(0);
    }
  });

  it("matches face-api's own descriptors (TensorFlow.js CPU) on the same aligned crops to 1e-4", async () => {
    const { tf, net } = faceapi;
    const reference = (await net.computeFaceDescriptor(crops.map((c) => tf.tensor3d(c.rgb, [SIZE, SIZE, 3])))) as Float32Array[];
    expect(reference).toHaveLength(crops.length);
    // The bare graph, fed face-api's own preprocessing ((pixel - mean) / 255), batch of all crops.
    const model = await runtime.load(MODEL);
    const run = async (divisor: number) => {
      const input = new Float32Array(crops.length * 3 * SIZE * SIZE);
      crops.forEach((c, k) => {
        for (let p = 0; p < SIZE * SIZE; p++) for (let ch = 0; ch < 3; ch++) input[(k * 3 + ch) * SIZE * SIZE + p] = (c.rgb[p * 3 + ch] - FACEAPI_MEAN[ch]) / divisor;
      });
      const out = (await model.run(input, [crops.length, 3, SIZE, SIZE])).descriptor.data as Float32Array;
      return crops.map((_, k) => out.slice(k * 128, (k + 1) * 128));
    };
    const graph = await run(255);
    const diffs = graph.map((v, k) => maxAbsDiff(v, reference[k]));
    console.log(`ONNX vs face-api: max |difference| per crop ${diffs.map((d) => d.toExponential(1)).join(', ')}; descriptor norms ${reference.map((r) => norm(r).toFixed(3)).join(', ')}`);
    for (const d of diffs) expect(d).toBeLessThan(1e-4);
    // Not a trivially equal pair: different people's descriptors are far apart.
    expect(maxAbsDiff(reference[0], reference[1])).toBeGreaterThan(0.05);

    // Through the manifest's contract (Embedder: (pixel - mean) / 256 as dlib trained it, L2 normalisation).
    const embedder = await Embedder.load(runtime, MODEL);
    const ours = await embedder.embedCrops(crops.map((c) => ({ width: SIZE, height: SIZE, data: Uint8Array.from(c.rgb) })));
    const dlibScaled = await run(256);
    ours.forEach((v, k) => expect(maxAbsDiff(v, dlibScaled[k].map((x) => x / norm(dlibScaled[k])))).toBeLessThan(1e-5));
  });
});

describe("each real-weight model's track-switch similarity (manifest threshold.switchSimilarity)", () => {
  it('stays under every same-person pair and above most different-person pairs of data/faces, on its own scale', async () => {
    const runtime = testRuntime();
    try {
      const config = testConfig();
      const detector = await MtcnnDetector.load(runtime, config.detector);
      const files = ['barack_obama/1.jpg', 'barack_obama/2.jpg', 'barack_obama/3.jpg', 'barack_obama/4.jpg', 'kit_harington/1.jpg', 'kit_harington/2.jpg', 'joe_biden/1.jpg', 'rose_leslie/1.jpg', 'paul_rudd/1.jpg'];
      const faces = [];
      for (const file of files) {
        const image = await loadImageFile(dataFile('faces', ...file.split('/')), config.limits);
        faces.push({ who: file.split('/')[0], image, face: largestFace(await detector.detect(image))! });
      }
      for (const id of ['arcface-mbf-112', MODEL]) {
        const embedder = await Embedder.load(runtime, id);
        const vectors = await embedder.embedFaces(faces);
        const same: number[] = [];
        const different: number[] = [];
        for (let i = 0; i < faces.length; i++)
          for (let j = i + 1; j < faces.length; j++) (faces[i].who === faces[j].who ? same : different).push(vectors[i].reduce((s, v, k) => s + v * vectors[j][k], 0));
        const t = embedder.defaultSwitchSimilarity;
        const below = different.filter((s) => s < t).length / different.length;
        console.log(`${id}: switch ${t}; same person ${Math.min(...same).toFixed(3)}-${Math.max(...same).toFixed(3)}; different people ${Math.min(...different).toFixed(3)}-${Math.max(...different).toFixed(3)}, ${(below * 100).toFixed(0)}% below`);
        expect(Math.min(...same)).toBeGreaterThan(t);
        expect(below).toBeGreaterThanOrEqual(0.8);
      }
    } finally {
      await runtime.close();
    }
  });
});
