/**
 * `npm run bench -- streams`: concurrent camera-paced streams through real ingest, the pipeline
 * and a gallery. Reports per configuration: processed fps per stream, capture-to-result latency
 * percentiles, drop rate, CPU and memory, and where the time goes per stage.
 *
 * Options: --clips hamilton,crowd  --streams 1,2,4,8  --models arcface-mbf-112,vggface2-resnet50-arch
 *          --seconds 20  --warmup 3  --min-face 40  --recognition-interval 1  --fps-hamilton 10  --fps-crowd 25
 *          --threads N (intra-op)  --in-flight N (pipeline.maxInFlight)  --detect-batch N
 */
import os from 'node:os';
import path from 'node:path';
import { defaultConfig } from '../src/config/schema.js';
import { Enroller } from '../src/index/enroll.js';
import { enrollDirectory } from '../src/index/enroll-dir.js';
import { Gallery } from '../src/index/gallery.js';
import { FrameSource } from '../src/ingest/stream.js';
import { createLogger } from '../src/log.js';
import { loadManifest } from '../src/models/manifest.js';
import { ModelRuntime } from '../src/models/runtime.js';
import { ModelStore } from '../src/models/store.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import type { PipelineObserver, Stage } from '../src/pipeline/metrics.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { printTable, summarize, writeResult, type Row } from './report.js';
import fs from 'node:fs';

function arg(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1] : fallback;
}

const SHARED = process.env.FACESTREAM_SHARED ?? path.resolve(PACKAGE_ROOT, '..', 'shared');
const CLIPS: Record<string, string> = {
  hamilton: path.join(SHARED, 'data', 'video', 'hamilton_640x360.mp4'),
  crowd: path.join(SHARED, 'data', 'video', 'crowd_1080p.mp4'),
};

class StageTimes implements PipelineObserver {
  readonly stages = new Map<Stage, number[]>();
  batches: Record<string, number[]> = {};
  recording = false;
  frameReceived() {}
  frameProcessed() {}
  frameDropped() {}
  queueDepth() {}
  inferenceError() {}
  detectionRun() {}
  stage(stage: Stage, ms: number) {
    if (!this.recording) return;
    const list = this.stages.get(stage) ?? [];
    list.push(ms);
    this.stages.set(stage, list);
  }
  batch(model: string, size: number) {
    if (this.recording) (this.batches[model] ??= []).push(size);
  }
}

export async function run(args: string[]): Promise<void> {
  const clips = arg(args, 'clips', 'hamilton,crowd').split(',');
  const counts = arg(args, 'streams', '1,2,4,8').split(',').map(Number);
  const models = arg(args, 'models', 'arcface-mbf-112,vggface2-resnet50-arch').split(',');
  const seconds = Number(arg(args, 'seconds', '20'));
  const warmup = Number(arg(args, 'warmup', '3'));
  const minFace = Number(arg(args, 'min-face', '40'));
  const interval = Number(arg(args, 'recognition-interval', '1'));
  const fpsOf: Record<string, number> = { hamilton: Number(arg(args, 'fps-hamilton', '10')), crowd: Number(arg(args, 'fps-crowd', '25')) };
  const logger = createLogger('warn');
  const base = defaultConfig();
  base.runtime.intraOpThreads = Number(arg(args, 'threads', String(base.runtime.intraOpThreads)));
  base.pipeline.maxInFlight = Number(arg(args, 'in-flight', String(base.pipeline.maxInFlight)));
  base.pipeline.detect.maxBatch = Number(arg(args, 'detect-batch', String(base.pipeline.detect.maxBatch)));
  const modelsDir = process.env.FACESTREAM_MODELS_DIR ?? path.join(PACKAGE_ROOT, 'models');
  const runtime = new ModelRuntime(new ModelStore(loadManifest(), modelsDir), base.runtime, logger);
  const rows: Row[] = [];
  const stageRows: Row[] = [];
  const raw: unknown[] = [];

  for (const model of models) {
    const config = { ...base, embedding: { ...base.embedding, model }, detector: { ...base.detector, minFaceSize: minFace } };
    const analyzer = await FaceAnalyzer.create(runtime, config);
    const galleryDir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-bench-'));
    const gallery = await Gallery.open(galleryDir, { modelId: model, dimension: analyzer.embedder.dimension, config: config.gallery, defaultMinSimilarity: analyzer.embedder.defaultMinSimilarity, logger });
    await enrollDirectory(new Enroller(gallery, analyzer, config.gallery), path.join(SHARED, 'data', 'faces'), { allowLargest: true });
    for (const clip of clips) {
      for (const n of counts) {
        const observer = new StageTimes();
        const pipeline = new Pipeline(analyzer, { ...config.pipeline, recognition: { ...config.pipeline.recognition, interval } }, { gallery, logger, observer });
        const latencies: number[] = [];
        const sources: FrameSource[] = [];
        for (let i = 0; i < n; i++) {
          const id = `${clip}-${i}`;
          const source = new FrameSource({ id, url: CLIPS[clip], realtime: true, loop: true, fps: fpsOf[clip] }, { config: config.ingest, logger });
          pipeline.addStream(id, { mode: 'live', minFaceSize: minFace, recognitionInterval: interval });
          source.on('frame', (f) => pipeline.offer(f));
          sources.push(source);
        }
        pipeline.bus.on('frame', (r) => observer.recording && latencies.push(r.processedAt - r.capturedAt));
        sources.forEach((s) => s.start());
        await new Promise((r) => setTimeout(r, warmup * 1000));
        const statsAt = () => sources.map((s, i) => ({ ...pipeline.streamStats(`${clip}-${i}`)! , dropped: { ...pipeline.streamStats(`${clip}-${i}`)!.dropped } }));
        const s0 = statsAt();
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        observer.recording = true;
        let rssMax = 0;
        const sampler = setInterval(() => (rssMax = Math.max(rssMax, process.memoryUsage().rss)), 250);
        await new Promise((r) => setTimeout(r, seconds * 1000));
        observer.recording = false;
        clearInterval(sampler);
        const wall = (performance.now() - t0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        const s1 = statsAt();
        await Promise.all(sources.map((s) => s.stop()));
        await pipeline.close();
        let received = 0;
        let processed = 0;
        let dropped = 0;
        s1.forEach((s, i) => {
          received += s.received - s0[i].received;
          processed += s.processed - s0[i].processed;
          dropped += s.dropped.stale + s.dropped['too-old'] - (s0[i].dropped.stale + s0[i].dropped['too-old']);
        });
        const lat = summarize(latencies);
        const row: Row = {
          model,
          clip,
          streams: n,
          'fps asked': fpsOf[clip],
          'fps/stream': processed / wall / n,
          'lat p50': lat.p50,
          'lat p95': lat.p95,
          'lat p99': lat.p99,
          'drop %': received ? (100 * dropped) / received : 0,
          'cpu %': (100 * (cpu.user + cpu.system)) / 1e6 / wall,
          'rss MB': rssMax / 2 ** 20,
        };
        rows.push(row);
        const stage: Row = { model, clip, streams: n };
        for (const [name, list] of observer.stages) stage[`${name} ms`] = summarize(list).mean;
        for (const [m, sizes] of Object.entries(observer.batches)) stage[`${m} batch`] = sizes.reduce((a, b) => a + b, 0) / sizes.length;
        stageRows.push(stage);
        raw.push({ ...row, stages: Object.fromEntries([...observer.stages].map(([k, v]) => [k, summarize(v)])), latency: lat });
        process.stderr.write(`done: ${model} ${clip} x${n}\n`);
      }
    }
    await gallery.close();
    fs.rmSync(galleryDir, { recursive: true, force: true });
  }
  printTable(`streams (min face ${minFace}, recognition every ${interval} frame(s), ${seconds} s per run, ${runtime.executionProvider} x${base.runtime.intraOpThreads} threads)`, rows);
  printTable('mean time per stage (ms; embed/attributes/match per frame that needed them) and mean batch sizes', stageRows);
  writeResult('streams', { settings: { clips, counts, models, seconds, warmup, minFace, interval, fps: fpsOf, provider: runtime.executionProvider, threads: base.runtime.intraOpThreads }, runs: raw });
  await runtime.close();
}
