import os from 'node:os';
import { z } from 'zod';
import { gallerySchema } from './sections/gallery.js';
import { historySchema } from './sections/history.js';
import { ingestSchema } from './sections/ingest.js';
import { pipelineSchema } from './sections/pipeline.js';
import { serverSchema } from './sections/server.js';

/**
 * The one configuration schema. Every option says what it does and what happens at its edges;
 * defaults carry their reason. Unknown keys are rejected so a typo is an error, not a silent default.
 * Sections are merged from defaults <- config file <- environment <- command-line flags (see load.ts).
 */

const executionProvider = z.enum(['cuda', 'cpu']);

export const runtimeSchema = z
  .strictObject({
    /** onnxruntime execution providers in order of preference; the first that loads is used and logged. */
    executionProviders: z.array(executionProvider).min(1).default(['cuda', 'cpu']),
    /** Threads inside one operator. Default: every core; inference is the hot path. */
    intraOpThreads: z.int().min(1).max(256).default(Math.max(1, os.availableParallelism())),
    /** Threads across independent graph branches; our models are sequential chains, so 1. */
    interOpThreads: z.int().min(1).max(64).default(1),
    /** onnxruntime graph optimisation level; 'all' fuses conv+activation and is safe for these models. */
    graphOptimization: z.enum(['disabled', 'basic', 'extended', 'all']).default('all'),
    /**
     * Let idle onnxruntime threads spin waiting for work. Off by default: between runs the cores
     * belong to pooling, cropping and other streams, and spinning threads took them (measured:
     * MTCNN on a 640x360 frame ~2x slower with spinning on a 2-core machine).
     */
    spinning: z.boolean().default(false),
    /**
     * Run models on a worker thread. onnxruntime-node runs synchronously on the thread that calls
     * it; on the main thread each model call (tens of ms) would stop ffmpeg reads, HTTP and
     * WebSocket traffic, and the JavaScript work of other frames, which now overlaps with inference.
     */
    inferenceThread: z.boolean().default(true),
    /** Pre-plan memory per input shape. P-Net sees a new shape per pyramid level; the plan is cached per shape. */
    memoryPattern: z.boolean().default(true),
    /**
     * On the CPU provider, load PReLU models (MTCNN, the ArcFace MobileFaceNet) through an exact
     * algebraic rewrite that onnxruntime runs 1.5-3x faster (src/models/graph/prelu.ts); outputs
     * agree with the files as they are to ~1e-6. Off: the files are loaded unchanged.
     */
    rewritePrelu: z.boolean().default(true),
  })
  .prefault({});

export const modelsSchema = z
  .strictObject({
    /** Directory holding model files, laid out as the manifest's `file` paths. */
    dir: z.string().min(1).default('./models'),
    /** Manifest path; empty means the manifest shipped with facestream (models/manifest.json). */
    manifest: z.string().optional(),
    /**
     * Where `facestream models fill` copies from: a local directory or an http(s) base URL with the
     * manifest's layout. Empty: each model's own `url` from the manifest.
     */
    mirror: z.string().optional(),
  })
  .prefault({});

export const detectorSchema = z
  .strictObject({
    /** Smallest face (pixels) the image pyramid looks for. Smaller finds more faces and costs more (1080p: 20 px is ~3x the work of 40 px). */
    minFaceSize: z.number().min(12).max(4096).default(20),
    /** Pyramid scale step; 0.709 (= 1/sqrt 2) is MTCNN's published value. Closer to 1 is slower and finds a little more. */
    scaleFactor: z.number().gt(0.1).lt(0.95).default(0.709),
    /** P-Net, R-Net, O-Net score thresholds (MTCNN's published 0.6/0.7/0.7). */
    thresholds: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1), z.number().min(0).max(1)]).default([0.6, 0.7, 0.7]),
    /** Faces below this final score are dropped from results (0 keeps everything O-Net accepts). */
    minScore: z.number().min(0).max(1).default(0),
  })
  .prefault({});

export const embeddingSchema = z
  .strictObject({
    /** Embedding model id from the manifest; any `task: embedding` model works without code changes. */
    model: z.string().min(1).default('arcface-mbf-112'),
    /** Cosine similarity at or above which two faces are the same person; empty: the model's manifest threshold. */
    minSimilarity: z.number().min(-1).max(1).optional(),
    /** Largest batch sent to the embedding model in one call. */
    maxBatch: z.int().min(1).max(256).default(32),
  })
  .prefault({});

export const attributesSchema = z
  .strictObject({
    /** Estimate age and gender per face. Off saves ~1 ms per face on CPU. */
    enabled: z.boolean().default(true),
    ageModel: z.string().default('age-ssrnet-64'),
    genderModel: z.string().default('gender-ssrnet-64'),
  })
  .prefault({});

export const limitsSchema = z
  .strictObject({
    /** Largest decoded picture in pixels; larger ones are refused before decoding (decompression bombs). 40 MP covers phone cameras. */
    maxImagePixels: z.int().min(1).default(40_000_000),
    /** Largest encoded picture in bytes accepted from a file or an upload. */
    maxImageBytes: z.int().min(1).default(50 * 1024 * 1024),
  })
  .prefault({});

export const configSchema = z.strictObject({
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  runtime: runtimeSchema,
  models: modelsSchema,
  detector: detectorSchema,
  embedding: embeddingSchema,
  attributes: attributesSchema,
  limits: limitsSchema,
  gallery: gallerySchema,
  ingest: ingestSchema,
  pipeline: pipelineSchema,
  server: serverSchema,
  history: historySchema,
});

export type Config = z.infer<typeof configSchema>;
export type RuntimeConfig = Config['runtime'];
export type DetectorConfig = Config['detector'];
export type LimitsConfig = Config['limits'];

/** Every default, in one object. */
export function defaultConfig(): Config {
  return configSchema.parse({});
}
