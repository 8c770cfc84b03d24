import type { Config } from '../config/schema.js';
import type { RgbImage } from '../image/types.js';
import type { ModelRuntime } from '../models/runtime.js';
import { AttributeEstimator, type FaceAttributes } from './attributes/ssrnet.js';
import { MtcnnDetector, type DetectedFace } from './detect/mtcnn.js';
import { detectStillPictures } from './detect/still-pictures.js';
import { Embedder } from './embed/embedder.js';

export interface AnalyzedFace extends DetectedFace {
  embedding?: Float32Array;
  attributes?: FaceAttributes;
}

export interface AnalyzeOptions {
  embed?: boolean;
  attributes?: boolean;
  /** Detector overrides for this call (e.g. a different minimum face size). */
  minFaceSize?: number;
  /**
   * The images are still pictures, not video frames: one where nothing is found is searched
   * again padded (config detector.picturePadding), for a face that fills it.
   */
  stillPictures?: boolean;
}

/**
 * The face analysis core for single pictures and batches: detection, then (on request) embeddings
 * and age/gender, each batched over every face of every picture in the call.
 */
/** The part of the configuration a FaceAnalyzer is built from (plain data: it travels to the analysis workers). */
export type AnalyzerConfig = Pick<Config, 'detector' | 'embedding' | 'attributes'>;

export class FaceAnalyzer {
  private constructor(
    readonly config: AnalyzerConfig,
    readonly runtime: ModelRuntime,
    readonly detector: MtcnnDetector,
    readonly embedder: Embedder,
    readonly attributes: AttributeEstimator | undefined,
    readonly minScore: number,
  ) {}

  /** Share of a still picture's longer side it is padded by when nothing is found (config detector.picturePadding). */
  get picturePadding(): number {
    return this.config.detector.picturePadding;
  }

  static async create(runtime: ModelRuntime, config: AnalyzerConfig): Promise<FaceAnalyzer> {
    const [detector, embedder, attributes] = await Promise.all([
      MtcnnDetector.load(runtime, {
        minFaceSize: config.detector.minFaceSize,
        scaleFactor: config.detector.scaleFactor,
        thresholds: config.detector.thresholds,
        cropPadding: config.detector.cropPadding,
      }),
      Embedder.load(runtime, config.embedding.model, config.embedding.maxBatch),
      config.attributes.enabled ? AttributeEstimator.load(runtime, config.attributes.ageModel, config.attributes.genderModel) : undefined,
    ]);
    const own: AnalyzerConfig = { detector: config.detector, embedding: config.embedding, attributes: config.attributes };
    return new FaceAnalyzer(own, runtime, detector, embedder, attributes, config.detector.minScore);
  }

  async detect(images: readonly RgbImage[], opts: AnalyzeOptions = {}): Promise<DetectedFace[][]> {
    const overrides = opts.minFaceSize ? { minFaceSize: opts.minFaceSize } : undefined;
    if (opts.stillPictures) return detectStillPictures(this.detector, images, { minScore: this.minScore, padding: this.picturePadding, overrides });
    return (await this.detector.detectBatch(images, overrides)).map((faces) => faces.filter((f) => f.score >= this.minScore));
  }

  async analyze(images: readonly RgbImage[], opts: AnalyzeOptions = {}): Promise<AnalyzedFace[][]> {
    const perImage: AnalyzedFace[][] = await this.detect(images, opts);
    const flat = perImage.flatMap((faces, i) => faces.map((face) => ({ image: images[i], face })));
    if (flat.length === 0) return perImage;
    const [embeddings, attributes] = await Promise.all([
      opts.embed === false ? undefined : this.embedder.embedFaces(flat),
      opts.attributes === false || !this.attributes ? undefined : this.attributes.estimate(flat),
    ]);
    flat.forEach((item, k) => {
      const target = item.face as AnalyzedFace;
      if (embeddings) target.embedding = embeddings[k];
      if (attributes) target.attributes = attributes[k];
    });
    return perImage;
  }
}

export function faceArea(face: { box: readonly number[] }): number {
  return Math.max(0, face.box[2] - face.box[0]) * Math.max(0, face.box[3] - face.box[1]);
}

/** The largest face by box area, or undefined for none. */
export function largestFace<T extends { box: readonly number[] }>(faces: readonly T[]): T | undefined {
  let best: T | undefined;
  for (const f of faces) if (!best || faceArea(f) > faceArea(best)) best = f;
  return best;
}
