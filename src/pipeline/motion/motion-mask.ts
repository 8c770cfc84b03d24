import type { Box, RgbImage } from '../../image/types.js';

/** How the motion mask is computed (config `detector.motion`). */
export interface MotionParams {
  /** Side of one mask cell in picture pixels: the frame is compared as a grid of cell means. */
  cellSize: number;
  /** A cell has changed when its mean luma differs from the background by more than this (0-255). */
  threshold: number;
  /** Background update rate per frame (running average): higher forgets still objects sooner. */
  backgroundAlpha: number;
  /** Connected groups of changed cells smaller than this are noise (sensor noise, compression). */
  minCells: number;
}

export const MOTION_DEFAULTS: MotionParams = { cellSize: 8, threshold: 10, backgroundAlpha: 0.1, minCells: 2 };

/**
 * The running background of one stream: one luma mean per cell. Held by the stream and handed to
 * whichever thread computes the next frame's mask (the array may live on a SharedArrayBuffer);
 * `fresh` asks for it to be (re)started from the next frame.
 */
export interface MotionBackground {
  cells: Float32Array;
  fresh: boolean;
}

export interface MotionMask {
  /** Boxes around connected changed cells, [x1, y1, x2, y2] in picture pixels, clipped to it. */
  boxes: Box[];
  /** Share of the picture's cells that changed (0-1). */
  changedShare: number;
}

/** Cells of the grid for a picture of this size. */
export function motionGrid(width: number, height: number, cellSize: number): { cols: number; rows: number } {
  return { cols: Math.ceil(width / cellSize), rows: Math.ceil(height / cellSize) };
}

/**
 * Compares the frame with the stream's running background and updates it, as NVR motion
 * detectors do (a small grey copy against a running average; Frigate, Motion, ZoneMinder): the
 * frame is reduced to cell means of luma (ITU-R BT.601 weights, every other pixel of every other
 * row sampled), cells differing by more than `threshold` are marked, the mark is dilated by one
 * cell, and the connected groups become boxes. A fresh background is started from this frame and
 * reports no motion. Cost: one read of a quarter of the frame's pixels.
 */
export function updateMotion(img: RgbImage, background: MotionBackground, params: MotionParams): MotionMask {
  const { width, height, data } = img;
  const cell = params.cellSize;
  const { cols, rows } = motionGrid(width, height, cell);
  const n = cols * rows;
  if (background.cells.length !== n) throw new Error(`motion background has ${background.cells.length} cells, the frame needs ${n}`);
  const gray = new Float32Array(n);
  const counts = new Uint16Array(n);
  for (let y = 0; y < height; y += 2) {
    const rowCell = ((y / cell) | 0) * cols;
    let p = y * width * 3;
    for (let x = 0; x < width; x += 2, p += 6) {
      const c = rowCell + ((x / cell) | 0);
      gray[c] += 0.299 * data[p] + 0.587 * data[p + 1] + 0.114 * data[p + 2];
      counts[c]++;
    }
  }
  for (let c = 0; c < n; c++) gray[c] /= counts[c] || 1;
  const bg = background.cells;
  if (background.fresh) {
    bg.set(gray);
    background.fresh = false;
    return { boxes: [], changedShare: 0 };
  }
  const changed = new Uint8Array(n);
  let changedCount = 0;
  const alpha = params.backgroundAlpha;
  for (let c = 0; c < n; c++) {
    if (Math.abs(gray[c] - bg[c]) > params.threshold) {
      changed[c] = 1;
      changedCount++;
    }
    bg[c] += alpha * (gray[c] - bg[c]);
  }
  return { boxes: changedCount ? groupBoxes(changed, cols, rows, cell, width, height, params.minCells) : [], changedShare: changedCount / n };
}

/** Dilates the changed cells by one, labels 8-connected groups, returns a box per group big enough. */
function groupBoxes(changed: Uint8Array, cols: number, rows: number, cell: number, width: number, height: number, minCells: number): Box[] {
  const n = cols * rows;
  const grown = new Uint8Array(n);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      if (!changed[r * cols + c]) continue;
      for (let dr = -1; dr <= 1; dr++) {
        const rr = r + dr;
        if (rr < 0 || rr >= rows) continue;
        for (let dc = -1; dc <= 1; dc++) {
          const cc = c + dc;
          if (cc >= 0 && cc < cols) grown[rr * cols + cc] = 1;
        }
      }
    }
  }
  const seen = new Uint8Array(n);
  const queue = new Int32Array(n);
  const boxes: Box[] = [];
  for (let start = 0; start < n; start++) {
    if (!grown[start] || seen[start]) continue;
    let head = 0;
    let tail = 0;
    queue[tail++] = start;
    seen[start] = 1;
    let minC = cols;
    let minR = rows;
    let maxC = -1;
    let maxR = -1;
    let core = 0;
    while (head < tail) {
      const i = queue[head++];
      const r = (i / cols) | 0;
      const c = i - r * cols;
      if (changed[i]) core++;
      if (c < minC) minC = c;
      if (c > maxC) maxC = c;
      if (r < minR) minR = r;
      if (r > maxR) maxR = r;
      for (let dr = -1; dr <= 1; dr++) {
        const rr = r + dr;
        if (rr < 0 || rr >= rows) continue;
        for (let dc = -1; dc <= 1; dc++) {
          const cc = c + dc;
          if (cc < 0 || cc >= cols) continue;
          const j = rr * cols + cc;
          if (grown[j] && !seen[j]) {
            seen[j] = 1;
            queue[tail++] = j;
          }
        }
      }
    }
    if (core < minCells) continue;
    boxes.push([minC * cell, minR * cell, Math.min(width, (maxC + 1) * cell), Math.min(height, (maxR + 1) * cell)]);
  }
  return boxes;
}
