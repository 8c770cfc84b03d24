import os from 'node:os';
import { z } from 'zod';

const batchSchema = (maxBatch: number, maxDelayMs: number) =>
  z
    .strictObject({
      /** Largest batch sent to the model in one call. */
      maxBatch: z.int().min(1).max(256).default(maxBatch),
      /** How long the first queued item may wait for others to join its batch. */
      maxDelayMs: z.number().min(0).max(1000).default(maxDelayMs),
    })
    .prefault({});

/** Configuration of src/pipeline: scheduling, batching, tracking and recognition of live streams. */
export const pipelineSchema = z
  .strictObject({
    /**
     * Frames inside the pipeline at once, all streams together. Bounds memory and latency. A frame
     * passes three model stages (detect, then embed and age/gender), so each analysis worker needs
     * a few frames in flight to stay busy: 8 on a 2-core machine (measured, 8 x 640x360 streams:
     * 8.1 fps each and 18% dropped with 4, 9.2 fps and 8% with 8).
     */
    maxInFlight: z.int().min(1).max(64).default(8),
    /**
     * Analysis worker threads: detection, motion masks, alignment and the models run there, each
     * worker with its own onnxruntime sessions, so the main thread only routes frames and results
     * and every core is busy under load. Default: one per core. 0 runs them on the main thread
     * and its one inference thread (the pre-pool behaviour). With a GPU, 1 worker with larger
     * batches keeps one copy of each model on the device.
     */
    workers: z.int().min(0).max(64).default(Math.max(1, os.availableParallelism())),
    /**
     * onnxruntime intra-op threads per analysis worker: 1, because the workers already use every
     * core. 2 helped a machine with one busy stream (a lone 1080p keyframe then uses both cores:
     * 21.2 fps against 20.6, before keyframeSplitPixels did that) and hurts several (8 x 640x360:
     * p95 136 ms against 87, full mode 2.6% dropped against 0.25%), measured on 2 cores.
     */
    workerThreads: z.int().min(1).max(64).default(1),
    /**
     * Keyframes ('tracked' mode) of pictures with at least this many pixels are searched on two
     * analysis workers at once, each on half of the pyramid's P-Net work, when no other work waits
     * for a worker: the frames after a keyframe wait for its faces, so a lone busy stream would
     * otherwise keep one core idle (measured on 2 cores, one 1080p crowd stream: 21.1-22.0 fps
     * against 19.8-21.3; 4 x 1080p: 3.33 against 2.85 fps each). 1 MP splits 1080p, not 720p and
     * smaller (not measured there). 0 never splits. 'full' mode is never split.
     */
    keyframeSplitPixels: z.int().min(0).default(1_000_000),
    /** Frames of one stream inside the pipeline at once: keeps one busy stream from taking every slot. */
    perStreamInFlight: z.int().min(1).max(8).default(2),
    /** Live frames older than this when their turn comes are dropped ("too-old"): latency stays bounded. */
    maxFrameAgeMs: z.number().min(50).max(60_000).default(1500),
    /** Offline sources (files processed as fast as possible) are paused while this many frames wait. */
    offlineQueue: z.int().min(1).max(64).default(2),
    detect: batchSchema(4, 4),
    embed: batchSchema(32, 4),
    attributes: batchSchema(32, 4),
    recognition: z
      .strictObject({
        /** Re-recognise a tracked face every N processed frames (1: every frame). */
        interval: z.int().min(1).max(10_000).default(5),
        /** Also re-recognise when the face's quality (size x score) grew by this factor over its best so far. */
        qualityGain: z.number().min(1).default(1.25),
        /** Faces smaller than this (shorter box side, px) are tracked but not recognised: tiny faces give unreliable embeddings. */
        minFaceSize: z.number().min(0).default(36),
        /** Faces with a lower detection score are tracked but not recognised. */
        minScore: z.number().min(0).max(1).default(0.9),
      })
      .prefault({}),
    /**
     * An identity "leaves" a stream only after no track has shown it for this long: a face lost
     * for a few frames, or a track that restarts, is not a departure.
     */
    appearanceGraceMs: z.number().min(0).max(600_000).default(2000),
    /** Re-estimate age and gender of a tracked face every N processed frames. */
    attributesInterval: z.int().min(1).max(10_000).default(10),
    tracking: z
      .strictObject({
        /** Minimum IoU between a track's predicted box and a detection to continue it. */
        iouThreshold: z.number().min(0.01).max(0.99).default(0.3),
        /** A track unseen for more than this many frames ends (1 s at 25 fps). */
        maxMisses: z.int().min(0).max(10_000).default(25),
        /** Recent recognitions remembered per track for the identity vote. */
        voteWindow: z.int().min(1).max(1000).default(10),
        /** Share of the vote weight the leading identity needs before the track shows its name. */
        minVoteShare: z.number().min(0).max(1).default(0.5),
        /**
         * When a track's new embedding is less similar than this to its previous one, a different
         * person has taken its place (scene cut, people crossing): the track gets a new id and a
         * fresh vote. Empty: the embedding model's manifest `threshold.switchSimilarity` (cosine
         * scales differ by model: 0.3 for arcface-mbf-112, whose same-person video frames score well
         * above 0.5; 0.89 for faceapi-resnet34-150, where different people still score 0.78-0.89).
         */
        switchSimilarity: z.number().min(-1).max(1).optional(),
      })
      .prefault({}),
  })
  .prefault({});

export type PipelineConfig = z.infer<typeof pipelineSchema>;
