import type { Config } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import { loadImageFile, type DecodedImage } from '../image/decode.js';
import type { ModelRuntime } from '../models/runtime.js';
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
  scored: ScoredPair[];
}

export interface PairsOptions {
  threshold?: number;
  /** Force "pictures are model-size aligned crops" (default: decided per picture by its size). */
  aligned?: boolean;
  onStart?: (pictures: number) => void;
  onProgress?: (done: number) => void;
}

/**
 * Embeds every picture named by the pairs once, scores each pair by cosine similarity and runs the
 * k-fold protocol. Pictures that already have the model's input size are taken as aligned crops
 * (LFW's 112x112 release); others go through detection and alignment of their largest face.
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
    loaded.forEach((image, k) => {
      if (!image) return;
      const isCrop = opts.aligned ?? (image.width === w && image.height === h);
      (isCrop ? crops : whole).push({ file: names[k], image });
    });
    if (crops.length) {
      const vs = await embedder.embedCrops(crops.map((c) => c.image));
      crops.forEach((c, k) => vectors.set(c.file, vs[k]));
    }
    if (whole.length) {
      detector ??= await MtcnnDetector.load(deps.runtime, deps.config.detector);
      const found = await detector.detectBatch(whole.map((x) => x.image));
      const items = whole.flatMap((x, k) => {
        const face = largestFace(found[k]);
        if (!face) failures.push({ file: x.file, error: 'no face found' });
        return face ? [{ file: x.file, image: x.image, face }] : [];
      });
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
    scored,
  };
}
