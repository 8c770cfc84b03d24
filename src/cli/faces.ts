import { FacestreamError } from '../errors.js';
import { loadImageFile, type DecodedImage } from '../image/decode.js';
import { largestFace, type AnalyzedFace, type FaceAnalyzer } from '../pipeline/analyzer.js';
import type { CliContext } from './context.js';

/**
 * Loads a picture with the configured limits, at its full size: these are the operator's own
 * files, and answers are in their pixels (limits.maxDecodeSide bounds what API clients send).
 */
export function loadPicture(ctx: CliContext, file: string): Promise<DecodedImage> {
  return loadImageFile(file, { ...ctx.config.limits, maxDecodeSide: 0 });
}

/** The face a one-face command works on: the largest, or a clear error when there is none. */
export async function requireLargestFace(analyzer: FaceAnalyzer, image: DecodedImage, file: string, embed = true): Promise<AnalyzedFace> {
  const [faces] = await analyzer.analyze([image], { embed, attributes: false });
  const face = largestFace(faces);
  if (!face) throw new FacestreamError('NO_FACE', `${file}: no face found`, { file });
  return face;
}

export function faceJson(face: AnalyzedFace) {
  return {
    box: face.box,
    score: face.score,
    landmarks: face.landmarks,
    ...(face.attributes ? { age: face.attributes.age, gender: face.attributes.gender, genderScore: face.attributes.genderScore } : {}),
  };
}
