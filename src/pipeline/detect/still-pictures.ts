import type { RgbImage } from '../../image/types.js';
import { padPicture, unpadFace } from '../align/pad.js';
import type { DetectedFace, MtcnnDetector } from './mtcnn.js';

export interface StillPictureOptions {
  /** Faces under this final score are dropped (config detector.minScore). */
  minScore: number;
  /** Share of the longer side a picture with no face is padded by before a second search (config detector.picturePadding; 0: no second search). */
  padding: number;
  /** Detector overrides for this call (e.g. another minimum face size). */
  overrides?: { minFaceSize: number };
}

/**
 * Faces in still pictures (uploads, files on the command line), [picture][face] in picture
 * pixels. A picture where nothing is found is searched again padded (src/pipeline/align/pad.ts):
 * a face that fills the picture has no margin for MTCNN's crops, and the padding gives it one.
 * Video frames never take this path (a frame without faces is the common case there).
 */
export async function detectStillPictures(detector: MtcnnDetector, images: readonly RgbImage[], opts: StillPictureOptions): Promise<DetectedFace[][]> {
  const found = (await detector.detectBatch(images, opts.overrides)).map((faces) => faces.filter((f) => f.score >= opts.minScore));
  if (opts.padding <= 0) return found;
  const empty = found.flatMap((faces, i) => (faces.length === 0 ? [i] : []));
  // The second search is for faces too big for the first (no margin around them): one smaller
  // than the minimum face asked for is not what it looks for, and was rightly left out by the first.
  const minFace = opts.overrides?.minFaceSize ?? detector.options.minFaceSize;
  for (const i of empty) {
    // One call per picture: padded pictures differ in size, so they would not share P-Net batches anyway.
    const pad = Math.round(Math.max(images[i].width, images[i].height) * opts.padding);
    const [faces] = await detector.detectBatch([await padPicture(images[i], pad)], opts.overrides);
    found[i] = faces.filter((f) => f.score >= opts.minScore && Math.max(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= minFace).map((f) => unpadFace(f, pad));
  }
  return found;
}
