import { rootLogger, type Logger } from '../log.js';
import type { RgbImage } from '../image/types.js';
import type { FaceAnalyzer } from './analyzer.js';
import type { FaceAttributes } from './attributes/ssrnet.js';
import { AppearanceLog } from './appearances.js';
import { BatcherRejection, DynamicBatcher } from './batcher.js';
import { PipelineBus } from './bus.js';
import type { DetectedFace } from './detect/mtcnn.js';
import { StreamDetection, type DetectionPolicy } from './detect/detection-schedule.js';
import type { FrameDetectRequest, FrameDetectResult } from './detect/frame-detector.js';
import { AnalysisPool } from './pool/analysis-pool.js';
import { LocalFrameAnalysis, type FrameAnalysis } from './pool/frame-analysis.js';
import { cosineSimilarity } from './embed/vector.js';
import { noopObserver, type PipelineObserver } from './metrics.js';
import { chargeFairShare, pickFairShare, wakeFairShare } from './fair-share.js';
import { OrderedGate } from './ordered-gate.js';
import type { DetailedFace, DropReason, FrameResult, PipelineFrame } from './result.js';
import { IdentityVoter, voteWeight } from './track/identity-vote.js';
import { IouTracker, type Track } from './track/tracker.js';
import type { PipelineConfig } from '../config/sections/pipeline.js';

/** What the pipeline needs of a gallery (src/index's Gallery provides it). */
export interface GalleryLike {
  readonly modelId: string;
  minSimilarity: number;
  identify(vector: Float32Array, k?: number): { match: { identityId: string; name: string; similarity: number } | null; candidates: unknown[] };
}

export interface StreamOptions {
  /** 'live': newest frame wins, stale ones are dropped. 'offline': the source is paused instead, nothing dropped. */
  mode: 'live' | 'offline';
  /** Smallest face to detect in this stream (default: config detector.minFaceSize). */
  minFaceSize?: number;
  /** Re-recognise tracked faces every N frames (default: config pipeline.recognition.interval). */
  recognitionInterval?: number;
  /** Detection mode and keyframe interval of this stream (default: config detector.mode, detector.keyframeIntervalMs). */
  detection?: { mode?: 'full' | 'tracked'; keyframeIntervalMs?: number };
  /** The source, for pausing offline streams. */
  source?: { pause(): void; resume(): void };
}

export interface StreamStats {
  received: number;
  processed: number;
  dropped: Record<DropReason, number>;
  faces: number;
  embedded: number;
  /** Processed frames per second over the last few seconds. */
  fps: number;
  lastLatencyMs: number | null;
}

/** Per-track state the pipeline keeps beside the tracker's geometry. */
interface TrackInfo {
  voter: IdentityVoter;
  lastEmbedding: Float32Array | null;
  lastRecognizedSeq: number;
  bestQuality: number;
  lastAttributesSeq: number;
  age: number | null;
  genderScore: number | null;
  attrSamples: number;
}

class StreamSlot {
  readonly queue: PipelineFrame[] = [];
  inFlight = 0;
  ticket = 0;
  paused = false;
  readonly trackGate = new OrderedGate();
  readonly emitGate = new OrderedGate();
  readonly tracker: IouTracker;
  readonly trackInfo = new Map<number, TrackInfo>();
  readonly appearances: AppearanceLog;
  readonly stats: StreamStats = { received: 0, processed: 0, dropped: { stale: 0, 'too-old': 0, error: 0, stopped: 0 }, faces: 0, embedded: 0, fps: 0, lastLatencyMs: null };
  private readonly processedTimes: number[] = [];
  /**
   * The last processed frame and its faces, for enrolling a face seen live by track id. The
   * pipeline keeps its reference to the frame's memory until the next processed frame replaces it:
   * a reader that awaits anything while reading it takes `frame.hold()` first.
   */
  last: { frame: PipelineFrame; faces: DetailedFace[] } | undefined;
  removed = false;
  /** Fair-queueing clock: compute time this stream has been given, in ms. */
  virtualTime = 0;
  /** Smoothed processing cost of one frame of this stream, in ms. */
  costMs = 0;
  /** When keyframes are due, which tracked faces to look for, the motion background. */
  readonly detection: StreamDetection;
  /** `WxH` of the last tracked frame. */
  frameSize: string | undefined;

  constructor(
    readonly id: string,
    readonly options: StreamOptions,
    config: PipelineConfig,
    bus: PipelineBus,
    policy: DetectionPolicy,
  ) {
    const own = options.detection;
    this.detection = new StreamDetection({ ...policy, mode: own?.mode ?? policy.mode, keyframeIntervalMs: own?.keyframeIntervalMs ?? policy.keyframeIntervalMs });
    this.tracker = new IouTracker({ iouThreshold: config.tracking.iouThreshold, maxMisses: config.tracking.maxMisses });
    this.appearances = new AppearanceLog(id, bus, config.appearanceGraceMs);
  }

  /** A frame is waiting to be admitted (fair-share.ts). */
  get waiting(): boolean {
    return this.queue.length > 0;
  }

  markProcessed(now: number): void {
    this.stats.processed++;
    this.processedTimes.push(now);
    while (this.processedTimes.length && now - this.processedTimes[0] > 5000) this.processedTimes.shift();
    const span = this.processedTimes.length > 1 ? (now - this.processedTimes[0]) / 1000 : 0;
    this.stats.fps = span > 0 ? (this.processedTimes.length - 1) / span : 0;
  }
}

interface FaceJob {
  image: RgbImage;
  face: DetectedFace;
}

/**
 * The multi-stream recognition pipeline: frames from every stream are admitted round-robin into
 * a bounded set of in-flight frames; detection, embedding and age/gender each go through a
 * dynamic batcher shared by all streams; tracking, identity votes and emission run in frame order
 * per stream. Results are published on `bus`.
 */
export class Pipeline {
  readonly bus = new PipelineBus();
  private readonly streams = new Map<string, StreamSlot>();
  private order: string[] = [];
  private rr = 0;
  private inFlight = 0;
  private readonly analysis: FrameAnalysis;
  private readonly policy: DetectionPolicy;
  private readonly detectBatcher: DynamicBatcher<FrameDetectRequest, FrameDetectResult>;
  private readonly embedBatcher: DynamicBatcher<FaceJob, Float32Array>;
  private readonly attributesBatcher: DynamicBatcher<FaceJob, FaceAttributes> | undefined;
  private readonly logger: Logger;
  private observer: PipelineObserver;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  gallery: GalleryLike | undefined;

  constructor(
    private readonly analyzer: FaceAnalyzer,
    private readonly config: PipelineConfig,
    opts: { gallery?: GalleryLike; logger?: Logger; observer?: PipelineObserver; analysis?: FrameAnalysis } = {},
  ) {
    this.gallery = opts.gallery;
    this.logger = opts.logger ?? rootLogger();
    this.observer = opts.observer ?? noopObserver;
    const queueCap = config.maxInFlight * 64;
    const detector = analyzer.config.detector;
    this.policy = {
      mode: detector.mode,
      keyframeIntervalMs: detector.keyframeIntervalMs,
      motionKeyframeGapFrames: detector.motionKeyframeGapFrames,
      refineMaxMisses: detector.tracked.refineMaxMisses,
      motionCellSize: detector.motion.cellSize,
    };
    const params = { tracked: detector.tracked, motion: detector.motion };
    const analysis: FrameAnalysis =
      opts.analysis ??
      (config.workers > 0
        ? new AnalysisPool(analyzer, params, { workers: config.workers, threadsPerWorker: config.workerThreads, keyframeSplitPixels: config.keyframeSplitPixels, onModelRun: (...run) => analyzer.runtime.observer?.(...run) })
        : new LocalFrameAnalysis(analyzer, params));
    this.analysis = analysis;
    // Each batcher may have as many batches out as the analysis runs at once; the pool queues
    // what exceeds its workers, so detection, embedding and age/gender share them.
    const concurrency = analysis.concurrency;
    this.detectBatcher = new DynamicBatcher((jobs) => analysis.detect(jobs), { ...config.detect, maxQueue: config.maxInFlight, concurrency });
    this.embedBatcher = new DynamicBatcher((jobs) => analysis.embed(jobs), { ...config.embed, maxQueue: queueCap, concurrency });
    this.attributesBatcher = analysis.hasAttributes ? new DynamicBatcher((jobs) => analysis.attributes(jobs), { ...config.attributes, maxQueue: queueCap, concurrency }) : undefined;
    this.detectBatcher.onBatch = (n, q, r) => this.observer.batch('detect', n, q, r);
    this.embedBatcher.onBatch = (n, q, r) => this.observer.batch('embed', n, q, r);
    if (this.attributesBatcher) this.attributesBatcher.onBatch = (n, q, r) => this.observer.batch('attributes', n, q, r);
  }

  /** Resolves once the analysis workers have loaded their models (frames offered earlier wait for them). */
  ready(): Promise<void> {
    return this.analysis.ready();
  }

  setObserver(observer: PipelineObserver): void {
    this.observer = observer;
  }

  addStream(id: string, options: StreamOptions): void {
    if (this.streams.has(id)) throw new Error(`stream ${id} already in the pipeline`);
    this.streams.set(id, new StreamSlot(id, options, this.config, this.bus, this.policy));
    this.order.push(id);
    this.bus.emit('stream-added', id);
  }

  /** Removes a stream: waiting frames are dropped, in-flight ones finish; its people leave. */
  removeStream(id: string): void {
    const slot = this.streams.get(id);
    if (!slot) return;
    slot.removed = true;
    for (const f of slot.queue.splice(0)) this.dropUnread(slot, f, 'stopped');
    slot.appearances.clear(Date.now());
    this.streams.delete(id);
    this.order = this.order.filter((s) => s !== id);
    this.bus.emit('stream-removed', id);
  }

  hasStream(id: string): boolean {
    return this.streams.has(id);
  }

  streamStats(id: string): StreamStats | undefined {
    return this.streams.get(id)?.stats;
  }

  /** Smoothed processing cost of one frame of a stream (ms); 0 before its first frame. */
  streamCostMs(id: string): number | undefined {
    return this.streams.get(id)?.costMs;
  }

  appearances(id: string): AppearanceLog | undefined {
    return this.streams.get(id)?.appearances;
  }

  /** The last processed frame of a stream with its faces (box, landmarks, track id). */
  lastFrame(id: string) {
    return this.streams.get(id)?.last;
  }

  queueDepths(): { inFlight: number; detect: number; embed: number; attributes: number; waiting: number } {
    let waiting = 0;
    for (const s of this.streams.values()) waiting += s.queue.length;
    return { inFlight: this.inFlight, detect: this.detectBatcher.queued, embed: this.embedBatcher.queued, attributes: this.attributesBatcher?.queued ?? 0, waiting };
  }

  /**
   * Hands a frame to the pipeline. Live streams keep only the newest waiting frame (the older one is
   * dropped as stale); offline streams queue and pause their source when the queue is full.
   */
  offer(frame: PipelineFrame): void {
    const slot = this.streams.get(frame.streamId);
    if (!slot || this.closed) return;
    slot.stats.received++;
    this.observer.frameReceived(slot.id);
    wakeFairShare([...this.streams.values()], slot);
    if (slot.options.mode === 'live') {
      for (const old of slot.queue.splice(0)) this.dropUnread(slot, old, 'stale');
      slot.queue.push(frame);
    } else {
      slot.queue.push(frame);
      if (slot.queue.length >= this.config.offlineQueue && !slot.paused && slot.options.source) {
        slot.paused = true;
        slot.options.source.pause();
      }
    }
    this.schedule();
  }

  /** Resolves when no frame is waiting or in flight (offline runs use it to finish). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    if (this.inFlight > 0) return false;
    for (const s of this.streams.values()) if (s.queue.length) return false;
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const id of [...this.streams.keys()]) this.removeStream(id);
    await this.idle();
    this.detectBatcher.close();
    this.embedBatcher.close();
    this.attributesBatcher?.close();
    await this.analysis.close();
  }

  private drop(slot: StreamSlot, frame: PipelineFrame, reason: DropReason): void {
    slot.stats.dropped[reason]++;
    this.observer.frameDropped(slot.id, reason);
    this.bus.emit('dropped', { streamId: slot.id, seq: frame.seq, reason });
  }

  /**
   * Drops a frame that never left its stream's queue: nothing has read it, so its memory goes back
   * to its source (Frame.release). Frames dropped later (an error, a stop mid-flight) may still be
   * read by a worker or a listener, and are left to the garbage collector.
   */
  private dropUnread(slot: StreamSlot, frame: PipelineFrame, reason: DropReason): void {
    this.drop(slot, frame, reason);
    frame.release?.();
  }

  /** Fair admission: see fair-share.ts; each frame is charged its stream's measured cost. */
  private schedule(): void {
    while (this.inFlight < this.config.maxInFlight && this.order.length) {
      const slots = this.order.map((id) => this.streams.get(id)!);
      const at = pickFairShare(slots, this.rr, this.config.perStreamInFlight);
      if (at < 0) break;
      const picked = slots[at];
      this.rr = (at + 1) % this.order.length;
      chargeFairShare(picked);
      const frame = picked.queue.shift()!;
      if (picked.paused && picked.queue.length < this.config.offlineQueue) {
        picked.paused = false;
        picked.options.source?.resume();
      }
      if (picked.options.mode === 'live' && Date.now() - frame.capturedAt > this.config.maxFrameAgeMs) {
        this.dropUnread(picked, frame, 'too-old');
        continue;
      }
      this.inFlight++;
      picked.inFlight++;
      const ticket = picked.ticket++;
      void this.process(picked, frame, ticket).finally(() => {
        this.inFlight--;
        picked.inFlight--;
        this.schedule();
        if (this.isIdle()) for (const w of this.idleWaiters.splice(0)) w();
      });
    }
    this.observer.queueDepth('in-flight', this.inFlight);
  }

  private async process(slot: StreamSlot, frame: PipelineFrame, ticket: number): Promise<void> {
    let passedTrack = false;
    let passedEmit = false;
    const start = performance.now();
    // Planned here, in the stream's order. A 'follow' frame's search follows the tracks of the
    // frame before, so it waits for that frame's tracking; a keyframe searches the whole picture
    // at once, beside the frames before it (other streams' frames fill the workers meanwhile).
    try {
      // Before the first await: frames are planned in the order they were admitted.
      const detectionPlan = slot.detection.admit(frame);
      const follows = detectionPlan.kind === 'follow';
      if (follows) await slot.trackGate.enter(ticket);
      const detectStart = performance.now();
      const minFaceSize = slot.options.minFaceSize ?? this.analyzer.detector.options.minFaceSize;
      const detection = await this.detectBatcher.submit(slot.detection.request(frame, detectionPlan, slot.tracker, minFaceSize));
      slot.detection.done(frame, detection);
      for (const run of detection.runs) this.observer.detectionRun(slot.id, run.kind, run.share);
      const faces = detection.faces;
      this.observer.stage('detect', performance.now() - detectStart);

      if (!follows) await slot.trackGate.enter(ticket);
      const trackStart = performance.now();
      // A camera that changed resolution starts its tracks over: old boxes are in other pixels.
      const resized = slot.frameSize !== undefined && slot.frameSize !== `${frame.width}x${frame.height}`;
      slot.frameSize = `${frame.width}x${frame.height}`;
      const cleared = resized ? slot.tracker.clear() : [];
      const update = slot.tracker.update(frame.seq, faces);
      const plan = this.plan(slot, frame, update.tracks);
      for (const t of [...cleared, ...update.ended]) {
        slot.trackInfo.delete(t.id);
        slot.appearances.end(t.id, frame.capturedAt);
      }
      slot.trackGate.leave(ticket);
      passedTrack = true;
      this.observer.stage('track', performance.now() - trackStart);

      const jobs = (idx: number[]) => idx.map((i) => ({ image: frame, face: faces[i] }));
      const embedStart = performance.now();
      const [vectors, attributes] = await Promise.all([
        plan.embed.length ? Promise.all(jobs(plan.embed).map((j) => this.embedBatcher.submit(j))) : [],
        plan.attributes.length && this.attributesBatcher ? Promise.all(jobs(plan.attributes).map((j) => this.attributesBatcher!.submit(j))) : [],
      ]);
      if (plan.embed.length) this.observer.stage('embed', performance.now() - embedStart);
      if (plan.attributes.length) this.observer.stage('attributes', performance.now() - embedStart);

      const matchStart = performance.now();
      const matches = vectors.map((v) => this.gallery!.identify(v, 5).match);
      if (vectors.length) this.observer.stage('match', performance.now() - matchStart);

      await slot.emitGate.enter(ticket);
      const result = this.finish(slot, frame, faces, update.tracks, plan, vectors, matches, attributes);
      slot.emitGate.leave(ticket);
      passedEmit = true;
      if (slot.removed) return;
      const cost = performance.now() - start;
      slot.costMs = slot.costMs === 0 ? cost : 0.8 * slot.costMs + 0.2 * cost;
      slot.markProcessed(Date.now());
      slot.stats.faces += faces.length;
      slot.stats.embedded += vectors.length;
      slot.stats.lastLatencyMs = result.processedAt - frame.capturedAt;
      this.observer.stage('total', performance.now() - start);
      this.observer.stage('capture-to-result', result.processedAt - frame.capturedAt);
      this.observer.frameProcessed(slot.id, faces.length);
      this.bus.emit('frame', result, frame, slot.last!.faces);
    } catch (err) {
      if (!passedTrack) slot.trackGate.skip(ticket);
      if (!passedEmit) slot.emitGate.skip(ticket);
      if (err instanceof BatcherRejection && err.reason === 'closed') {
        this.drop(slot, frame, 'stopped');
        return;
      }
      this.observer.inferenceError('pipeline');
      this.logger.error({ stream: slot.id, seq: frame.seq, err: (err as Error).message }, 'frame processing failed');
      this.drop(slot, frame, 'error');
    }
  }

  private newVoter(): IdentityVoter {
    return new IdentityVoter({ window: this.config.tracking.voteWindow, minShare: this.config.tracking.minVoteShare });
  }

  /** Which faces need an embedding (recognition) and which need age/gender in this frame. */
  private plan(slot: StreamSlot, frame: PipelineFrame, tracks: Track[]): { embed: number[]; attributes: number[] } {
    const rec = this.config.recognition;
    const interval = slot.options.recognitionInterval ?? rec.interval;
    const embed: number[] = [];
    const attributes: number[] = [];
    tracks.forEach((track, i) => {
      let info = slot.trackInfo.get(track.id);
      if (!info) {
        info = {
          voter: this.newVoter(),
          lastEmbedding: null,
          lastRecognizedSeq: -Infinity,
          bestQuality: 0,
          lastAttributesSeq: -Infinity,
          age: null,
          genderScore: null,
          attrSamples: 0,
        };
        slot.trackInfo.set(track.id, info);
      }
      const [x1, y1, x2, y2] = track.box;
      const size = Math.min(x2 - x1, y2 - y1);
      const score = track.detection.score;
      if (this.gallery && size >= rec.minFaceSize && score >= rec.minScore) {
        const quality = size * score;
        if (frame.seq - info.lastRecognizedSeq >= interval || quality > info.bestQuality * rec.qualityGain) {
          embed.push(i);
          info.lastRecognizedSeq = frame.seq;
          info.bestQuality = Math.max(info.bestQuality, quality);
        }
      }
      if (this.attributesBatcher && size >= rec.minFaceSize && frame.seq - info.lastAttributesSeq >= this.config.attributesInterval) {
        attributes.push(i);
        info.lastAttributesSeq = frame.seq;
      }
    });
    return { embed, attributes };
  }

  private finish(
    slot: StreamSlot,
    frame: PipelineFrame,
    faces: DetectedFace[],
    tracks: Track[],
    plan: { embed: number[]; attributes: number[] },
    vectors: Float32Array[],
    matches: ({ identityId: string; name: string; similarity: number } | null)[],
    attributes: FaceAttributes[],
  ): FrameResult {
    const gallery = this.gallery;
    plan.embed.forEach((faceIndex, k) => {
      const track = tracks[faceIndex];
      let info = slot.trackInfo.get(track.id);
      if (!info || !gallery) return;
      if (info.lastEmbedding && cosineSimilarity(info.lastEmbedding, vectors[k]) < (this.config.tracking.switchSimilarity ?? this.analyzer.embedder.defaultSwitchSimilarity)) {
        const old = slot.tracker.renew(track);
        slot.trackInfo.delete(old);
        slot.appearances.end(old, frame.capturedAt);
        info = { ...info, voter: this.newVoter(), age: null, genderScore: null, attrSamples: 0 };
        slot.trackInfo.set(track.id, info);
      }
      info.lastEmbedding = vectors[k];
      const [x1, y1, x2, y2] = faces[faceIndex].box;
      const m = matches[k];
      info.voter.add({
        identityId: m?.identityId ?? null,
        name: m?.name ?? null,
        similarity: m?.similarity ?? 0,
        weight: voteWeight(Math.min(x2 - x1, y2 - y1), m?.similarity ?? 0, gallery.minSimilarity, m !== null),
      });
    });
    plan.attributes.forEach((faceIndex, k) => {
      const info = slot.trackInfo.get(tracks[faceIndex].id);
      if (!info) return;
      // Running mean over the track: single-frame age estimates jitter by several years.
      info.attrSamples++;
      const a = attributes[k];
      info.age = info.age === null ? a.age : info.age + (a.age - info.age) / info.attrSamples;
      info.genderScore = info.genderScore === null ? a.genderScore : info.genderScore + (a.genderScore - info.genderScore) / info.attrSamples;
    });
    const embedded = new Map(plan.embed.map((faceIndex, k) => [faceIndex, vectors[k]]));
    const resultFaces = faces.map((face, i) => {
      const track = tracks[i];
      const info = slot.trackInfo.get(track.id);
      const decision = info?.voter.decide() ?? null;
      slot.appearances.observe(track.id, decision ? { id: decision.id, name: decision.name } : null, frame.capturedAt);
      return {
        trackId: track.id,
        box: face.box,
        score: face.score,
        landmarks: face.landmarks,
        identity: decision ? { id: decision.id, name: decision.name, similarity: decision.similarity } : null,
        age: info?.age === null || info?.age === undefined ? null : Math.round(info.age),
        gender: info?.genderScore === null || info?.genderScore === undefined ? null : info.genderScore > 0.5 ? 'male' : 'female',
        detection: face,
        embedding: embedded.get(i) ?? null,
      } satisfies DetailedFace;
    });
    slot.appearances.flush(frame.capturedAt);
    // The frame it replaces is no longer the pipeline's to keep; readers that keep it hold it.
    const replaced = slot.last?.frame;
    slot.last = { frame, faces: resultFaces };
    replaced?.release?.();
    return {
      streamId: slot.id,
      seq: frame.seq,
      pts: frame.pts,
      capturedAt: frame.capturedAt,
      processedAt: Date.now(),
      width: frame.width,
      height: frame.height,
      ...(frame.sizeChangedFrom ? { sizeChangedFrom: frame.sizeChangedFrom } : {}),
      faces: resultFaces.map(({ detection: _d, embedding: _e, ...rest }) => rest),
    };
  }
}
