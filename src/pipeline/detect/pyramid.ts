/** One level of the P-Net image pyramid. */
export interface PyramidLevel {
  scale: number;
  width: number;
  height: number;
}

/**
 * Scales m * f^k with m = 12 / minFaceSize, while the scaled shorter side stays >= 12 (P-Net's
 * receptive field). Sizes are int(side * scale + 1) as in the reference; the scale and the shorter
 * side are multiplied step by step, as the reference does, so floating-point rounding matches too.
 */
export function pyramidLevels(width: number, height: number, minFaceSize: number, factor: number): PyramidLevel[] {
  const m = 12 / minFaceSize;
  let minl = Math.min(width, height) * m;
  let scale = m;
  const levels: PyramidLevel[] = [];
  while (minl >= 12) {
    levels.push({ scale, width: Math.trunc(width * scale + 1), height: Math.trunc(height * scale + 1) });
    scale *= factor;
    minl *= factor;
  }
  return levels;
}
