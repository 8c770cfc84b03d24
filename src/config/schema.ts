import os from 'node:os';
import { z } from 'zod';
import { defaultModelsDir } from '../paths.js';
import { clusterSchema } from './sections/cluster.js';
import { gallerySchema } from './sections/gallery.js';
import { historySchema } from './sections/history.js';
import { ingestSchema } from './sections/ingest.js';
import { mqttSchema } from './sections/mqtt.js';
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
    /**
     * onnxruntime's memory pattern: plan one block per input shape and reuse it. Off by default:
     * MTCNN runs a new shape per pyramid level and per candidate count, each plan takes its own
     * block out of the session's arena, which never gives memory back (a `facestream detect` of 20
     * 1080p frames peaked ~100 MB higher with it), and it saved no measurable CPU time.
     */
    memoryPattern: z.boolean().default(false),
    /**
     * Most items (faces, candidates, frames) per onnxruntime run; a larger batch runs in parts of
     * this size, transparently. Empty: 64 on the CPU provider, where onnxruntime's per-session
     * memory arena keeps the largest run's working set for good (one 800-candidate R-Net batch of a
     * 1080p crowd frame: ~130 MB; parts of 64 are no slower), and no limit on CUDA, where large
     * batches are what a GPU needs.
     */
    maxRunBatch: z.int().min(1).max(1_000_000).optional(),
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
    /**
     * Directory holding model files, laid out as the manifest's `file` paths. Default: the
     * installation's `models/` (whatever the working directory), else a per-user cache (src/paths.ts).
     */
    dir: z.string().min(1).default(() => defaultModelsDir()),
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
    /**
     * How video frames are detected (pictures are always searched whole). 'tracked': the whole
     * picture only on keyframes; in between, P-Net and O-Net look again only around each tracked
     * face and where the motion mask changed outside them (as NVRs gate their detectors by
     * motion, and DeepStream's detector runs every `interval` frames with a tracker between), a
     * few per cent of the work of a keyframe on a typical camera. 'full': the whole picture of
     * every frame (reference parity on every frame, several times the cost).
     */
    mode: z.enum(['tracked', 'full']).default('tracked'),
    /** Stream time between keyframes (ms). A face that appears where nothing moves is found within this. */
    keyframeIntervalMs: z.number().min(0).max(600_000).default(1000),
    /**
     * When motion covers more than tracked.keyframeShare of the picture (a crowd, a moving camera,
     * lights), the next keyframe comes early, but only this many frames after the last. 2: every
     * other frame, about half the cost of full detection on such scenes. Faces that appear between
     * keyframes are reported a frame late, and each late frame counts as a miss: measured against
     * full detection on the moving-camera crowd clip at 25 fps, recall 0.988 with keyframes every
     * other frame and 0.945 with 1 in 5. In frames, not ms: the cost and the per-frame recall of
     * such scenes are per frame, whatever the frame rate.
     */
    motionKeyframeGapFrames: z.int().min(1).max(10_000).default(2),
    tracked: z
      .strictObject({
        /**
         * Side of the window searched around a tracked face, in face sizes; it must hold the face's
         * move between two frames. 2.5: on the Hamilton clip, recall against full detection 0.984
         * instead of 0.969 at 2 (faces moving fast on stage), for about 1.5x the window area.
         */
        windowScale: z.number().min(1.2).max(8).default(2.5),
        /** Motion boxes grow by this share of their size (plus half the minimum face) before they are searched. */
        motionMargin: z.number().min(0).max(4).default(0.25),
        /** Motion windows covering more than this share of the picture make the frame a keyframe instead (see motionKeyframeGapFrames). */
        keyframeShare: z.number().min(0).max(1).default(0.5),
        /**
         * A tracked face missed this many frames in a row is no longer looked for around its last
         * place; the next keyframe or motion finds it again. 8: faces near the score threshold (small,
         * turned, blurred) drop out for a few frames and come back, and full detection finds them again
         * at once (recall on the Hamilton clip 0.978 at 8, 0.969 at 3).
         */
        refineMaxMisses: z.int().min(0).max(1000).default(8),
        /**
         * Also send each tracked face's predicted box straight to O-Net. Measured on the 1080p crowd
         * clip against full detection: recall 0.93 instead of 0.92, but 3.1% extra faces instead of 0.9%.
         */
        seeds: z.boolean().default(false),
      })
      .prefault({}),
    motion: z
      .strictObject({
        /** Motion-mask cell side in pixels: the frame is compared as a grid of cell means (8: 240x135 cells at 1080p). */
        cellSize: z.int().min(2).max(128).default(8),
        /** A cell moved when its mean luma differs from the background by more than this (0-255); above compression noise. */
        threshold: z.number().min(0).max(255).default(10),
        /** Running-average rate of the background per frame: a person who stops becomes background in about 1/alpha frames. */
        backgroundAlpha: z.number().gt(0).max(1).default(0.1),
        /** Groups of fewer moved cells are noise. */
        minCells: z.int().min(1).max(10_000).default(2),
      })
      .prefault({}),
    /**
     * R-Net/O-Net crops of boxes that leave the picture: 'zero' pads the outside with black (the
     * original MTCNN); 'clamp' cuts the box at the border and stretches the rest (facenet-pytorch,
     * the detection parity reference), which puts a face cut by the border in a wrong box
     * (similarity 0.0 instead of 0.86 against the same person).
     */
    cropPadding: z.enum(['zero', 'clamp']).default('zero'),
    /**
     * Still pictures where nothing is found are searched again padded on every side by this
     * fraction of their longer side: a face filling the picture (an ID photo, a tight crop) has
     * no context for MTCNN otherwise. 0 turns it off. Video frames are never padded.
     */
    picturePadding: z.number().min(0).max(1).default(0.25),
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
    /**
     * Pictures sent to the server and enrolled pictures are decoded no larger than this on their
     * longest side (shrunk while loading; coordinates in answers are the picture's own; the
     * CLI's detect, analyze, identify, verify and embed read files at full size). It bounds the
     * memory and detection time of one picture whatever its size (a 40 MP picture: 130-800 MB
     * peak instead of 3.4-8 GB, see SECURITY.md). At 2048 a face must be about
     * 20 px x (longest side / 2048) to be found, e.g. 40 px in a 4032x3024 phone picture. 0: full size.
     */
    maxDecodeSide: z.int().min(0).max(65_535).default(2048),
    /** CPU time one picture decode may take before it is abandoned (sharp's timeout). A 40 MP JPEG takes under 2 s on one core. 0: no limit. */
    decodeTimeoutSeconds: z.int().min(0).max(3600).default(10),
    /**
     * Picture formats accepted from files and uploads: jpeg, png, webp, gif, tiff, heif (AVIF/HEIC)
     * and svg. SVG is off: it is a program (filters, blur) whose decode time is not bounded by its
     * size, so one small request could keep a core busy for minutes.
     */
    pictureFormats: z.array(z.enum(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'svg'])).min(1).default(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif']),
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
  mqtt: mqttSchema,
  history: historySchema,
  /** Cluster mode (sections/cluster.ts, docs/cluster.md); absent: one embedded process, as before. */
  cluster: clusterSchema.optional(),
});

export type Config = z.infer<typeof configSchema>;
export type RuntimeConfig = Config['runtime'];
export type DetectorConfig = Config['detector'];
export type LimitsConfig = Config['limits'];

/** Every default, in one object. */
export function defaultConfig(): Config {
  return configSchema.parse({});
}
