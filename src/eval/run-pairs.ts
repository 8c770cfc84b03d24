import type { Config } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import { loadImageFile, type DecodedImage } from '../image/decode.js';
import type { Point } from '../image/types.js';
import type { Manifest } from '../models/manifest.js';
import type { ModelRuntime } from '../models/runtime.js';
import type { FaceGeometry } from '../pipeline/align/crop.js';
import { largestFace } from '../pipeline/analyzer.js';
import { MtcnnDetector } from '../pipeline/detect/mtcnn.js';
import { Embedder } from '../pipeline/embed/embedder.js';
import { cosineSimilarity } from '../pipeline/embed/vector.js';
import type { LabelledPair } from './pairs.js';
import { kFoldVerification, type ScoredPair, type VerificationReport } from './verification.js';

export interface PairsEvaluation {
  model: string;
  report: VerificationReport;
  pictures: number;
  /** Pairs left out because a picture could not be read or showed no face. */
  skippedPairs: number;
  failures: { file: string; error: string }[];
  embedSeconds: number;
  /** Model inference time per embedded face (alignment, decoding and detection excluded), in ms. */
  inferMsPerFace: number;
  scored: ScoredPair[];
}

export interface PairsOptions {
  threshold?: number;
  /** Force "pictures are model-size aligned crops" (default: decided per picture by its size). */
  aligned?: boolean;
  /** Detect and align every picture, even those whose size says they are aligned crops. */
  detect?: boolean;
  onStart?: (pictures: number) => void;
  onProgress?: (done: number) => void;
}

/**
 * Where the landmarks are in a picture that is an aligned crop of some manifest model (LFW's
 * 112x112 release is aligned on arcface-mbf-112's template): that model's template, when the
 * picture has its crop size. Lets a model with another input size and template (faceapi-resnet34-150)
 * re-align those crops onto its own template exactly, with no detector in between.
 */
function alignedCropGeometry(manifest: Manifest, width: number, height: number): FaceGeometry | undefined {
  for (const spec of Object.values(manifest.models)) {
    if (spec.task !== 'embedding' || spec.crop.method !== 'similarity') continue;
    if (spec.crop.size[0] === width && spec.crop.size[1] === height) return { box: [0, 0, width, height], landmarks: spec.crop.template as Point[] };
  }
  return undefined;
}

/**
 * Embeds every picture named by the pairs once, scores each pair by cosine similarity and runs the
 * k-fold protocol. Pictures that already have the model's input size are taken as aligned crops
 * (LFW's 112x112 release); pictures with the crop size of another manifest model that aligns on a
 * landmark template are re-aligned from that template (when this model aligns on landmarks too);
 * others go through detection and alignment of their largest face.
 */
export async function evaluatePairs(
  deps: { runtime: ModelRuntime; config: Pick<Config, 'limits' | 'detector' | 'embedding'> },
  modelId: string,
  pairs: readonly LabelledPair[],
  folds: number,
  opts: PairsOptions = {},
): Promise<PairsEvaluation> {
  const embedder = await Embedder.load(deps.runtime, modelId, deps.config.embedding.maxBatch);
  let detector: MtcnnDetector | undefined;
  const files = [...new Set(pairs.flatMap((p) => [p.a, p.b]))];
  const vectors = new Map<string, Float32Array>();
  const failures: { file: string; error: string }[] = [];
  const [w, h] = embedder.inputSize;
  const start = performance.now();
  opts.onStart?.(files.length);
  const chunk = embedder.maxBatch;
  for (let i = 0; i < files.length; i += chunk) {
    const names = files.slice(i, i + chunk);
    const loaded = await Promise.all(
      names.map(async (file) => {
        try {
          return await loadImageFile(file, deps.config.limits);
        } catch (err) {
          failures.push({ file, error: errorMessage(err) });
          return undefined;
        }
      }),
    );
    const crops: { file: string; image: DecodedImage }[] = [];
    const whole: { file: string; image: DecodedImage }[] = [];
    const items: { file: string; image: DecodedImage; face: FaceGeometry }[] = [];
    loaded.forEach((image, k) => {
      if (!image) return;
      const file = names[k];
      if (opts.detect) return whole.push({ file, image });
      if (opts.aligned ?? (image.width === w && image.height === h)) return crops.push({ file, image });
      const face = embedder.spec.crop.method === 'similarity' ? alignedCropGeometry(deps.runtime.manifest, image.width, image.height) : undefined;
      if (face) items.push({ file, image, face });
      else whole.push({ file, image });
    });
    if (crops.length) {
      const vs = await embedder.embedCrops(crops.map((c) => c.image));
      crops.forEach((c, k) => vectors.set(c.file, vs[k]));
    }
    if (whole.length) {
      detector ??= await MtcnnDetector.load(deps.runtime, deps.config.detector);
      const found = await detector.detectBatch(whole.map((x) => x.image));
      whole.forEach((x, k) => {
        const face = largestFace(found[k]);
        if (face) items.push({ file: x.file, image: x.image, face });
        else failures.push({ file: x.file, error: 'no face found' });
      });
    }
    if (items.length) {
      const vs = await embedder.embedFaces(items);
      items.forEach((it, k) => vectors.set(it.file, vs[k]));
    }
    opts.onProgress?.(Math.min(files.length, i + chunk));
  }
  const usable = pairs.filter((p) => vectors.has(p.a) && vectors.has(p.b));
  const scored = usable.map((p) => ({ similarity: cosineSimilarity(vectors.get(p.a)!, vectors.get(p.b)!), same: p.same }));
  const foldIndex = usable.map((p) => p.fold);
  const threshold = opts.threshold ?? deps.config.embedding.minSimilarity ?? embedder.defaultMinSimilarity;
  return {
    model: modelId,
    report: kFoldVerification(scored, folds, (i) => foldIndex[i], threshold),
    pictures: files.length,
    skippedPairs: pairs.length - usable.length,
    failures,
    embedSeconds: (performance.now() - start) / 1000,
    inferMsPerFace: embedder.timings.faces ? embedder.timings.inferMs / embedder.timings.faces : 0,
    scored,
  };
}
