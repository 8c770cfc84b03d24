import type { RgbImage } from '../../image/types.js';
import type { EmbeddingModelSpec } from '../../models/manifest.js';
import { embeddingDimension, embeddingSpec } from '../../models/manifest.js';
import type { ModelRuntime, OnnxModel } from '../../models/runtime.js';
import { FacestreamError } from '../../errors.js';
import { cropTransform, type FaceGeometry } from '../align/crop.js';
import { normalisationOf, warpInto, type InputNormalisation } from '../align/warp.js';
import { BatchBuffers } from '../batch-buffers.js';
import { l2normalize } from './vector.js';

export interface FaceInPicture {
  image: RgbImage;
  face: FaceGeometry;
}

/** Cost of the embedding stage, accumulated (the benchmark reads it). */
export interface EmbedTimings {
  faces: number;
  alignMs: number;
  inferMs: number;
}

/**
 * Any manifest embedding model: aligns each face by the model's crop rule straight to its input
 * size, normalises as the manifest says, runs batches of up to `maxBatch`, returns unit vectors.
 */
export class Embedder {
  readonly timings: EmbedTimings = { faces: 0, alignMs: 0, inferMs: 0 };
  readonly dimension: number;
  private readonly norm: InputNormalisation;
  private readonly buffers = new BatchBuffers(16 * 2 ** 20);

  constructor(
    private readonly model: OnnxModel,
    readonly spec: EmbeddingModelSpec,
    readonly maxBatch = 32,
  ) {
    this.dimension = embeddingDimension(spec);
    this.norm = normalisationOf(spec.input);
  }

  static async load(runtime: ModelRuntime, id: string, maxBatch = 32): Promise<Embedder> {
    const spec = embeddingSpec(runtime.manifest, id);
    return new Embedder(await runtime.load(id), spec, maxBatch);
  }

  get modelId(): string {
    return this.model.id;
  }

  /** The manifest's same-person threshold (cosine similarity), if it states one. */
  /**
   * Cosine similarity to a cluster's centroid at or above which an unknown face joins the cluster
   * (face library): the manifest's `threshold.clusterSimilarity`, else its `similarity`, else 0.45
   * (arcface-mbf-112's scale). Similarities of different models live on different scales.
   */
  get defaultClusterSimilarity(): number {
    return this.spec.threshold?.clusterSimilarity ?? this.spec.threshold?.similarity ?? 0.45;
  }

  get defaultMinSimilarity(): number | undefined {
    return this.spec.threshold?.similarity;
  }

  /**
   * Cosine similarity under which two embeddings of one track are taken for different people: the
   * manifest's `threshold.switchSimilarity`, else 0.3 (arcface-mbf-112's scale).
   */
  get defaultSwitchSimilarity(): number {
    return this.spec.threshold?.switchSimilarity ?? 0.3;
  }

  get inputSize(): readonly [number, number] {
    return this.spec.crop.size;
  }

  /** Writes one face's model input (aligned crop, normalised, planar) at dst[offset]. */
  prepare(item: FaceInPicture, dst: Float32Array, offset: number): void {
    const [w, h] = this.spec.crop.size;
    warpInto(item.image, cropTransform(this.spec.crop, item.face, item.image.width, item.image.height), w, h, dst, offset, this.norm);
  }

  async embedFaces(items: readonly FaceInPicture[]): Promise<Float32Array[]> {
    return this.runBatches(items.length, (i, dst, offset) => this.prepare(items[i], dst, offset));
  }

  /**
   * Embeds pictures that already are the model's input crop (e.g. LFW's aligned 112x112 faces):
   * no detection, no alignment, only normalisation.
   */
  async embedCrops(crops: readonly RgbImage[]): Promise<Float32Array[]> {
    const [w, h] = this.spec.crop.size;
    for (const c of crops) {
      if (c.width !== w || c.height !== h) {
        throw new FacestreamError('BAD_REQUEST', `crop is ${c.width}x${c.height}; model "${this.modelId}" takes ${w}x${h} crops`);
      }
    }
    const identity = { a: 1, b: 0, c: 0, d: 0, e: 1, f: 0 };
    return this.runBatches(crops.length, (i, dst, offset) => warpInto(crops[i], identity, w, h, dst, offset, this.norm));
  }

  private async runBatches(count: number, fill: (i: number, dst: Float32Array, offset: number) => void): Promise<Float32Array[]> {
    const [w, h] = this.spec.crop.size;
    const per = 3 * w * h;
    const out: Float32Array[] = [];
    for (let start = 0; start < count; start += this.maxBatch) {
      const n = Math.min(this.maxBatch, count - start);
      let mark = performance.now();
      // Every value of the batch is written: each face fills its whole crop.
      const batch = this.buffers.take(n * per);
      for (let k = 0; k < n; k++) fill(start + k, batch, k * per);
      this.timings.alignMs += performance.now() - mark;
      mark = performance.now();
      const returned: Float32Array[] = [];
      try {
        const result = await this.model.run(batch, [n, 3, h, w], (b) => returned.push(b));
        this.timings.inferMs += performance.now() - mark;
        const data = result[this.spec.outputs[0].name].data as Float32Array;
        for (let k = 0; k < n; k++) out.push(l2normalize(data.slice(k * this.dimension, (k + 1) * this.dimension)));
      } finally {
        this.buffers.give(returned);
      }
    }
    this.timings.faces += count;
    return out;
  }
}
