import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { FacestreamError } from '../errors.js';
import { PACKAGE_ROOT } from '../paths.js';

/**
 * The model manifest: what each model file is, how to check it, and the contract of its input and
 * output. Code reads contracts from here, so a new embedding model needs a manifest entry, not code.
 */

const point = z.tuple([z.number(), z.number()]);

export const inputSpecSchema = z.strictObject({
  name: z.string(),
  shape: z.array(z.union([z.string(), z.int()])),
  layout: z.literal('NCHW'),
  channels: z.enum(['RGB', 'BGR']),
  /** Per-channel value subtracted from 0-255 pixels, in the model's channel order. */
  mean: z.tuple([z.number(), z.number(), z.number()]),
  /** Multiplier applied after subtracting the mean (exclusive with std). */
  scale: z.number().optional(),
  /** Per-channel divisor applied after subtracting the mean, in 0-255 units (exclusive with scale). */
  std: z.tuple([z.number(), z.number(), z.number()]).optional(),
});

const outputSpecSchema = z.strictObject({ name: z.string(), shape: z.array(z.union([z.string(), z.int()])) });

/** How a face becomes the model's input picture. */
export const faceCropSchema = z.discriminatedUnion('method', [
  z.strictObject({
    /** 5-point least-squares similarity transform of the landmarks onto `template`, warped straight to `size`. */
    method: z.literal('similarity'),
    size: z.tuple([z.int(), z.int()]),
    template: z.array(point).length(5),
  }),
  z.strictObject({
    /**
     * The detector box enlarged by `enlarge` about its centre. With `resizeShorter`, the crop's
     * shorter side is resized to it and the centre `size` is cut (VGGFace2's test-time crop);
     * without, the (square) crop is resized to `size`. `keepInside` shifts the enlarged box into
     * the picture instead of padding it with black.
     */
    method: z.literal('box'),
    size: z.tuple([z.int(), z.int()]),
    enlarge: z.number().positive(),
    resizeShorter: z.int().positive().optional(),
    square: z.boolean().default(false),
    keepInside: z.boolean().default(false),
  }),
]);

const baseModel = {
  file: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.int().positive(),
  /** Direct download address; `facestream models fill` uses it when no mirror is configured. */
  url: z.url().optional(),
  /**
   * The file is built by project code (`facestream models build`, also run by `models fill`) from
   * weights in an installed npm package, instead of downloaded: `recipe` names the builder
   * (src/models/build/recipes.ts), `from` the package the weights come from.
   */
  build: z.strictObject({ recipe: z.string(), from: z.string() }).optional(),
  weights: z.string().optional(),
  source: z.string(),
  license: z.string(),
  notes: z.string().optional(),
  input: inputSpecSchema,
  outputs: z.array(outputSpecSchema).min(1),
};

export const detectorModelSchema = z.strictObject({ task: z.literal('detection'), ...baseModel });

export const embeddingModelSchema = z.strictObject({
  task: z.literal('embedding'),
  ...baseModel,
  crop: faceCropSchema,
  /** Cosine similarity on L2-normalised vectors: the only metric this project uses for embeddings. */
  metric: z.literal('cosine'),
  threshold: z
    .strictObject({
      /** Same person at or above this cosine similarity (the gallery's default). */
      similarity: z.number().min(-1).max(1),
      /** Below this, two embeddings of one video track are different people (the tracker's default). */
      switchSimilarity: z.number().min(-1).max(1).optional(),
      /**
       * An unknown face joins a face-library cluster at or above this cosine similarity to its
       * centroid (the history's default; test/history-clusters.test.ts measures it on LFW).
       */
      clusterSimilarity: z.number().min(-1).max(1).optional(),
      notes: z.string().optional(),
    })
    .optional(),
});

export const attributeModelSchema = z.strictObject({
  task: z.literal('attribute'),
  ...baseModel,
  crop: faceCropSchema,
  /** Which decoding turns the outputs into a value. */
  decode: z.strictObject({ kind: z.literal('ssrnet'), scale: z.number(), notes: z.string().optional() }),
});

export const modelSpecSchema = z.discriminatedUnion('task', [detectorModelSchema, embeddingModelSchema, attributeModelSchema]);

export const manifestSchema = z.strictObject({
  schema: z.literal(1),
  models: z.record(z.string().regex(/^[a-z0-9][a-z0-9._-]*$/), modelSpecSchema),
});

export type ModelSpec = z.infer<typeof modelSpecSchema>;
export type EmbeddingModelSpec = z.infer<typeof embeddingModelSchema>;
export type AttributeModelSpec = z.infer<typeof attributeModelSchema>;
export type InputSpec = z.infer<typeof inputSpecSchema>;
export type FaceCrop = z.infer<typeof faceCropSchema>;
export type Manifest = z.infer<typeof manifestSchema>;

/** The manifest shipped in the repository's models/ folder. */
export const BUNDLED_MANIFEST = path.join(PACKAGE_ROOT, 'models', 'manifest.json');

export function loadManifest(file: string = BUNDLED_MANIFEST): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new FacestreamError('CONFIG_INVALID', `cannot read model manifest ${file}: ${(err as Error).message}`, { file });
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `  - ${i.path.join('.')}: ${i.message}`).join('\n');
    throw new FacestreamError('CONFIG_INVALID', `model manifest ${file} is invalid:\n${problems}`, { file });
  }
  return parsed.data;
}

export function modelSpec(manifest: Manifest, id: string): ModelSpec {
  const spec = manifest.models[id];
  if (!spec) {
    throw new FacestreamError('MODEL_UNKNOWN', `unknown model "${id}"; the manifest knows: ${Object.keys(manifest.models).join(', ')}`, { model: id });
  }
  return spec;
}

export function embeddingSpec(manifest: Manifest, id: string): EmbeddingModelSpec {
  const spec = modelSpec(manifest, id);
  if (spec.task !== 'embedding') throw new FacestreamError('MODEL_UNKNOWN', `model "${id}" is a ${spec.task} model, not an embedding model`, { model: id });
  return spec;
}

export function attributeSpec(manifest: Manifest, id: string): AttributeModelSpec {
  const spec = modelSpec(manifest, id);
  if (spec.task !== 'attribute') throw new FacestreamError('MODEL_UNKNOWN', `model "${id}" is a ${spec.task} model, not an attribute model`, { model: id });
  return spec;
}

/** Embedding dimension from the output shape's last axis. */
export function embeddingDimension(spec: EmbeddingModelSpec): number {
  const last = spec.outputs[0].shape[spec.outputs[0].shape.length - 1];
  if (typeof last !== 'number') throw new FacestreamError('CONFIG_INVALID', `embedding model output shape must end in a fixed dimension`);
  return last;
}
