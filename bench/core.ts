/**
 * `npm run bench -- core`: the face analysis core, stage by stage.
 *
 * - Video: frames of the 1080p crowd clip (min face 20, the reference settings, and 40) and of the
 *   640x360 clip (min face 20). Per frame: detection by stage, then every face aligned and embedded
 *   with each embedding model, then age/gender. Times per frame as min/median/max.
 * - LFW: pictures decoded with sharp, aligned and embedded by each embedding model at several
 *   batch sizes.
 * - The share of wall time spent inside onnxruntime (OnnxModel.timing) for detect+embed.
 *
 * The video part runs in the two configurations facestream runs models in: 'inference thread'
 * (the main thread's detector, onnxruntime on its inference thread with runtime.intraOpThreads:
 * the CLI and the REST API) and 'analysis worker' (onnxruntime on the detector's own thread with
 * pipeline.workerThreads intra-op threads, one such worker per core: live streams).
 *
 * Options: --frames N (per clip, default 30), --lfw N (pictures, default 256; a quarter for models
 * slower than 20 ms per face), --models a,b (embedding models, default all in the manifest),
 * --batches 1,8,32 (LFW batch sizes), --skip-video, --skip-lfw, --inference-thread on|off (one
 * configuration only: on, 'inference thread'; off, 'analysis worker'), --intra-op-threads N (for
 * the configurations run, instead of their own).
 * This machine is shared and noisy: compare figures from one run, and look at min and median.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../src/config/load.js';
import { loadImageFile } from '../src/image/decode.js';
import type { Point, RgbImage } from '../src/image/types.js';
import { createLogger } from '../src/log.js';
import { BUNDLED_MANIFEST, loadManifest } from '../src/models/manifest.js';
import { ModelRuntime, type OnnxModel } from '../src/models/runtime.js';
import { ModelStore } from '../src/models/store.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { AttributeEstimator } from '../src/pipeline/attributes/ssrnet.js';
import { MtcnnDetector, emptyDetectTimings, type DetectTimings } from '../src/pipeline/detect/mtcnn.js';
import { Embedder, type FaceInPicture } from '../src/pipeline/embed/embedder.js';
import { eachOption, machineInfo, printTable, summarize, writeResult, type Row } from './report.js';

const SHARED = path.resolve(process.env.FACESTREAM_SHARED ?? path.join(PACKAGE_ROOT, '..', 'shared'));
const DATA = path.join(SHARED, 'data');

interface Options {
  frames: number;
  lfw: number;
  models?: string[];
  batches: number[];
  skipVideo: boolean;
  skipLfw: boolean;
  /** One configuration only: true, 'inference thread'; false, 'analysis worker'. Both by default. */
  inferenceThread?: boolean;
  intraOpThreads?: number;
}

function parseArgs(args: string[]): Options {
  const opts: Options = { frames: 30, lfw: 256, batches: [1, 8, 32], skipVideo: false, skipLfw: false };
  eachOption(args, (a, value) => {
    if (a === '--frames') opts.frames = Number(value());
    else if (a === '--lfw') opts.lfw = Number(value());
    else if (a === '--models') opts.models = value().split(',');
    else if (a === '--batches') opts.batches = value().split(',').map(Number);
    else if (a === '--skip-video') opts.skipVideo = true;
    else if (a === '--skip-lfw') opts.skipLfw = true;
    else if (a === '--inference-thread') {
      const v = value();
      if (v !== 'on' && v !== 'off') throw new Error(`--inference-thread takes on or off, not ${v}`);
      opts.inferenceThread = v === 'on';
    } else if (a === '--intra-op-threads') {
      const v = Number(value());
      if (!Number.isInteger(v) || v < 1) throw new Error(`--intra-op-threads takes a whole number of at least 1, not ${v}`);
      opts.intraOpThreads = v;
    }
    else throw new Error(`unknown option ${a} (see bench/core.ts)`);
  });
  return opts;
}

/** Decodes the first `count` frames as the reference did; returns them and ffmpeg's wall time. */
function decodeFrames(file: string, width: number, height: number, count: number): { frames: RgbImage[]; ms: number } {
  const start = performance.now();
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', file, '-frames:v', String(count), '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 2 ** 31 });
  const ms = performance.now() - start;
  if (r.status !== 0) throw new Error(`ffmpeg failed on ${file}: ${r.stderr?.toString()}`);
  const size = width * height * 3;
  const frames: RgbImage[] = [];
  for (let off = 0; off + size <= r.stdout.length; off += size) frames.push({ width, height, data: r.stdout.subarray(off, off + size) });
  return { frames, ms };
}

const ortMs = (models: readonly OnnxModel[]) => models.reduce((s, m) => s + m.timing.ms, 0);
const med = (xs: number[]) => summarize(xs).p50;
const spread = (xs: number[]) => {
  const s = summarize(xs);
  return { min: s.min, median: s.p50, max: s.max };
};
const fmt = (xs: number[]) => {
  const s = spread(xs);
  return `${s.min.toFixed(1)} / ${s.median.toFixed(1)} / ${s.max.toFixed(1)}`;
};

interface FrameRecord {
  detectMs: number;
  stages: DetectTimings;
  detectOrtMs: number;
  faces: number;
  embed: Record<string, { ms: number; alignMs: number; inferMs: number; ortMs: number }>;
  attributesMs: number;
}

function diffTimings(after: DetectTimings, before: DetectTimings): DetectTimings {
  const out = emptyDetectTimings();
  for (const k of Object.keys(out) as (keyof DetectTimings)[]) out[k] = after[k] - before[k];
  return out;
}

async function benchVideo(
  name: string,
  file: string,
  width: number,
  height: number,
  minFaceSize: number,
  opts: Options,
  detector: MtcnnDetector,
  detectModels: OnnxModel[],
  embedders: { embedder: Embedder; model: OnnxModel }[],
  attributes: AttributeEstimator,
) {
  const { frames, ms: decodeMs } = decodeFrames(file, width, height, opts.frames);
  // Warm-up: the first run of each input shape plans memory and picks kernels.
  const warm = await detector.detect(frames[0], { minFaceSize });
  const warmItems = warm.map((face) => ({ image: frames[0], face }));
  for (const { embedder } of embedders) await embedder.embedFaces(warmItems);
  await attributes.estimate(warmItems);

  const records: FrameRecord[] = [];
  const wallStart = performance.now();
  for (const frame of frames) {
    const before = { ...detector.timings };
    const ort0 = ortMs(detectModels);
    let t = performance.now();
    const faces = await detector.detect(frame, { minFaceSize });
    const detectMs = performance.now() - t;
    const rec: FrameRecord = { detectMs, stages: diffTimings(detector.timings, before), detectOrtMs: ortMs(detectModels) - ort0, faces: faces.length, embed: {}, attributesMs: 0 };
    const items: FaceInPicture[] = faces.map((face) => ({ image: frame, face }));
    for (const { embedder: e, model } of embedders) {
      const { alignMs, inferMs } = e.timings;
      const o0 = model.timing.ms;
      t = performance.now();
      if (items.length) await e.embedFaces(items);
      rec.embed[e.modelId] = { ms: performance.now() - t, alignMs: e.timings.alignMs - alignMs, inferMs: e.timings.inferMs - inferMs, ortMs: model.timing.ms - o0 };
    }
    t = performance.now();
    if (items.length) await attributes.estimate(items);
    rec.attributesMs = performance.now() - t;
    records.push(rec);
  }
  const wallMs = performance.now() - wallStart;
  const n = records.length;
  const stage = (k: keyof DetectTimings) => med(records.map((r) => r.stages[k]));
  const detectRow: Row = {
    clip: name,
    'min face': minFaceSize,
    frames: n,
    'faces/frame': records.reduce((s, r) => s + r.faces, 0) / n,
    'detect ms min/med/max': fmt(records.map((r) => r.detectMs)),
    'ffmpeg decode': decodeMs / n,
    pyramid: stage('pyramidMs'),
    'P-Net': stage('pnetMs'),
    'R-Net': stage('rnetMs'),
    'O-Net': stage('onetMs'),
    crops: stage('cropMs'),
    'nms etc': stage('nmsMs'),
    'R-Net batch': stage('rnetCandidates'),
    'O-Net batch': stage('onetCandidates'),
    'in ORT %': (100 * records.reduce((s, r) => s + r.detectOrtMs, 0)) / records.reduce((s, r) => s + r.detectMs, 0),
    'detect fps': (1000 * n) / records.reduce((s, r) => s + r.detectMs, 0),
  };
  const pipelineRows: Row[] = embedders.map(({ embedder: e }) => {
    const id = e.modelId;
    const de = records.map((r) => r.detectMs + r.embed[id].ms);
    const ortShare = records.reduce((s, r) => s + r.detectOrtMs + r.embed[id].ortMs, 0) / de.reduce((s, x) => s + x, 0);
    return {
      clip: name,
      'min face': minFaceSize,
      model: id,
      'detect+embed ms min/med/max': fmt(de),
      'align/frame': med(records.map((r) => r.embed[id].alignMs)),
      'embed/frame': med(records.map((r) => r.embed[id].inferMs)),
      'attributes/frame': med(records.map((r) => r.attributesMs)),
      'all stages ms (median)': med(records.map((r) => r.detectMs + r.embed[id].ms + r.attributesMs)),
      'in ORT %': 100 * ortShare,
      'outside ORT %': 100 * (1 - ortShare),
    };
  });
  return {
    detectRow,
    pipelineRows,
    raw: {
      clip: name,
      minFaceSize,
      frames: n,
      decodeMsPerFrame: decodeMs / n,
      wallMsAllModels: wallMs,
      detectMs: spread(records.map((r) => r.detectMs)),
      stagesMedian: Object.fromEntries((Object.keys(emptyDetectTimings()) as (keyof DetectTimings)[]).map((k) => [k, stage(k)])),
      attributesMs: spread(records.map((r) => r.attributesMs)),
      embed: Object.fromEntries(
        embedders.map(({ embedder: e }) => [e.modelId, { ms: spread(records.map((r) => r.embed[e.modelId].ms)), detectPlusEmbedMs: spread(records.map((r) => r.detectMs + r.embed[e.modelId].ms)) }]),
      ),
      detectOrtShare: (detectRow['in ORT %'] as number) / 100,
      pipeline: pipelineRows,
    },
  };
}

/** LFW pictures, decoded: each is a 112x112 crop aligned to the ArcFace template. */
async function lfwPictures(count: number, limits: { maxImagePixels: number; maxImageBytes: number }) {
  const lines = fs.readFileSync(path.join(DATA, 'lfw', 'pairs.txt'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
  const files = [...new Set(lines.flatMap((l) => l.split(/\s+/).slice(0, 2)))].slice(0, count).map((f) => path.join(DATA, 'lfw', 'images', f));
  const pictures: RgbImage[] = [];
  const decodeMs: number[] = [];
  for (const f of files) {
    const t = performance.now();
    pictures.push(await loadImageFile(f, limits));
    decodeMs.push(performance.now() - t);
  }
  return { pictures, decodeMs };
}

async function benchLfw(pictures: RgbImage[], decodeMs: number[], embedders: { embedder: Embedder; model: OnnxModel }[], template: Point[], opts: Options) {
  const rows: Row[] = [];
  // The crop is already aligned: landmarks are the template, and the face box is the square whose
  // 1.3x enlargement is the whole crop, so box-rule models see the same face.
  const side = 112 / 1.3;
  const face = { box: [56 - side / 2, 56 - side / 2, 56 + side / 2, 56 + side / 2] as [number, number, number, number], landmarks: template, score: 1 };
  for (const { embedder: e, model } of embedders) {
    // Models slower than 20 ms per face get a quarter of the pictures, to keep the run short.
    await e.embedFaces([{ image: pictures[0], face }]);
    const t0 = performance.now();
    await e.embedFaces([{ image: pictures[0], face }]);
    const slow = performance.now() - t0 > 20;
    const count = slow ? Math.max(8, pictures.length >> 2) : pictures.length;
    const items: FaceInPicture[] = pictures.slice(0, count).map((image) => ({ image, face }));
    for (const batch of opts.batches) {
      const embedder = new Embedder(model, e.spec, batch);
      await embedder.embedFaces(items.slice(0, batch)); // warm-up for this batch shape
      const o0 = model.timing.ms;
      const { alignMs, inferMs } = embedder.timings;
      const t = performance.now();
      await embedder.embedFaces(items);
      const wall = performance.now() - t;
      const ort = model.timing.ms - o0;
      rows.push({
        model: e.modelId,
        batch,
        faces: count,
        'decode ms/picture': med(decodeMs),
        'align ms/face': (embedder.timings.alignMs - alignMs) / count,
        'embed ms/face': (embedder.timings.inferMs - inferMs) / count,
        'faces/s': (1000 * count) / wall,
        'in ORT %': (100 * ort) / wall,
      });
    }
  }
  return rows;
}

export async function run(args: string[]): Promise<void> {
  const opts = parseArgs(args);
  const config = loadConfig({ env: { ...process.env, FACESTREAM_LOG_LEVEL: process.env.FACESTREAM_LOG_LEVEL ?? 'warn' } });
  const logger = createLogger(config.logLevel);
  const manifest = loadManifest(config.models.manifest ?? BUNDLED_MANIFEST);
  const modelIds = opts.models ?? Object.entries(manifest.models).filter(([, s]) => s.task === 'embedding').map(([id]) => id);
  const configurations = [
    { name: 'inference thread', runtime: { ...config.runtime, inferenceThread: true, intraOpThreads: opts.intraOpThreads ?? config.runtime.intraOpThreads } },
    { name: 'analysis worker', runtime: { ...config.runtime, inferenceThread: false, intraOpThreads: opts.intraOpThreads ?? config.pipeline.workerThreads } },
  ].filter((c) => opts.inferenceThread === undefined || c.runtime.inferenceThread === opts.inferenceThread);

  const setup = {
    executionProvider: config.runtime.executionProviders.join(', '),
    configurations: configurations.map((c) => ({ name: c.name, intraOpThreads: c.runtime.intraOpThreads, inferenceThread: c.runtime.inferenceThread })),
    interOpThreads: config.runtime.interOpThreads,
    spinning: config.runtime.spinning,
    graphOptimization: config.runtime.graphOptimization,
    embeddingMaxBatch: config.embedding.maxBatch,
    detectorBatches: 'P-Net: one run per pyramid level; R-Net and O-Net: every candidate of the frame in one batch',
    thresholds: config.detector.thresholds,
    scaleFactor: config.detector.scaleFactor,
  };
  const m = machineInfo();
  const described = configurations.map((c) => `'${c.name}' (${c.runtime.intraOpThreads} intra-op thread${c.runtime.intraOpThreads === 1 ? '' : 's'}, ${c.runtime.inferenceThread ? 'onnxruntime on the inference thread: CLI and REST' : "onnxruntime on the detector's thread: each analysis worker of live streams"})`);
  process.stdout.write(
    `core benchmark: ${m.cpu}, ${m.cores} cores, node ${m.node}; onnxruntime providers ${setup.executionProvider}, spinning ${setup.spinning ? 'on' : 'off'}, graph optimisation ${setup.graphOptimization}; configurations ${described.join(' and ')}\n` +
      `batches: ${setup.detectorBatches}; embeddings: all faces of a frame, up to ${setup.embeddingMaxBatch} per run\n`,
  );

  /** A runtime of `runtimeConfig` with the detector, the embedders and age/gender loaded. */
  const load = async (runtimeConfig: typeof config.runtime) => {
    const runtime = new ModelRuntime(new ModelStore(manifest, path.resolve(config.models.dir)), runtimeConfig, logger);
    const detector = await MtcnnDetector.load(runtime, { scaleFactor: config.detector.scaleFactor, thresholds: config.detector.thresholds });
    const embedders = await Promise.all(
      modelIds.map(async (id) => ({ embedder: await Embedder.load(runtime, id, config.embedding.maxBatch), model: await runtime.load(id) })),
    );
    const attributes = await AttributeEstimator.load(runtime, config.attributes.ageModel, config.attributes.genderModel);
    const detectModels = (await runtime.models()).filter((model) => model.id.startsWith('mtcnn-'));
    return { runtime, detector, embedders, attributes, detectModels };
  };

  const result: Record<string, unknown> = { setup };
  if (!opts.skipVideo) {
    const clips = [
      ['crowd 1920x1080', path.join(DATA, 'video', 'crowd_1080p.mp4'), 1920, 1080, 20],
      ['crowd 1920x1080', path.join(DATA, 'video', 'crowd_1080p.mp4'), 1920, 1080, 40],
      ['hamilton 640x360', path.join(DATA, 'video', 'hamilton_640x360.mp4'), 640, 360, 20],
    ] as const;
    const detectRows: Row[] = [];
    const pipelineRows: Row[] = [];
    const raw: unknown[] = [];
    for (const c of configurations) {
      const { runtime, detector, embedders, attributes, detectModels } = await load(c.runtime);
      try {
        for (const [name, file, w, h, minFace] of clips) {
          const r = await benchVideo(name, file, w, h, minFace, opts, detector, detectModels, embedders, attributes);
          detectRows.push({ configuration: c.name, ...r.detectRow });
          pipelineRows.push(...r.pipelineRows.map((row) => ({ configuration: c.name, ...row })));
          raw.push({ configuration: c.name, ...r.raw });
        }
      } finally {
        await runtime.close();
      }
    }
    printTable('Detection per frame (ms; stage columns are medians)', detectRows);
    printTable('Detection + alignment + embedding + age/gender per frame (ms)', pipelineRows);
    result.video = raw;
  }
  if (!opts.skipLfw) {
    const { runtime, embedders } = await load(configurations[0].runtime);
    try {
      const { pictures, decodeMs } = await lfwPictures(opts.lfw, config.limits);
      const arc = manifest.models['arcface-mbf-112'];
      const template = arc.task === 'embedding' && arc.crop.method === 'similarity' ? (arc.crop.template as Point[]) : [];
      const rows = await benchLfw(pictures, decodeMs, embedders, template, opts);
      printTable('LFW pictures: decode, align, embed', rows);
      result.lfw = rows;
    } finally {
      await runtime.close();
    }
  }
  writeResult('core', result);
}
