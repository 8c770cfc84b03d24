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
 * Returns kept candidates, best first (ties in input order).
 *
 * A kept box is compared only with the boxes sharing a cell of a uniform grid with it, not with
 * every box: P-Net proposes thousands of boxes on a 1080p frame and the all-pairs loop took tens
 * of milliseconds. In the union modes, where IoU <= smaller area / larger area, boxes whose areas
 * differ by a factor of 1 / threshold or more cannot suppress each other: the boxes are bucketed
 * by size (classes of that factor), each class has a grid of its own, and a box looks only in its
 * class and the two next to it. So a large box is not compared with the small boxes of the finer
 * pyramid levels around it (the NMS across levels of a 1080p frame: 3.2 ms before, at min face
 * 20). The result is the same as the all-pairs loop's, bit for bit.
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
  const rank = new Int32Array(n);
  order.forEach((i, r) => (rank[i] = r));
  // The grids' arithmetic needs finite extents: with a box of no number or beyond 1e300, all pairs.
  const gridded = n >= 64 && cands.every((c) => Math.max(Math.abs(c.x1), Math.abs(c.y1), Math.abs(c.x2), Math.abs(c.y2)) <= 1e300);
  const grid = gridded ? neighbourhood(cands, area, plus, mode === 'min+1' ? undefined : threshold) : undefined;
  const removed = new Uint8Array(n);
  const seen = new Int32Array(n).fill(-1);
  const kept: T[] = [];
  const suppress = (i: number, j: number) => {
    const a = cands[i];
    const b = cands[j];
    const w = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1) + plus;
    if (w <= 0) return;
    const h = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1) + plus;
    if (h <= 0) return;
    const inter = w * h;
    const overlap = mode === 'min+1' ? inter / Math.min(area[i], area[j]) : inter / (area[i] + area[j] - inter);
    if (overlap > threshold) removed[j] = 1;
  };
  for (let oi = 0; oi < n; oi++) {
    const i = order[oi];
    if (removed[i]) continue;
    kept.push(cands[i]);
    if (!grid) {
      for (let oj = oi + 1; oj < n; oj++) if (!removed[order[oj]]) suppress(i, order[oj]);
      continue;
    }
    grid.visit(i, (j) => {
      if (rank[j] <= oi || removed[j] || seen[j] === i) return;
      seen[j] = i;
      suppress(i, j);
    });
  }
  return kept;
}

/** Finds the boxes that may overlap a box enough to suppress it (a superset; see nms). */
interface Neighbourhood {
  visit(i: number, fn: (j: number) => void): void;
}

/**
 * One grid of all boxes, or with an IoU `threshold` in (0, 1 - 1e-6), one grid per size class:
 * class floor(log(area) / log(1 / threshold)), widened by 0.1% so that rounding in the logarithms
 * cannot split two boxes whose area ratio is under 1 / threshold by two classes. Boxes of no
 * positive area overlap nothing (suppress skips them) and are in no class. Closer to 1, that 0.1%
 * would be within the rounding of the logarithms (about 1e-13 for any area), and the class
 * numbers past 2^53.
 */
function neighbourhood(boxes: readonly Candidate[], area: Float64Array, plus: number, threshold?: number): Neighbourhood {
  if (threshold === undefined || !(threshold > 0 && threshold < 1 - 1e-6)) return new BoxGrid(boxes, plus);
  const width = Math.log(1 / threshold) * 1.001;
  const classOf = new Float64Array(boxes.length);
  const members = new Map<number, number[]>();
  for (let i = 0; i < boxes.length; i++) {
    const a = area[i];
    classOf[i] = a > 0 && a < Infinity ? Math.floor(Math.log(a) / width) : NaN;
    if (Number.isNaN(classOf[i])) continue;
    const list = members.get(classOf[i]);
    if (list) list.push(i);
    else members.set(classOf[i], [i]);
  }
  const grids = new Map<number, BoxGrid>();
  for (const [c, list] of members) grids.set(c, new BoxGrid(boxes, plus, list));
  return {
    visit(i, fn) {
      const c = classOf[i];
      if (Number.isNaN(c)) return;
      for (let k = c - 1; k <= c + 1; k++) grids.get(k)?.visit(i, fn);
    },
  };
}

/**
 * Boxes (all, or the `members` given) bucketed by the grid cells their closed extent
 * [x1, x2 + plus] x [y1, y2 + plus] touches; two boxes that overlap at all share a cell. The cell
 * side is the median box width, so a box touches a handful of cells whatever the mix of pyramid
 * levels. Any box may be looked up, member or not.
 */
class BoxGrid implements Neighbourhood {
  private readonly x0: number;
  private readonly y0: number;
  private readonly inv: number;
  private readonly cols: number;
  private readonly rows: number;
  private readonly start: Int32Array;
  private readonly items: Int32Array;

  constructor(
    private readonly boxes: readonly Candidate[],
    private readonly plus: number,
    members: readonly number[] = boxes.map((_, i) => i),
  ) {
    const n = members.length;
    let x0 = Infinity;
    let y0 = Infinity;
    let x1 = -Infinity;
    let y1 = -Infinity;
    const widths = new Float64Array(n);
    members.forEach((i, k) => {
      const b = boxes[i];
      x0 = Math.min(x0, b.x1);
      y0 = Math.min(y0, b.y1);
      x1 = Math.max(x1, b.x2 + plus);
      y1 = Math.max(y1, b.y2 + plus);
      widths[k] = b.x2 - b.x1 + plus;
    });
    widths.sort();
    // At most ~512 cells a side, whatever the spread of the boxes.
    const side = Math.max(1, widths[n >> 1], (x1 - x0) / 512, (y1 - y0) / 512);
    this.x0 = x0;
    this.y0 = y0;
    this.inv = 1 / side;
    this.cols = Math.floor((x1 - x0) * this.inv) + 1;
    this.rows = Math.floor((y1 - y0) * this.inv) + 1;
    // ranges[4k..4k+3]: the cell range member k touches.
    const ranges = new Int32Array(4 * n);
    const count = new Int32Array(this.cols * this.rows + 1);
    members.forEach((i, k) => {
      const [cx0, cy0, cx1, cy1] = this.range(i);
      ranges.set([cx0, cy0, cx1, cy1], 4 * k);
      for (let cy = cy0; cy <= cy1; cy++) for (let cx = cx0; cx <= cx1; cx++) count[cy * this.cols + cx + 1]++;
    });
    for (let c = 1; c < count.length; c++) count[c] += count[c - 1];
    this.start = count.slice();
    this.items = new Int32Array(count[count.length - 1]);
    const fill = count.slice(0, -1);
    members.forEach((i, k) => {
      const r = 4 * k;
      for (let cy = ranges[r + 1]; cy <= ranges[r + 3]; cy++) for (let cx = ranges[r]; cx <= ranges[r + 2]; cx++) this.items[fill[cy * this.cols + cx]++] = i;
    });
  }

  /** The cells box i touches, clipped to the grid (empty when it lies outside). */
  private range(i: number): [number, number, number, number] {
    const b = this.boxes[i];
    const cx0 = Math.floor((b.x1 - this.x0) * this.inv);
    const cy0 = Math.floor((b.y1 - this.y0) * this.inv);
    // A degenerate box (x2 < x1) overlaps nothing; it still gets its corner cell.
    const cx1 = Math.max(cx0, Math.floor((b.x2 + this.plus - this.x0) * this.inv));
    const cy1 = Math.max(cy0, Math.floor((b.y2 + this.plus - this.y0) * this.inv));
    return [Math.max(0, cx0), Math.max(0, cy0), Math.min(this.cols - 1, cx1), Math.min(this.rows - 1, cy1)];
  }

  /** Calls `fn` with every member sharing a cell with box i (members touching several cells more than once). */
  visit(i: number, fn: (j: number) => void): void {
    const [cx0, cy0, cx1, cy1] = this.range(i);
    for (let cy = cy0; cy <= cy1; cy++) {
      for (let cx = cx0; cx <= cx1; cx++) {
        const c = cy * this.cols + cx;
        for (let p = this.start[c]; p < this.start[c + 1]; p++) fn(this.items[p]);
      }
    }
  }
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
