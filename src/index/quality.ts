import type { Point, RgbImage } from '../image/types.js';
import { invertAffine, similarityTransform } from '../pipeline/align/affine.js';
import type { FaceGeometry } from '../pipeline/align/crop.js';
import { warpInto } from '../pipeline/align/warp.js';

/**
 * The usual 5-point face template of 112x112 crops (eyes, nose, mouth corners). Sharpness is
 * measured on this crop whatever the embedding model, so one threshold means the same everywhere.
 */
const TEMPLATE_112: Point[] = [
  [38.2946, 51.6963],
  [73.5318, 51.5014],
  [56.0252, 71.7366],
  [41.5493, 92.3655],
  [70.7299, 92.2041],
];
const SIZE = 112;
const PLAIN = { order: [0, 1, 2] as const, mean: [0, 0, 0] as const, mul: [1, 1, 1] as const };

/**
 * Sharpness of a face: variance of the 4-neighbour Laplacian over the aligned 112x112 grey crop
 * (inner 96x96, away from padding). Blur removes the high frequencies the Laplacian responds to.
 */
export function faceSharpness(image: RgbImage, face: FaceGeometry): number {
  const planes = new Float32Array(3 * SIZE * SIZE);
  warpInto(image, invertAffine(similarityTransform(face.landmarks, TEMPLATE_112)), SIZE, SIZE, planes, 0, PLAIN);
  const plane = SIZE * SIZE;
  const grey = new Float32Array(plane);
  for (let i = 0; i < plane; i++) grey[i] = 0.299 * planes[i] + 0.587 * planes[i + plane] + 0.114 * planes[i + 2 * plane];
  let sum = 0;
  let sumSq = 0;
  let n = 0;
  for (let y = 8; y < SIZE - 8; y++) {
    for (let x = 8; x < SIZE - 8; x++) {
      const i = y * SIZE + x;
      const lap = grey[i - 1] + grey[i + 1] + grey[i - SIZE] + grey[i + SIZE] - 4 * grey[i];
      sum += lap;
      sumSq += lap * lap;
      n++;
    }
  }
  const mean = sum / n;
  return sumSq / n - mean * mean;
}
