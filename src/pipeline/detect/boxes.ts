/**
 * Box arithmetic of the MTCNN cascade. The +1 pixel conventions differ between stages on purpose:
 * they follow the reference implementation (MATLAB heritage), and parity depends on them.
 */

/** A cascade candidate: box, score, and the regression offsets predicted for it. */
export interface Candidate {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  score: number;
  dx1: number;
  dy1: number;
  dx2: number;
  dy2: number;
}

export type OverlapMode = 'union' | 'union+1' | 'min+1';

/**
 * Greedy non-maximum suppression: keeps the best-scoring box, drops every remaining box whose
 * overlap with it exceeds `threshold`, repeats. 'union' is IoU with continuous areas (torchvision),
 * 'union+1'/'min+1' use inclusive pixel areas, the latter dividing by the smaller box.
 * Returns kept candidates, best first.
 */
export function nms<T extends Candidate>(cands: readonly T[], threshold: number, mode: OverlapMode): T[] {
  const n = cands.length;
  if (n <= 1) return cands.slice();
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => cands[b].score - cands[a].score);
  const plus = mode === 'union' ? 0 : 1;
  const area = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const c = cands[i];
    area[i] = (c.x2 - c.x1 + plus) * (c.y2 - c.y1 + plus);
  }
  const removed = new Uint8Array(n);
  const kept: T[] = [];
  for (let oi = 0; oi < n; oi++) {
    const i = order[oi];
    if (removed[i]) continue;
    const a = cands[i];
    kept.push(a);
    for (let oj = oi + 1; oj < n; oj++) {
      const j = order[oj];
      if (removed[j]) continue;
      const b = cands[j];
      const w = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1) + plus;
      if (w <= 0) continue;
      const h = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1) + plus;
      if (h <= 0) continue;
      const inter = w * h;
      const overlap = mode === 'min+1' ? inter / Math.min(area[i], area[j]) : inter / (area[i] + area[j] - inter);
      if (overlap > threshold) removed[j] = 1;
    }
  }
  return kept;
}

/** Applies the regression offsets scaled by the box size; `plus` is 0 after P-Net and 1 after R-/O-Net. */
export function regress(c: Candidate, plus: 0 | 1): void {
  const w = c.x2 - c.x1 + plus;
  const h = c.y2 - c.y1 + plus;
  const x1 = c.x1 + c.dx1 * w;
  const y1 = c.y1 + c.dy1 * h;
  const x2 = c.x2 + c.dx2 * w;
  const y2 = c.y2 + c.dy2 * h;
  c.x1 = x1;
  c.y1 = y1;
  c.x2 = x2;
  c.y2 = y2;
}

/** Makes the box square about its centre, side = the longer side. */
export function square(c: Candidate): void {
  const w = c.x2 - c.x1;
  const h = c.y2 - c.y1;
  const l = Math.max(w, h);
  c.x1 = c.x1 + w * 0.5 - l * 0.5;
  c.y1 = c.y1 + h * 0.5 - l * 0.5;
  c.x2 = c.x1 + l;
  c.y2 = c.y1 + l;
}

/** Intersection over union of two [x1, y1, x2, y2] boxes with continuous areas. */
export function iou(a: readonly number[], b: readonly number[]): number {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
}
