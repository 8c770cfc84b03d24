import type { Box } from '../../image/types.js';
import type { SearchWindow } from './mtcnn.js';
import { levelPart, pyramidLevels, type PyramidLevel } from './pyramid.js';

/** Geometry of the searches between keyframes (config `detector.tracked`). */
export interface TrackedSearchParams {
  /** Side of the window searched around a tracked face, in face sizes (2: the face and half a face around it). */
  windowScale: number;
  /** Motion boxes grow by this share of their size (and half the minimum face) before P-Net searches them. */
  motionMargin: number;
  /** When motion windows would cover more than this share of the picture, the whole picture is searched instead (a keyframe). */
  keyframeShare: number;
  /** Also send each tracked face's predicted box straight to O-Net (more faces kept, more extra faces). */
  seeds: boolean;
}

export const TRACKED_SEARCH_DEFAULTS: TrackedSearchParams = { windowScale: 2.5, motionMargin: 0.25, keyframeShare: 0.5, seeds: false };

/** Picture size and detection settings every window of a frame is planned with (`pictureSearch`). */
export interface PictureSearch {
  width: number;
  height: number;
  minFaceSize: number;
  /** The whole picture's pyramid (what a keyframe searches), whose level parts the windows search. */
  pyramid: readonly PyramidLevel[];
}

/** The search settings of a `width` x `height` picture: its pyramid is computed once for all its windows. */
export function pictureSearch(width: number, height: number, minFaceSize: number, scaleFactor: number): PictureSearch {
  return { width, height, minFaceSize, pyramid: pyramidLevels(width, height, minFaceSize, scaleFactor) };
}

/**
 * The search window around each tracked face's predicted box: a square of `windowScale` x the
 * face's size around its centre, searched on the parts of the stream's own whole-picture pyramid
 * levels (scales 12/minFaceSize x scaleFactor^k, as a keyframe searches) whose nominal face size
 * lies within a factor of 2 of the tracked face's (and the finest level, for faces under the
 * minimum size, which a keyframe finds there too). On those parts P-Net sees what a keyframe sees
 * on the same grid, so the window finds the face a keyframe would find there, as it moves, shrinks
 * or grows. With `seeds`, the predicted box also goes straight to O-Net.
 */
export function refineWindows(predicted: readonly Box[], params: TrackedSearchParams, picture: PictureSearch): SearchWindow[] {
  const { pyramid } = picture;
  return predicted.flatMap((box) => {
    const face = Math.max(12, box[2] - box[0], box[3] - box[1]);
    const side = Math.round(params.windowScale * face);
    const cx = (box[0] + box[2]) / 2;
    const cy = (box[1] + box[3]) / 2;
    const window = { x: Math.round(cx - side / 2), y: Math.round(cy - side / 2), width: side, height: side };
    const levels: PyramidLevel[] = [];
    for (const level of pyramid) {
      const nominal = 12 / level.scale;
      // The finest level always: a keyframe finds faces under the minimum size there too (box regression).
      if (nominal < face / 2 || (nominal > 2 * face && level !== pyramid[0])) continue;
      const part = levelPart(level, window, picture);
      if (part) levels.push(part);
    }
    if (!levels.length) return [];
    return [{ ...window, levels, seed: params.seeds ? box : undefined }];
  });
}

function area(w: { width: number; height: number }): number {
  return w.width * w.height;
}

function intersects(a: Box, b: Box): boolean {
  return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
}

function inside(inner: Box, outer: Box): boolean {
  return inner[0] >= outer[0] && inner[1] >= outer[1] && inner[2] <= outer[2] && inner[3] <= outer[3];
}

/**
 * Windows over the motion outside the tracked faces: motion boxes already inside a tracked
 * face's window are left to that window; the rest grow by the margin (at least to one minimum
 * face), overlapping ones merge into their bounding box, and each is clipped to the picture.
 * Each is searched on the parts of the whole-picture pyramid levels over it (as a keyframe would
 * search it), for faces up to twice its size.
 */
export function motionWindows(motion: readonly Box[], covered: readonly SearchWindow[], picture: PictureSearch, params: TrackedSearchParams): SearchWindow[] {
  const { minFaceSize, pyramid } = picture;
  const coveredBoxes: Box[] = covered.map((w) => [w.x, w.y, w.x + w.width, w.y + w.height]);
  let boxes: Box[] = [];
  for (const m of motion) {
    if (coveredBoxes.some((c) => inside(m, c))) continue;
    const w = m[2] - m[0];
    const h = m[3] - m[1];
    const mx = params.motionMargin * w + minFaceSize / 2;
    const my = params.motionMargin * h + minFaceSize / 2;
    boxes.push([Math.max(0, m[0] - mx), Math.max(0, m[1] - my), Math.min(picture.width, m[2] + mx), Math.min(picture.height, m[3] + my)]);
  }
  // Merge until no two overlap (a few boxes per frame: the quadratic loop is cheap).
  for (let merged = true; merged; ) {
    merged = false;
    const out: Box[] = [];
    for (const b of boxes) {
      const hit = out.findIndex((o) => intersects(o, b));
      if (hit < 0) {
        out.push(b);
        continue;
      }
      const o = out[hit];
      out[hit] = [Math.min(o[0], b[0]), Math.min(o[1], b[1]), Math.max(o[2], b[2]), Math.max(o[3], b[3])];
      merged = true;
    }
    boxes = out;
  }
  const windows: SearchWindow[] = [];
  for (const b of boxes) {
    let x = Math.floor(b[0]);
    let y = Math.floor(b[1]);
    let width = Math.ceil(b[2]) - x;
    let height = Math.ceil(b[3]) - y;
    // P-Net needs at least one minimum face in each direction.
    if (width < minFaceSize) {
      x = Math.max(0, Math.min(picture.width - minFaceSize, Math.round(x - (minFaceSize - width) / 2)));
      width = Math.min(picture.width, Math.ceil(minFaceSize));
    }
    if (height < minFaceSize) {
      y = Math.max(0, Math.min(picture.height - minFaceSize, Math.round(y - (minFaceSize - height) / 2)));
      height = Math.min(picture.height, Math.ceil(minFaceSize));
    }
    if (width < 12 || height < 12) continue;
    // Faces up to twice the window's size can show motion inside it only.
    const largest = 2 * Math.max(width, height);
    const rect = { x, y, width, height };
    const levels = pyramid.filter((l) => 12 / l.scale <= largest).flatMap((l) => levelPart(l, rect, picture) ?? []);
    if (levels.length) windows.push({ ...rect, levels });
  }
  return windows;
}

/** Share of the picture the windows cover (overlaps counted twice; clipped to the picture). */
export function searchedShare(windows: readonly SearchWindow[], picture: { width: number; height: number }): number {
  let sum = 0;
  for (const w of windows) {
    const x1 = Math.max(0, w.x);
    const y1 = Math.max(0, w.y);
    const x2 = Math.min(picture.width, w.x + w.width);
    const y2 = Math.min(picture.height, w.y + w.height);
    if (x2 > x1 && y2 > y1) sum += (x2 - x1) * (y2 - y1);
  }
  return sum / area(picture);
}
