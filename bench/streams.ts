/**
 * `npm run bench -- streams`: concurrent camera-paced streams through real ingest, the pipeline
 * and a gallery. Reports per configuration: processed fps per stream, capture-to-result latency
 * percentiles, drop rate, CPU and memory, and where the time goes per stage.
 *
 * Both detection modes side by side (--modes tracked,full): per stream fps processed, latency
 * p50/p95/p99, drops, cores busy (this process; 'machine busy': every process, ffmpeg included), event-loop lag p99, detection runs by kind per processed frame,
 * and the recall of tracked mode against full mode on every frame of each clip (offline, the
 * accuracy guard of test/tracked-detection.test.ts).
 *
 * Options: --clips hamilton,crowd  --streams 1,2,4,8  --models arcface-mbf-112,vggface2-resnet50-arch
 *          --modes tracked,full  --seconds 20  --warmup 3  --min-face 40  --recognition-interval 1
 *          --fps-hamilton 10  --fps-crowd 25  --workers N (pipeline.workers)  --threads N (intra-op
 *          per worker)  --in-flight N (pipeline.maxInFlight)  --detect-batch N  --per-stream N
 *          (pipeline.perStreamInFlight)  --keyframe-split PIXELS (pipeline.keyframeSplitPixels)
 *          --frame-pipe fifo|stdout (ingest.framePipe)  --no-recall  --in-step (start every stream at once: they show
 *          the same part of the clip at the same time, a worst case; by default they start spread
 *          over one loop of the clip, as cameras showing different scenes)
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
import { arg, printTable, type Row, summarize, writeResult } from './report.js';
import fs from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { runFramesOffline, trackedAgreement } from '../src/eval/tracked-agreement.js';
import { decodeVideoFrames } from '../src/eval/video-frames.js';
import type { DetectionKind } from '../src/pipeline/metrics.js';

const SHARED = process.env.FACESTREAM_SHARED ?? path.resolve(PACKAGE_ROOT, '..', 'shared');
/** The clips' own frame rates: offline runs stamp frames with these, as ffmpeg would. */
const NATIVE_FPS: Record<string, number> = { hamilton: 29.97, crowd: 25 };
/** Length of each clip (one loop), seconds. */
const CLIP_SECONDS: Record<string, number> = { hamilton: 300 / 29.97, crowd: 105 / 25 };
const CLIPS: Record<string, string> = {
  hamilton: path.join(SHARED, 'data', 'video', 'hamilton_640x360.mp4'),
  crowd: path.join(SHARED, 'data', 'video', 'crowd_1080p.mp4'),
};
const CLIP_SIZES: Record<string, [number, number]> = { hamilton: [640, 360], crowd: [1920, 1080] };

/** CPU time of every core of the machine outside idle and iowait, ms (ffmpeg's decoding included). */
function machineBusyMs(): number {
  return os.cpus().reduce((sum, c) => sum + c.times.user + c.times.nice + c.times.sys + c.times.irq, 0);
}

class StageTimes implements PipelineObserver {
  readonly stages = new Map<Stage, number[]>();
  batches: Record<string, number[]> = {};
  runs: Record<DetectionKind, number> = { full: 0, motion: 0, refine: 0 };
  searched: Record<DetectionKind, number> = { full: 0, motion: 0, refine: 0 };
  recording = false;
  frameReceived() {}
  frameProcessed() {}
  frameDropped() {}
  queueDepth() {}
  inferenceError() {}
  detectionRun(_stream: string, kind: DetectionKind, share: number) {
    if (!this.recording) return;
    this.runs[kind]++;
    this.searched[kind] += share;
  }
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
  const modes = arg(args, 'modes', 'tracked,full').split(',') as ('tracked' | 'full')[];
  const withRecall = !args.includes('--no-recall');
  const inStep = args.includes('--in-step');
  const fpsOf: Record<string, number> = { hamilton: Number(arg(args, 'fps-hamilton', '10')), crowd: Number(arg(args, 'fps-crowd', '25')) };
  const logger = createLogger('warn');
  const base = defaultConfig();
  base.pipeline.workers = Number(arg(args, 'workers', String(base.pipeline.workers)));
  base.pipeline.workerThreads = Number(arg(args, 'threads', String(base.pipeline.workerThreads)));
  base.pipeline.maxInFlight = Number(arg(args, 'in-flight', String(base.pipeline.maxInFlight)));
  base.pipeline.detect.maxBatch = Number(arg(args, 'detect-batch', String(base.pipeline.detect.maxBatch)));
  base.pipeline.perStreamInFlight = Number(arg(args, 'per-stream', String(base.pipeline.perStreamInFlight)));
  base.pipeline.keyframeSplitPixels = Number(arg(args, 'keyframe-split', String(base.pipeline.keyframeSplitPixels)));
  base.ingest.framePipe = arg(args, 'frame-pipe', base.ingest.framePipe) as typeof base.ingest.framePipe;
  const modelsDir = process.env.FACESTREAM_MODELS_DIR ?? path.join(PACKAGE_ROOT, 'models');
  const runtime = new ModelRuntime(new ModelStore(loadManifest(), modelsDir), base.runtime, logger);
  const rows: Row[] = [];
  const stageRows: Row[] = [];
  const recallRows: Row[] = [];
  const raw: unknown[] = [];

  for (const model of models) {
    const config = { ...base, embedding: { ...base.embedding, model }, detector: { ...base.detector, minFaceSize: minFace } };
    const analyzer = await FaceAnalyzer.create(runtime, config);
    const galleryDir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-bench-'));
    const gallery = await Gallery.open(galleryDir, { modelId: model, dimension: analyzer.embedder.dimension, config: config.gallery, defaultMinSimilarity: analyzer.embedder.defaultMinSimilarity, logger });
    await enrollDirectory(new Enroller(gallery, analyzer, config.gallery), path.join(SHARED, 'data', 'faces'), { allowLargest: true });
    const pipelineConfig = { ...config.pipeline, recognition: { ...config.pipeline.recognition, interval } };
    if (withRecall) {
      for (const clip of clips) {
        const frames = decodeVideoFrames(CLIPS[clip], ...CLIP_SIZES[clip]);
        const pipeline = new Pipeline(analyzer, pipelineConfig, { gallery, logger });
        await pipeline.ready();
        const t0 = performance.now();
        const full = await runFramesOffline(pipeline, frames, NATIVE_FPS[clip], 'full', minFace);
        const t1 = performance.now();
        const tracked = await runFramesOffline(pipeline, frames, NATIVE_FPS[clip], 'tracked', minFace);
        const t2 = performance.now();
        await pipeline.close();
        const a = trackedAgreement(full.results, tracked.results);
        recallRows.push({
          model,
          clip,
          frames: frames.length,
          recall: a.found / a.fullFaces,
          'extra share': a.extra / a.fullFaces,
          'labels agree': a.labelled ? a.sameLabel / a.labelled : NaN,
          'entry delay max': Math.max(0, ...a.entryDelays),
          'tracked full runs': tracked.runs.full,
          'offline fps full': frames.length / ((t1 - t0) / 1000),
          'offline fps tracked': frames.length / ((t2 - t1) / 1000),
        });
        process.stderr.write(`recall: ${model} ${clip}\n`);
      }
    }
    for (const clip of clips) {
      for (const n of counts) {
       for (const mode of modes) {
        const observer = new StageTimes();
        const pipeline = new Pipeline(analyzer, pipelineConfig, { gallery, logger, observer });
        await pipeline.ready();
        const lag = monitorEventLoopDelay({ resolution: 2 });
        const latencies: number[] = [];
        const sources: FrameSource[] = [];
        for (let i = 0; i < n; i++) {
          const id = `${clip}-${i}`;
          const source = new FrameSource({ id, url: CLIPS[clip], realtime: true, loop: true, fps: fpsOf[clip] }, { config: config.ingest, logger });
          pipeline.addStream(id, { mode: 'live', minFaceSize: minFace, recognitionInterval: interval, detection: { mode } });
          source.on('frame', (f) => pipeline.offer(f));
          sources.push(source);
        }
        pipeline.bus.on('frame', (r) => observer.recording && latencies.push(r.processedAt - r.capturedAt));
        // Cameras show different scenes at any moment. Streams of one looped clip started together
        // would all reach its busiest seconds (the most faces) at once, every loop, a load no set of
        // real cameras has; so the streams start spread over one loop of the clip, each showing
        // another part of it (--in-step: all at once, the worst case).
        const loopMs = (1000 * CLIP_SECONDS[clip]) / n;
        for (const [i, s] of sources.entries()) {
          s.start();
          if (!inStep && i < sources.length - 1) await new Promise((r) => setTimeout(r, loopMs));
        }
        await new Promise((r) => setTimeout(r, warmup * 1000));
        const statsAt = () => sources.map((s, i) => ({ ...pipeline.streamStats(`${clip}-${i}`)! , dropped: { ...pipeline.streamStats(`${clip}-${i}`)!.dropped } }));
        const s0 = statsAt();
        const cpu0 = process.cpuUsage();
        const machine0 = machineBusyMs();
        const t0 = performance.now();
        observer.recording = true;
        lag.enable();
        let rssMax = 0;
        const sampler = setInterval(() => (rssMax = Math.max(rssMax, process.memoryUsage().rss)), 250);
        await new Promise((r) => setTimeout(r, seconds * 1000));
        observer.recording = false;
        lag.disable();
        clearInterval(sampler);
        const wall = (performance.now() - t0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        const machineBusy = (machineBusyMs() - machine0) / 1000 / wall;
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
        if (process.env.BENCH_DEBUG) s1.forEach((s, i) => process.stderr.write(`${clip}-${i}: received ${s.received - s0[i].received} processed ${s.processed - s0[i].processed} dropped ${JSON.stringify(Object.fromEntries(Object.entries(s.dropped).map(([k, v]) => [k, v - (s0[i].dropped as Record<string, number>)[k]])))}\n`));
        const lat = summarize(latencies);
        const row: Row = {
          model,
          mode,
          clip,
          streams: n,
          'fps asked': fpsOf[clip],
          'fps/stream': processed / wall / n,
          'lat p50': lat.p50,
          'lat p95': lat.p95,
          'lat p99': lat.p99,
          'drop %': received ? (100 * dropped) / received : 0,
          'cores busy': (cpu.user + cpu.system) / 1e6 / wall,
          'machine busy': machineBusy,
          'loop lag p99': lag.percentile(99) / 1e6,
          'full/frame': processed ? observer.runs.full / processed : 0,
          'motion/frame': processed ? observer.runs.motion / processed : 0,
          'refine/frame': processed ? observer.runs.refine / processed : 0,
          'searched/frame': processed ? (observer.searched.full + observer.searched.motion + observer.searched.refine) / processed : 0,
          'rss MB': rssMax / 2 ** 20,
        };
        rows.push(row);
        const stage: Row = { model, mode, clip, streams: n };
        for (const [name, list] of observer.stages) stage[`${name} ms`] = summarize(list).mean;
        for (const [m, sizes] of Object.entries(observer.batches)) stage[`${m} batch`] = sizes.reduce((a, b) => a + b, 0) / sizes.length;
        stageRows.push(stage);
        raw.push({ ...row, stages: Object.fromEntries([...observer.stages].map(([k, v]) => [k, summarize(v)])), latency: lat });
        process.stderr.write(`done: ${model} ${mode} ${clip} x${n}\n`);
       }
      }
    }
    await gallery.close();
    fs.rmSync(galleryDir, { recursive: true, force: true });
  }
  if (recallRows.length) printTable(`tracked against full on every frame of each clip (offline, min face ${minFace})`, recallRows);
  printTable(`streams (min face ${minFace}, recognition every ${interval} frame(s), ${seconds} s per run, ${base.pipeline.workers} workers x ${base.pipeline.workerThreads} threads)`, rows);
  printTable('mean time per stage (ms; embed/attributes/match per frame that needed them) and mean batch sizes', stageRows);
  writeResult('streams', { settings: { clips, counts, models, modes, seconds, warmup, minFace, interval, fps: fpsOf, workers: base.pipeline.workers, threadsPerWorker: base.pipeline.workerThreads, keyframeSplitPixels: base.pipeline.keyframeSplitPixels }, recall: recallRows, runs: raw });
  await runtime.close();
}
