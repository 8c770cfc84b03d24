import type { Box, Point } from '../../image/types.js';
import type { FaceCrop } from '../../models/manifest.js';
import type { Affine } from './affine.js';
import { invertAffine, similarityTransform } from './affine.js';

export interface FaceGeometry {
  box: Box;
  landmarks: Point[];
}

/**
 * The output -> source map that turns a detected face into a model's input crop, following the
 * manifest's crop rule: a 5-point similarity onto the model's landmark template, or an enlarged box.
 */
export function cropTransform(rule: FaceCrop, face: FaceGeometry, imageWidth: number, imageHeight: number): Affine {
  if (rule.method === 'similarity') {
    // Estimate source -> template, then invert: the warp walks output pixels.
    return invertAffine(similarityTransform(face.landmarks, rule.template as Point[]));
  }
  const [outW, outH] = rule.size;
  let [x1, y1, x2, y2] = face.box;
  const cx = (x1 + x2) / 2;
  const cy = (y1 + y2) / 2;
  let bw = (x2 - x1) * rule.enlarge;
  let bh = (y2 - y1) * rule.enlarge;
  if (rule.square) bw = bh = Math.max(bw, bh);
  x1 = cx - bw / 2;
  y1 = cy - bh / 2;
  if (rule.keepInside) {
    // Shift the enlarged box back inside the picture; shrink it only if the picture is smaller.
    bw = Math.min(bw, imageWidth);
    bh = Math.min(bh, imageHeight);
    x1 = Math.min(Math.max(cx - bw / 2, 0), imageWidth - bw);
    y1 = Math.min(Math.max(cy - bh / 2, 0), imageHeight - bh);
  }
  if (rule.resizeShorter) {
    // Resize so the shorter side is `resizeShorter`, then cut the centre outW x outH.
    const s = rule.resizeShorter / Math.min(bw, bh);
    const scaledW = bw * s;
    const scaledH = bh * s;
    const ox = (scaledW - outW) / 2;
    const oy = (scaledH - outH) / 2;
    // Output pixel u sits at scaled coordinate u + ox + 0.5 (pixel centres), i.e. source x1 + (u + ox + 0.5) / s - 0.5.
    return { a: 1 / s, b: 0, c: x1 + (ox + 0.5) / s - 0.5, d: 0, e: 1 / s, f: y1 + (oy + 0.5) / s - 0.5 };
  }
  const sx = bw / outW;
  const sy = bh / outH;
  return { a: sx, b: 0, c: x1 + 0.5 * sx - 0.5, d: 0, e: sy, f: y1 + 0.5 * sy - 0.5 };
}
