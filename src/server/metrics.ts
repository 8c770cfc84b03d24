import os from 'node:os';
import client from 'prom-client';
import type { InferenceObserver } from '../models/runtime.js';
import type { DetectionKind, PipelineObserver, Stage } from '../pipeline/metrics.js';
import type { DropReason } from '../pipeline/result.js';
import { CoresBusyMeter } from './cores-busy.js';

/**
 * The server's Prometheus metrics, updated where things happen (pipeline observer, model runtime
 * observer, stream manager and WebSocket hub events), never assembled from a stats dump at scrape
 * time. Labels name streams by id and models by id: no camera URL or person ever becomes a label.
 * Series a dashboard plots (drops per reason, restarts, errors) are created at zero when their
 * stream or model appears, so "nothing happened" reads as 0, not as no data.
 */

export type ServerStage = Stage | 'decode' | 'capture-to-push';

const DROP_REASONS: DropReason[] = ['stale', 'too-old', 'error', 'stopped'];
const DETECTION_KINDS: DetectionKind[] = ['full', 'motion', 'refine'];
/**
 * Sampling interval of prom-client's event-loop delay histogram, ms. Each sample is the time
 * between two ticks of a timer of this period, so every nodejs_eventloop_lag_* value carries it as
 * a floor: prom-client's default of 10 ms would put an idle loop's p99 at 10 ms, half the 20 ms
 * budget. 2 ms costs ~0.4% of a core more than 10 ms (measured on an idle process).
 */
export const EVENT_LOOP_PRECISION_MS = 2;
export const STREAM_STATES = ['starting', 'live', 'stalled', 'reconnecting', 'stopped', 'failed'] as const;

/** Seconds; from 1 ms (a match, a small batch) to 10 s (a stalled frame). */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

export class ServerMetrics {
  readonly registry = new client.Registry();
  private readonly stage: client.Histogram<'stage'>;
  private readonly received: client.Counter<'stream'>;
  private readonly processed: client.Counter<'stream'>;
  private readonly dropped: client.Counter<'stream' | 'reason'>;
  private readonly faces: client.Counter<'stream'>;
  private readonly fps: client.Gauge<'stream'>;
  private readonly streamState: client.Gauge<'stream' | 'state'>;
  private readonly restarts: client.Counter<'stream'>;
  private readonly batchSize: client.Histogram<'model'>;
  private readonly batchQueue: client.Histogram<'model'>;
  private readonly batchRun: client.Histogram<'model'>;
  private readonly queueDepth: client.Gauge<'queue'>;
  private readonly inference: client.Histogram<'model'>;
  private readonly inferenceErrors: client.Counter<'model'>;
  private readonly wsClients: client.Gauge;
  private readonly wsSent: client.Counter<'type'>;
  private readonly wsDropped: client.Counter;
  private readonly wsBytes: client.Counter;
  private readonly identities: client.Gauge;
  private readonly templates: client.Gauge;
  private readonly httpRequests: client.Counter<'method' | 'route' | 'status'>;
  private readonly httpDuration: client.Histogram<'method' | 'route'>;
  private readonly knownModels = new Set<string>();
  private readonly wsSentByType = new Map<string, client.Counter.Internal>();
  private readonly captureToPush: client.Histogram.Internal<'stage'>;
  private readonly detectionRuns: client.Counter<'stream' | 'kind'>;
  private readonly detectionSearched: client.Counter<'stream' | 'kind'>;
  private readonly cores = new CoresBusyMeter();
  /** Refreshes queue depths from the pipeline; set by the server once the pipeline exists. */
  queueSource: (() => Record<string, number>) | undefined;
  /** Processed FPS of a stream, from the pipeline (set by the server). */
  fpsSource: ((streamId: string) => number | undefined) | undefined;

  /** `nodeId`: cluster mode's node id, added as a `node` label to every series (Prometheus scraping several nodes). */
  constructor(opts: { version?: string; defaultMetrics?: boolean; nodeId?: string } = {}) {
    const r = [this.registry];
    if (opts.nodeId) this.registry.setDefaultLabels({ node: opts.nodeId });
    if (opts.defaultMetrics !== false) client.collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_PRECISION_MS });
    new client.Gauge({ name: 'facestream_build_info', help: 'Always 1; labels say which facestream runs.', labelNames: ['version'], registers: r }).set({ version: opts.version ?? 'unknown' }, 1);
    this.stage = new client.Histogram({
      name: 'facestream_stage_seconds',
      help: 'Time spent per stage: decode (uploaded pictures), detect, embed, attributes, match, track, total (per frame in the pipeline), capture-to-result (capture to result ready), capture-to-push (capture to the message handed to WebSocket clients).',
      labelNames: ['stage'],
      buckets: LATENCY_BUCKETS,
      registers: r,
    });
    this.received = new client.Counter({ name: 'facestream_frames_received_total', help: 'Frames handed to the pipeline, per stream.', labelNames: ['stream'], registers: r });
    this.processed = new client.Counter({ name: 'facestream_frames_processed_total', help: 'Frames fully processed, per stream.', labelNames: ['stream'], registers: r });
    this.dropped = new client.Counter({ name: 'facestream_frames_dropped_total', help: 'Frames dropped, per stream and reason (stale: a newer frame came; too-old: waited past pipeline.maxFrameAgeMs; error; stopped).', labelNames: ['stream', 'reason'], registers: r });
    this.faces = new client.Counter({ name: 'facestream_faces_detected_total', help: 'Faces found in processed frames, per stream.', labelNames: ['stream'], registers: r });
    this.fps = new client.Gauge({ name: 'facestream_stream_fps', help: 'Processed frames per second over the last 5 s, per stream.', labelNames: ['stream'], registers: r });
    this.streamState = new client.Gauge({ name: 'facestream_stream_state', help: '1 for the state each stream is in, 0 for the others.', labelNames: ['stream', 'state'], registers: r });
    this.restarts = new client.Counter({ name: 'facestream_ffmpeg_restarts_total', help: 'ffmpeg processes started again after the first (reconnects, stalls), per stream.', labelNames: ['stream'], registers: r });
    this.batchSize = new client.Histogram({ name: 'facestream_batch_size', help: 'Items per model call (frames for detect, faces for embed and attributes).', labelNames: ['model'], buckets: BATCH_BUCKETS, registers: r });
    this.batchQueue = new client.Histogram({ name: 'facestream_batch_queue_seconds', help: 'How long the oldest item of a batch waited for the batch to be sent.', labelNames: ['model'], buckets: LATENCY_BUCKETS, registers: r });
    this.batchRun = new client.Histogram({ name: 'facestream_batch_run_seconds', help: 'Compute time of one batch.', labelNames: ['model'], buckets: LATENCY_BUCKETS, registers: r });
    this.queueDepth = new client.Gauge({ name: 'facestream_queue_depth', help: 'Items waiting or in flight: in-flight (frames inside the pipeline), waiting (frames queued per stream), detect, embed, attributes (batcher queues).', labelNames: ['queue'], registers: r });
    this.inference = new client.Histogram({ name: 'facestream_inference_seconds', help: 'onnxruntime session run time per model.', labelNames: ['model'], buckets: LATENCY_BUCKETS, registers: r });
    this.inferenceErrors = new client.Counter({ name: 'facestream_inference_errors_total', help: 'Failed model runs per model id ("pipeline": frames whose processing failed).', labelNames: ['model'], registers: r });
    this.wsClients = new client.Gauge({ name: 'facestream_ws_clients', help: 'Connected WebSocket clients.', registers: r });
    this.wsSent = new client.Counter({ name: 'facestream_ws_messages_sent_total', help: 'WebSocket messages sent, per type.', labelNames: ['type'], registers: r });
    this.wsDropped = new client.Counter({ name: 'facestream_ws_messages_dropped_total', help: 'WebSocket messages dropped because a client was too slow (its queue was full).', registers: r });
    this.wsBytes = new client.Counter({ name: 'facestream_ws_bytes_sent_total', help: 'Bytes of WebSocket messages sent.', registers: r });
    this.identities = new client.Gauge({ name: 'facestream_gallery_identities', help: 'Identities in the gallery.', registers: r });
    this.templates = new client.Gauge({ name: 'facestream_gallery_templates', help: 'Templates (enrolled face embeddings) in the gallery.', registers: r });
    this.httpRequests = new client.Counter({ name: 'facestream_http_requests_total', help: 'HTTP requests by route pattern and status.', labelNames: ['method', 'route', 'status'], registers: r });
    this.httpDuration = new client.Histogram({ name: 'facestream_http_request_seconds', help: 'HTTP request duration by route pattern.', labelNames: ['method', 'route'], buckets: LATENCY_BUCKETS, registers: r });
    this.detectionRuns = new client.Counter({
      name: 'facestream_detection_runs_total',
      help: 'Detection runs per stream and kind: full (the whole picture: keyframes, or every frame in full mode), motion (P-Net over motion regions), refine (windows around tracked faces).',
      labelNames: ['stream', 'kind'],
      registers: r,
    });
    this.detectionSearched = new client.Counter({
      name: 'facestream_detection_searched_frames_total',
      help: 'Share of the picture P-Net searched, summed over detection runs (frame-equivalents: a full run adds 1), per stream and kind. rate() of it over rate(facestream_frames_processed_total) is the mean share of each frame searched.',
      labelNames: ['stream', 'kind'],
      registers: r,
    });
    const cores = this.cores.start();
    new client.Gauge({
      name: 'facestream_cores_busy',
      help: 'CPU seconds per second of the facestream process (all its threads; not its ffmpeg children) over the last 5 s: how many cores it keeps busy.',
      registers: r,
      collect() {
        this.set(cores.coresBusy());
      },
    });
    new client.Gauge({ name: 'facestream_cores_available', help: 'Cores this process may use (os.availableParallelism()), the ceiling of facestream_cores_busy.', registers: r }).set(os.availableParallelism());
    for (const s of ['detect', 'track', 'embed', 'attributes', 'match', 'total', 'capture-to-result', 'decode'] satisfies ServerStage[]) this.stage.labels(s);
    this.captureToPush = this.stage.labels('capture-to-push');
    for (const q of ['in-flight', 'waiting', 'detect', 'embed', 'attributes']) this.queueDepth.set({ queue: q }, 0);
    this.wsClients.set(0);
    this.wsDropped.inc(0);
    this.inferenceErrors.inc({ model: 'pipeline' }, 0);
  }

  /** A stream joined: create its series at zero. */
  streamAdded(streamId: string): void {
    this.received.inc({ stream: streamId }, 0);
    this.processed.inc({ stream: streamId }, 0);
    this.faces.inc({ stream: streamId }, 0);
    for (const reason of DROP_REASONS) this.dropped.inc({ stream: streamId, reason }, 0);
    this.restarts.inc({ stream: streamId }, 0);
    this.fps.set({ stream: streamId }, 0);
    for (const kind of DETECTION_KINDS) {
      this.detectionRuns.inc({ stream: streamId, kind }, 0);
      this.detectionSearched.inc({ stream: streamId, kind }, 0);
    }
  }

  /** A stream was deleted: its series go away instead of freezing at their last value. */
  streamRemoved(streamId: string): void {
    for (const m of [this.received, this.processed, this.faces, this.restarts, this.fps]) m.remove({ stream: streamId });
    for (const reason of DROP_REASONS) this.dropped.remove({ stream: streamId, reason });
    for (const state of STREAM_STATES) this.streamState.remove({ stream: streamId, state });
    for (const kind of DETECTION_KINDS) {
      this.detectionRuns.remove({ stream: streamId, kind });
      this.detectionSearched.remove({ stream: streamId, kind });
    }
  }

  setStreamState(streamId: string, state: string): void {
    for (const s of STREAM_STATES) this.streamState.set({ stream: streamId, state: s }, s === state ? 1 : 0);
    if (state !== 'live') this.fps.set({ stream: streamId }, 0);
  }

  ffmpegRestarts(streamId: string, n: number): void {
    this.restarts.inc({ stream: streamId }, n);
  }

  observeStage(stage: ServerStage, ms: number): void {
    this.stage.observe({ stage }, ms / 1000);
  }

  galleryCounts(counts: { identities: number; templates: number }): void {
    this.identities.set(counts.identities);
    this.templates.set(counts.templates);
  }

  wsClientCount(n: number): void {
    this.wsClients.set(n);
  }

  /** Called per message per client: label children are looked up once, not hashed per call. */
  wsMessageSent(type: string, bytes: number, captureToPushMs?: number): void {
    let sent = this.wsSentByType.get(type);
    if (!sent) this.wsSentByType.set(type, (sent = this.wsSent.labels(type)));
    sent.inc();
    this.wsBytes.inc(bytes);
    if (captureToPushMs !== undefined) this.captureToPush.observe(captureToPushMs / 1000);
  }

  wsMessagesDropped(n = 1): void {
    this.wsDropped.inc(n);
  }

  httpRequest(method: string, route: string, status: number, seconds: number): void {
    this.httpRequests.inc({ method, route, status: String(status) });
    this.httpDuration.observe({ method, route }, seconds);
  }

  private refreshQueues(): void {
    const depths = this.queueSource?.();
    if (depths) for (const [q, n] of Object.entries(depths)) this.queueDepth.set({ queue: q }, n);
  }

  /** The pipeline's observer. */
  readonly pipelineObserver: PipelineObserver = {
    frameReceived: (streamId) => {
      this.received.inc({ stream: streamId });
    },
    frameProcessed: (streamId, faces) => {
      this.processed.inc({ stream: streamId });
      if (faces) this.faces.inc({ stream: streamId }, faces);
      const fps = this.fpsSource?.(streamId);
      if (fps !== undefined) this.fps.set({ stream: streamId }, fps);
    },
    frameDropped: (streamId, reason) => {
      this.dropped.inc({ stream: streamId, reason });
    },
    stage: (stage, ms) => this.observeStage(stage, ms),
    batch: (model, size, queueMs, runMs) => {
      this.batchSize.observe({ model }, size);
      this.batchQueue.observe({ model }, queueMs / 1000);
      this.batchRun.observe({ model }, runMs / 1000);
      this.refreshQueues();
    },
    queueDepth: (queue, depth) => {
      this.queueDepth.set({ queue }, depth);
    },
    inferenceError: (stage) => {
      this.inferenceErrors.inc({ model: stage });
    },
    detectionRun: (streamId, kind, searchedShare) => {
      this.detectionRuns.inc({ stream: streamId, kind });
      // A share outside [0, 1] is a caller's bug; a counter must never go down.
      if (searchedShare > 0) this.detectionSearched.inc({ stream: streamId, kind }, Math.min(1, searchedShare));
    },
  };

  /** The model runtime's observer (ModelRuntime.observer). */
  readonly inferenceObserver: InferenceObserver = (modelId, _batch, ms, error) => {
    if (!this.knownModels.has(modelId)) {
      this.knownModels.add(modelId);
      this.inferenceErrors.inc({ model: modelId }, 0);
    }
    if (error) this.inferenceErrors.inc({ model: modelId });
    else this.inference.observe({ model: modelId }, ms / 1000);
  };

  /** Stops the cores-busy sampler (its timer is unref'd, so forgetting this only leaks the timer). */
  close(): void {
    this.cores.stop();
  }

  contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
