import sharp from 'sharp';
import type { Box, Point, RgbImage } from '../../image/types.js';
import type { DetectedFace } from '../detect/mtcnn.js';

/**
 * Room around a picture for faces that fill it or leave it. MTCNN's nets were trained on faces
 * with some context around them: a tight crop of a face (an ID photo, an enrollment crop) gives
 * P-Net no window holding the whole face with its margin, so nothing is found. Detecting on the
 * picture padded on every side (as other MTCNN front ends do) finds it; boxes then come back in
 * the picture's own coordinates and may reach outside it, which alignment pads (warpInto samples
 * black outside the picture) instead of clamping.
 */

/** The padding colour: mid grey, MTCNN's input mean (127.5), so the nets see "nothing" there. */
const PAD_GREY = { r: 128, g: 128, b: 128 };

/** `image` with `pad` pixels of grey on every side (sharp, off the main thread). */
export async function padPicture(image: RgbImage, pad: number): Promise<RgbImage> {
  const raw = { width: image.width, height: image.height, channels: 3 as const };
  const data = await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.length), { raw })
    .extend({ top: pad, bottom: pad, left: pad, right: pad, background: PAD_GREY })
    .raw()
    .toBuffer();
  return { width: image.width + 2 * pad, height: image.height + 2 * pad, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

/** A face found on a padded picture, in the original picture's coordinates (may reach outside it). */
export function unpadFace<T extends DetectedFace>(face: T, pad: number): T {
  const [x1, y1, x2, y2] = face.box;
  return { ...face, box: [x1 - pad, y1 - pad, x2 - pad, y2 - pad], landmarks: face.landmarks.map(([x, y]): Point => [x - pad, y - pad]) };
}

/**
 * Where MTCNN puts the five landmarks inside its box on a frontal face, as fractions of the box
 * (left eye, right eye, nose, mouth corners): the mean of the canonical MTCNN's landmarks over the
 * 34 confident faces of ../shared/data (reference/mtcnn_reference.json), made left-right symmetric.
 */
const LANDMARKS_IN_BOX: readonly Point[] = [
  [0.274, 0.398],
  [0.726, 0.398],
  [0.5, 0.603],
  [0.29, 0.748],
  [0.71, 0.748],
];

/** A face at a box a person gave, when no detection is there: landmarks placed as on a frontal face (see LANDMARKS_IN_BOX). */
export function faceAtBox(box: Box): DetectedFace {
  const [x1, y1, x2, y2] = box;
  const w = x2 - x1;
  const h = y2 - y1;
  return { box: [x1, y1, x2, y2], score: Number.NaN, landmarks: LANDMARKS_IN_BOX.map(([fx, fy]): Point => [x1 + fx * w, y1 + fy * h]) };
}
