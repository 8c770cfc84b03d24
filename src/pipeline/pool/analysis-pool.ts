import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { FacestreamError, type ErrorCode } from '../../errors.js';
import type { RgbImage } from '../../image/types.js';
import type { InferenceObserver } from '../../models/runtime.js';
import { PACKAGE_ROOT } from '../../paths.js';
import type { FaceAnalyzer } from '../analyzer.js';
import type { FaceAttributes } from '../attributes/ssrnet.js';
import type { FrameDetectorParams, FrameDetectRequest, FrameDetectResult } from '../detect/frame-detector.js';
import type { FaceInPicture } from '../embed/embedder.js';
import type { FrameAnalysis } from './frame-analysis.js';
import { splitKeyframes } from './keyframe-split.js';
import type { AnalysisReply, AnalysisRequest, AnalysisWorkerSetup } from './protocol.js';

/** The compiled worker (tests and the CLI run after `npm run build`; vitest's setup builds when stale). */
export const ANALYSIS_WORKER_FILE = path.join(PACKAGE_ROOT, 'dist', 'src', 'pipeline', 'pool', 'analysis-worker.js');

type Job = { request: AnalysisRequest; resolve: (r: AnalysisReply) => void; reject: (e: Error) => void };

interface Slot {
  worker: Worker;
  ready: boolean;
  job: Job | undefined;
}

export interface AnalysisPoolOptions {
  /** Worker threads (pipeline.workers). */
  workers: number;
  /** onnxruntime intra-op threads per worker (pipeline.workerThreads). */
  threadsPerWorker: number;
  /** Sees every model run of every worker (the server's metrics). */
  onModelRun?: InferenceObserver;
  /**
   * Keyframes of pictures this large or larger are searched on two workers at once when no other
   * work waits for a worker (pipeline.keyframeSplitPixels; 0: never). See keyframe-split.ts.
   */
  keyframeSplitPixels?: number;
}

/** What the pool did, for tests and benchmarks. */
export interface AnalysisPoolStats {
  /** Detection batches whose keyframes were searched on several workers at once. */
  splitDetections: number;
}

/**
 * Frame analysis on a pool of worker threads, each with its own models: detection, motion,
 * alignment, embedding and age/gender all run there, so the main thread only routes frames and
 * results and every core the pool is given stays busy under load. Each worker takes one batch at
 * a time; the pipeline's batchers form the batches (across streams) and dispatch up to
 * `concurrency` of them at once, so a batch is the unit of work a worker takes, as on a GPU.
 * Frames are handed over on SharedArrayBuffers (copied there once when they are not already).
 * A worker that dies fails the batch it held and is replaced.
 */
export class AnalysisPool implements FrameAnalysis {
  readonly concurrency: number;
  readonly stats: AnalysisPoolStats = { splitDetections: 0 };
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private readonly shared = new WeakMap<Uint8Array, Uint8Array>();
  private readonly setup: AnalysisWorkerSetup;
  /** The workers' pyramid step (their detector's), for deciding which keyframes to split. */
  private readonly scaleFactor: number;
  private nextId = 1;
  private closed = false;
  private closing: Promise<void> | undefined;
  private startError: Error | undefined;
  private attributesOn = false;
  private readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];

  constructor(
    analyzer: FaceAnalyzer,
    detection: Omit<FrameDetectorParams, 'minScore' | 'scaleFactor'>,
    private readonly opts: AnalysisPoolOptions,
  ) {
    if (!fs.existsSync(ANALYSIS_WORKER_FILE)) {
      throw new FacestreamError('MODEL_LOAD_FAILED', `the analysis worker ${ANALYSIS_WORKER_FILE} is missing: run \`npm run build\` (or set pipeline.workers to 0)`);
    }
    this.concurrency = Math.max(1, opts.workers);
    this.attributesOn = analyzer.attributes !== undefined;
    this.scaleFactor = analyzer.detector.options.scaleFactor;
    this.setup = {
      manifest: analyzer.runtime.store.manifest,
      modelsDir: analyzer.runtime.store.dir,
      runtime: { ...analyzer.runtime.config, intraOpThreads: opts.threadsPerWorker },
      analyzer: analyzer.config,
      detection,
    };
    for (let i = 0; i < this.concurrency; i++) this.slots.push(this.spawn());
  }

  get hasAttributes(): boolean {
    return this.attributesOn;
  }

  private spawn(): Slot {
    const worker = new Worker(ANALYSIS_WORKER_FILE, { workerData: this.setup });
    worker.unref();
    const slot: Slot = { worker, ready: false, job: undefined };
    worker.on('message', (msg: AnalysisReply) => {
      if (msg.op === 'ready') {
        slot.ready = true;
        if (this.slots.every((s) => s.ready)) for (const w of this.readyWaiters.splice(0)) w.resolve();
        this.pump();
        return;
      }
      if (msg.id === 0 && msg.op === 'error') {
        // The worker could not load its models: every job fails with that reason until closed.
        this.startError = new FacestreamError((msg.code as ErrorCode | undefined) ?? 'MODEL_LOAD_FAILED', msg.message);
        for (const job of this.queue.splice(0)) job.reject(this.startError);
        for (const w of this.readyWaiters.splice(0)) w.reject(this.startError);
        return;
      }
      const job = slot.job;
      slot.job = undefined;
      worker.unref();
      if (job) {
        if (msg.op === 'error') job.reject(new FacestreamError((msg.code as ErrorCode | undefined) ?? 'INFERENCE_FAILED', msg.message));
        else {
          if ('runs' in msg) for (const [model, batch, ms] of msg.runs) this.opts.onModelRun?.(model, batch, ms);
          job.resolve(msg);
        }
      }
      this.pump();
    });
    const fail = (err: Error) => {
      const i = this.slots.indexOf(slot);
      const job = slot.job;
      slot.job = undefined;
      job?.reject(new FacestreamError('INFERENCE_FAILED', `analysis worker failed: ${err.message}`));
      if (i >= 0 && !this.closed) {
        this.slots[i] = this.spawn();
      }
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (!this.closed) fail(new Error(`exited with code ${code}`));
    });
    return slot;
  }

  ready(): Promise<void> {
    if (this.startError) return Promise.reject(this.startError);
    if (this.slots.every((s) => s.ready)) return Promise.resolve();
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (!this.queue.length) return;
      if (!slot.ready || slot.job) continue;
      const job = this.queue.shift()!;
      slot.job = job;
      // While a job is out the worker keeps the process alive; idle, it must not.
      slot.worker.ref();
      slot.worker.postMessage(job.request);
    }
  }

  private submit(build: (id: number) => AnalysisRequest): Promise<AnalysisReply> {
    if (this.closed) return Promise.reject(new FacestreamError('INFERENCE_FAILED', 'the analysis pool was shut down'));
    if (this.startError) return Promise.reject(this.startError);
    return new Promise<AnalysisReply>((resolve, reject) => {
      this.queue.push({ request: build(this.nextId++), resolve, reject });
      this.pump();
    });
  }

  /** The picture on shared memory, copied there once per picture when needed. */
  private share(image: RgbImage): RgbImage {
    const { data } = image;
    if (data.buffer instanceof SharedArrayBuffer) return { width: image.width, height: image.height, data };
    let copy = this.shared.get(data);
    if (!copy) {
      copy = new Uint8Array(new SharedArrayBuffer(data.byteLength));
      copy.set(data);
      this.shared.set(data, copy);
    }
    return { width: image.width, height: image.height, data: copy };
  }

  async detect(requests: readonly FrameDetectRequest[]): Promise<FrameDetectResult[]> {
    const sent = requests.map((r) => ({ ...r, frame: this.share(r.frame) as FrameDetectRequest['frame'] }));
    // Only when no job waits for a worker (the workers may still both be busy: the parts then
    // start as each one frees up): when work already waits, a split would only add the second
    // part's pass over the picture and the faces both parts find to what the workers must do.
    const split = this.queue.length === 0 && this.opts.keyframeSplitPixels ? splitKeyframes(sent, Math.min(this.concurrency, 2), this.opts.keyframeSplitPixels, this.scaleFactor) : undefined;
    if (!split) return this.detectOn(sent);
    this.stats.splitDetections++;
    return split.merge(await Promise.all(split.jobs.map((job) => this.detectOn(job))));
  }

  private async detectOn(requests: FrameDetectRequest[]): Promise<FrameDetectResult[]> {
    const reply = await this.submit((id) => ({ op: 'detect', id, requests }));
    if (reply.op !== 'detect') throw new Error(`unexpected reply ${reply.op}`);
    return reply.results;
  }

  async embed(items: readonly FaceInPicture[]): Promise<Float32Array[]> {
    const sent = items.map((i) => ({ image: this.share(i.image), face: { box: i.face.box, landmarks: i.face.landmarks } }));
    const reply = await this.submit((id) => ({ op: 'embed', id, items: sent }));
    if (reply.op !== 'embed') throw new Error(`unexpected reply ${reply.op}`);
    return reply.vectors;
  }

  async attributes(items: readonly FaceInPicture[]): Promise<FaceAttributes[]> {
    const sent = items.map((i) => ({ image: this.share(i.image), face: { box: i.face.box, landmarks: i.face.landmarks } }));
    const reply = await this.submit((id) => ({ op: 'attributes', id, items: sent }));
    if (reply.op !== 'attributes') throw new Error(`unexpected reply ${reply.op}`);
    return reply.attributes;
  }

  /** Stops the workers: jobs queued or running fail. Every call returns the same shutdown (a second one does not wait for exits that already happened). */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    const err = new FacestreamError('INFERENCE_FAILED', 'the analysis pool was shut down');
    for (const job of this.queue.splice(0)) job.reject(err);
    await Promise.all(
      this.slots.map(async (s) => {
        s.job?.reject(err);
        const exited = new Promise<void>((resolve) => s.worker.once('exit', () => resolve()));
        s.worker.ref();
        s.worker.postMessage({ op: 'close', id: 0 } satisfies AnalysisRequest);
        // A worker stuck in native code still goes, after a grace period.
        const timer = setTimeout(() => void s.worker.terminate(), 10_000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }
}
