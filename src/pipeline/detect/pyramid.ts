/** One level of the P-Net image pyramid. */
export interface PyramidLevel {
  scale: number;
  /** Size of the plane P-Net sees. */
  width: number;
  height: number;
  /**
   * Set when the plane is a part of the whole picture's level (a search window between
   * keyframes): columns col..col+width-1 and rows row..row+height-1 of the picture pooled to
   * levelWidth x levelHeight. P-Net then sees exactly the values a keyframe sees there, on the
   * keyframe's stride-2 grid (col and row are even), so it proposes the boxes a keyframe would.
   */
  part?: { levelWidth: number; levelHeight: number; col: number; row: number };
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

/**
 * Deals the levels of a pyramid into `count` shares of about equal P-Net work (plane area), so
 * one keyframe can be searched on several workers at once. Each level goes whole to one share
 * (largest first, to the share with the least area so far: the longest-processing-time rule), so
 * a share proposes exactly what the whole search proposes on its levels. Levels keep their order
 * within a share; a share may be empty when there are fewer levels than shares.
 *
 * Each level has about half the area of the one before (0.709^2), so the finest level alone is
 * about half of the work: two shares halve a keyframe's P-Net time, more shares do not.
 */
export function levelShares(levels: readonly PyramidLevel[], count: number): PyramidLevel[][] {
  const shares: PyramidLevel[][] = Array.from({ length: Math.max(1, count) }, () => []);
  const work = new Float64Array(shares.length);
  const bySize = levels.map((level, i) => ({ i, area: level.width * level.height })).sort((a, b) => b.area - a.area || a.i - b.i);
  const owner = new Int32Array(levels.length);
  for (const { i, area } of bySize) {
    let least = 0;
    for (let k = 1; k < work.length; k++) if (work[k] < work[least]) least = k;
    owner[i] = least;
    work[least] += area;
  }
  levels.forEach((level, i) => shares[owner[i]].push(level));
  return shares;
}

/** P-Net's input side (its receptive field) and output stride. */
const PNET_SIDE = 12;
const PNET_STRIDE = 2;

/** The even-aligned span [start, end) of a level axis of `levelSize` cells covering picture span [a, b) of `pictureSize`, at least PNET_SIDE cells. */
function levelSpan(a: number, b: number, pictureSize: number, levelSize: number): [number, number] {
  let start = Math.max(0, Math.floor((a * levelSize) / pictureSize));
  start -= start % PNET_STRIDE;
  let end = Math.min(levelSize, Math.ceil((b * levelSize) / pictureSize));
  if (end - start < PNET_SIDE) {
    // Too small for one P-Net window: grow to one, inside the level, keeping the grid.
    end = Math.min(levelSize, start + PNET_SIDE);
    start = Math.max(0, end - PNET_SIDE);
    start -= start % PNET_STRIDE;
  }
  return [start, end];
}

/**
 * The part of a whole-picture pyramid level (from `pyramidLevels` of the picture) that covers the
 * picture rectangle `rect` (picture pixels, clipped to the picture): aligned on P-Net's stride-2
 * grid of the whole level and at least one P-Net window (12 cells) in each direction. Undefined
 * when the rectangle lies outside the picture.
 */
export function levelPart(level: PyramidLevel, rect: { x: number; y: number; width: number; height: number }, picture: { width: number; height: number }): PyramidLevel | undefined {
  const x1 = Math.max(0, rect.x);
  const y1 = Math.max(0, rect.y);
  const x2 = Math.min(picture.width, rect.x + rect.width);
  const y2 = Math.min(picture.height, rect.y + rect.height);
  if (x2 <= x1 || y2 <= y1) return undefined;
  const [col, colEnd] = levelSpan(x1, x2, picture.width, level.width);
  const [row, rowEnd] = levelSpan(y1, y2, picture.height, level.height);
  return { scale: level.scale, width: colEnd - col, height: rowEnd - row, part: { levelWidth: level.width, levelHeight: level.height, col, row } };
}
