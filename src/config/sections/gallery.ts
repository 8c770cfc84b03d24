import { z } from 'zod';

/**
 * Configuration of src/index: where the gallery lives, how it is searched, what an enrollment
 * must pass, and how its search index is kept on disk. See schema.ts for conventions.
 */

export const galleryIndexSchema = z
  .strictObject({
    /**
     * HNSW links per node. 512-d embeddings are hard for HNSW: on clustered face-like data at 100k
     * templates, M=16 reached identity recall@1 0.96 at efSearch 64 and M=24 0.98 (1.0 at 96), at
     * ~1.6x the build time (scratch sweep, bench/gallery.ts). Memory per template: 4*dim + 8*M bytes.
     * A saved index keeps the M (and efConstruction) it was built with until it is rebuilt
     * (`facestream gallery check --repair`).
     */
    m: z.int().min(4).max(96).default(24),
    /** Candidate list while inserting. 64 builds only ~7% faster than 100 but lost recall (0.92 vs 0.96 at efSearch 64, M=16, 100k). */
    efConstruction: z.int().min(10).max(2000).default(100),
    /**
     * Candidate list while searching (raised to the number of templates asked for when smaller).
     * Larger is slower and more exact; see bench/gallery.ts for recall and latency per value and size.
     */
    efSearch: z.int().min(1).max(5000).default(64),
    /**
     * Galleries with at most this many templates are searched exactly (brute force over a matrix in
     * memory) instead of through HNSW: at 2,000 x 512 that is ~1M multiply-adds, well under a millisecond.
     */
    exactBelow: z.int().min(0).max(100_000).default(2000),
    /** Index capacity allocated at first; it doubles (resizeIndex) when full, so no size is set in advance. */
    initialCapacity: z.int().min(16).default(1024),
    /**
     * Save the index after this many template changes (adds and deletes) since the last save. The
     * index is a cache: changes since the last save are replayed from SQLite when the gallery
     * opens, so this bounds open time after a crash, not durability.
     */
    saveAfterChanges: z.int().min(1).default(10_000),
    /** Also save when changes are pending and this many seconds passed since the last save (0: never by time). */
    saveIntervalSeconds: z.number().min(0).default(300),
    /**
     * Rebuild the index without deleted entries (markDelete leaves them in the graph) when they are
     * this fraction of the index. Deleted nodes still cost search time and memory.
     */
    compactDeletedRatio: z.number().gt(0).max(1).default(0.25),
    /**
     * Check the saved index file's SHA-256 before loading it. A corrupt HNSW file can crash the
     * process inside hnswlib; hashing costs ~1 s per GB (the 1M-template index is ~2.2 GB).
     */
    verifyChecksum: z.boolean().default(true),
  })
  .prefault({});

export const enrollmentSchema = z
  .strictObject({
    /** Smallest face (shorter side of the detector box, px) accepted for enrollment: small faces give unreliable templates. */
    minFaceSize: z.number().min(0).default(40),
    /** Lowest detection score accepted; MTCNN gives real frontal faces 0.99+, 0.9 keeps profiles out. */
    minDetectionScore: z.number().min(0).max(1).default(0.9),
    /**
     * Lowest sharpness (variance of the Laplacian of the aligned 112x112 grey crop) accepted; 0
     * turns the blur check off. Measured: the 21 sharp photos of shared/data/faces score 190 to
     * 1300; the same faces Gaussian-blurred until the crop is visibly soft (sigma 3-5 px on
     * 110-300 px faces) score 6 to 90. 50 is a reasonable value; off by default because a
     * heavily compressed but usable picture can score low too.
     */
    minSharpness: z.number().min(0).default(0),
    /** When a picture shows several faces, enroll the largest instead of rejecting it. */
    allowLargest: z.boolean().default(false),
    /** Pictures decoded and detected together in one enrollment call. */
    batch: z.int().min(1).max(64).default(8),
    /**
     * A picture whose face embeds at this similarity or more to one of the identity's templates
     * (or to another picture of the same call) is refused as a duplicate (DUPLICATE_TEMPLATE);
     * pictures with the same decoded pixels always are, whatever their metadata or file bytes.
     * Measured with arcface-mbf-112 on ../shared/data/faces: the same picture re-saved (new
     * metadata, JPEG quality 95 or 70, PNG) 0.983 to 1.0; different photos of one person at most
     * 0.984. 0.99 refuses near-identical copies and never a different photo there; 1 or more: off.
     */
    duplicateSimilarity: z.number().min(0).max(2).default(0.99),
  })
  .prefault({});

export const cropStorageSchema = z
  .strictObject({
    /**
     * Side (px) of the stored canonical face crop: a square around the detector box, enlarged by
     * `margin`, kept with its landmarks and box so any model's crop rule can be re-applied
     * (`gallery reindex`). 256 keeps the face itself at ~128 px, above every model's input scale.
     */
    size: z.int().min(64).max(1024).default(256),
    /** Canonical crop side as a multiple of the box's longer side: 2 leaves room for box-based crops that enlarge by 1.3 and more. */
    margin: z.number().min(1).max(4).default(2),
    /** JPEG is ~5x smaller than PNG for a photo crop; PNG is lossless. */
    format: z.enum(['jpeg', 'png']).default('jpeg'),
    /** JPEG quality of stored crops; 90 keeps re-embedding within ~0.01 cosine of the original. */
    quality: z.int().min(50).max(100).default(90),
  })
  .prefault({});

export const gallerySchema = z
  .strictObject({
    /** Gallery directory (SQLite metadata, saved index, lock). Also FACESTREAM_GALLERY or `--gallery DIR`. */
    dir: z.string().min(1).default('./gallery'),
    /** Similarity under which the best identity is "unknown"; empty: embedding.minSimilarity, else the model's manifest threshold. */
    minSimilarity: z.number().min(-1).max(1).optional(),
    /** Identities returned per search. */
    topK: z.int().min(1).max(100).default(5),
    /**
     * How an identity's score is formed from its templates: 'max' (its best template) or 'mean'
     * (mean of its best `aggregateTemplates` templates, steadier when an identity has outlier pictures).
     */
    aggregation: z.enum(['max', 'mean']).default('max'),
    aggregateTemplates: z.int().min(1).max(64).default(3),
    /**
     * Templates fetched from the index per identity asked for: identities with many templates
     * would otherwise fill the candidate list and push other identities out.
     */
    candidatesPerIdentity: z.int().min(1).max(64).default(8),
    /**
     * SQLite `synchronous`: 'full' fsyncs every commit, so an acknowledged enrollment survives a
     * power loss; 'normal' survives a process crash only, and commits are faster.
     */
    durability: z.enum(['full', 'normal']).default('full'),
    index: galleryIndexSchema,
    enrollment: enrollmentSchema,
    crops: cropStorageSchema,
  })
  .prefault({});

export type GalleryConfig = z.infer<typeof gallerySchema>;
export type GalleryIndexConfig = z.infer<typeof galleryIndexSchema>;
export type EnrollmentConfig = z.infer<typeof enrollmentSchema>;
export type CropStorageConfig = z.infer<typeof cropStorageSchema>;
