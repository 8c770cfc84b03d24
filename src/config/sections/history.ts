import { z } from 'zod';

/**
 * Configuration of src/history: the appearance history (who was seen, when, on which stream) and
 * the face library of unknown people. It stores pictures of faces, which is personal data: every
 * limit below is enforced continuously, and unknown people can be left out entirely.
 * See schema.ts for conventions.
 */

const retention = (days: number, maxGiB: number) =>
  z
    .strictObject({
      /** Appearances that ended longer ago than this many days are deleted (fractions allowed; 0: no age limit). */
      days: z.number().min(0).default(days),
      /** Total bytes (face crops, snapshots, embeddings) kept for this kind; the oldest appearances go first (0: no size limit). */
      maxBytes: z.int().min(0).default(maxGiB * 1024 ** 3),
    })
    .prefault({});

export const historySchema = z
  .strictObject({
    /** Record appearances. Off: nothing is stored and the history routes answer 404. */
    enabled: z.boolean().default(true),
    /** Where the database and pictures go; empty: `history` inside server.dataDir. */
    dir: z.string().optional(),
    /** Appearances of enrolled people. */
    known: retention(30, 5),
    /**
     * Appearances of people the gallery does not know. `enabled: false` stores nothing about them
     * (no row, no picture, no embedding, no cluster) and deletes what was stored before.
     */
    unknown: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** A week: long enough to notice a stranger who keeps coming back and name them. */
        days: z.number().min(0).default(7),
        maxBytes: z.int().min(0).default(2 * 1024 ** 3),
      })
      .prefault({}),
    /** How often retention runs (also after each write that passed a size limit). */
    retentionIntervalSeconds: z.number().min(0.1).default(60),
    /** The best face of each appearance, as a small JPEG square around the face. */
    crop: z
      .strictObject({
        /** Side in pixels. 160 keeps the face ~90 px wide: enough to enroll from (gallery.enrollment.minFaceSize 40). */
        size: z.int().min(64).max(512).default(160),
        /** Square side as a multiple of the face box's longer side: context for the detector when a crop is enrolled. */
        margin: z.number().min(1).max(3).default(1.8),
        quality: z.int().min(10).max(100).default(85),
      })
      .prefault({}),
    /** The whole frame at the moment of the best face. */
    snapshot: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** Wider frames are scaled down to this width. */
        maxWidth: z.int().min(64).max(7680).default(640),
        quality: z.int().min(10).max(100).default(70),
      })
      .prefault({}),
    /**
     * Appearances waiting to be written (crop, snapshot, database row). When full, new ones are
     * dropped and counted (facestream_history_dropped_total): the pipeline never waits on the disk.
     */
    queueSize: z.int().min(1).max(100_000).default(256),
    /**
     * Tracks seen in fewer processed frames than this are not stored (detector noise, a face crossing
     * the edge), unless a live event (WebSocket, MQTT) already gave out their appearance's id and URLs.
     */
    minFrames: z.int().min(1).default(3),
    /** An appearance ends when its track has not been seen for this many processed frames of its stream (pipeline.tracking.maxMisses + 1 by default). */
    endAfterFrames: z.int().min(1).optional(),
    /** ...or for this long, whatever the frame count (a stalled or stopped stream). */
    endAfterMs: z.int().min(100).default(5000),
    /** Candidate best faces kept per open appearance (by size x score x frontality); the sharpest of them is stored. */
    candidates: z.int().min(1).max(10).default(3),
    clustering: z
      .strictObject({
        /**
         * Cosine similarity between an unknown appearance's embedding and a cluster's centroid at or
         * above which the appearance joins the cluster. Empty: the embedding model's manifest
         * `threshold.clusterSimilarity`, measured on LFW for each model (README, Face library):
         * similarities of different models live on different scales (arcface-mbf-112's 0.45 would
         * put every unknown face of faceapi-resnet34-150 into one cluster).
         */
        threshold: z.number().min(-1).max(1).optional(),
      })
      .prefault({}),
    /** When an identity is removed from the gallery, remove its appearances too (the right to be forgotten). */
    forgetRemovedIdentities: z.boolean().default(true),
    /** Best crops of a cluster enrolled when it is named (each still passes the enrollment quality gates). */
    enrollCrops: z.int().min(1).max(20).default(5),
  })
  .prefault({});

export type HistoryConfig = z.infer<typeof historySchema>;
