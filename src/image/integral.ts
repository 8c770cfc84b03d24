import type { RgbImage } from './types.js';

/**
 * One adaptive average pooling from an IntegralImage: the srcW x srcH source rectangle at
 * (x0, y0) (integer picture pixels) pooled to outW x outH, of which only the cells `part` (all of
 * them by default) are written, as three planes of cols x rows float32 values from dst[offset],
 * each value v written as (v - mean) * scale (see IntegralImage.poolPartInto). The jobs of one
 * `pool` call write disjoint cells: the kernel runs them in an order of its own.
 */
export interface PoolJob {
  x0: number;
  y0: number;
  srcW: number;
  srcH: number;
  outW: number;
  outH: number;
  part?: { col: number; row: number; cols: number; rows: number };
  dst: Float32Array;
  offset: number;
}

/** A rectangle of a picture, in pixels. */
export interface PixelRect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Pictures of more pixels than this get Float64 sums (Int32 ones hold 255 * pixels < 2^31). */
const INT32_PIXELS = 8_000_000;

/**
 * Summed-area table of an RGB image. With it, the mean of any axis-aligned rectangle costs four
 * reads per channel whatever its size, so every pyramid level and every crop of the MTCNN cascade
 * is area-averaged (PyTorch's `interpolate(mode="area")`, i.e. adaptive average pooling, which the
 * reference detector uses) in time proportional to the *output* size.
 *
 * Layout: (height + 1) rows of (width + 1) * 3 sums, interleaved RGB; row 0 and column 0 are zero.
 * Int32 sums (fast small integers in V8) are exact up to 8.4 MP (255 * pixels < 2^31); larger
 * pictures use Float64, exact to 2^53. These JavaScript loops are the reference and the fallback:
 * detection pools with AreaPooler, whose WebAssembly kernel gives the same values, bit for bit,
 * without a table in memory.
 */
export class IntegralImage {
  /** Width and height of the table's region (the whole picture unless `compute` got a region). */
  width = 0;
  height = 0;
  /** Top-left corner of the region in picture pixels: pooling takes picture coordinates. */
  originX = 0;
  originY = 0;
  sums: Int32Array | Float64Array = new Int32Array(0);
  /** Reused index tables for pooling windows. */
  private xs = new Int32Array(0);
  private xe = new Int32Array(0);
  private colInv = new Float64Array(0);

  /**
   * The rectangle of `img` a table of `region` covers (picture pixels): the region widened to
   * whole pixels and clipped to the picture; the whole picture without one.
   */
  static covered(img: { width: number; height: number }, region?: PixelRect): PixelRect {
    if (!region) return { x: 0, y: 0, width: img.width, height: img.height };
    const x = Math.max(0, Math.floor(region.x));
    const y = Math.max(0, Math.floor(region.y));
    const width = Math.max(0, Math.min(img.width, Math.ceil(region.x + region.width)) - x);
    const height = Math.max(0, Math.min(img.height, Math.ceil(region.y + region.height)) - y);
    return { x, y, width, height };
  }

  /**
   * Fills the table from `img`, reusing this object's memory when the size allows. With `region`
   * (picture pixels, clipped to the picture) only that rectangle is summed, and pooling treats
   * everything outside it as black, as it does outside the picture: a tracked face's window costs
   * its own area, not the whole frame's. Throws a RangeError for a picture that `checkPicture` refuses.
   */
  compute(img: RgbImage, region?: PixelRect): this {
    checkPicture(img);
    const { x: rx, y: ry, width: w, height: h } = IntegralImage.covered(img, region);
    const data = img.data;
    const rowSkip = (img.width - w) * 3;
    const stride = (w + 1) * 3;
    const needed = (h + 1) * stride;
    const wide = w * h > INT32_PIXELS;
    this.width = w;
    this.height = h;
    this.originX = rx;
    this.originY = ry;
    if (this.sums.length < needed || (wide && this.sums instanceof Int32Array) || (!wide && this.sums instanceof Float64Array)) {
      this.sums = wide ? new Float64Array(needed) : new Int32Array(needed);
    }
    const s = this.sums;
    s.fill(0, 0, stride);
    // One running index over the table; the row above is `stride` behind.
    let src = (ry * img.width + rx) * 3;
    let i = stride;
    for (let y = 0; y < h; y++, src += rowSkip) {
      s[i] = 0;
      s[i + 1] = 0;
      s[i + 2] = 0;
      i += 3;
      let r = 0;
      let g = 0;
      let b = 0;
      for (const end = i + w * 3; i < end; i += 3, src += 3) {
        r += data[src];
        g += data[src + 1];
        b += data[src + 2];
        s[i] = s[i - stride] + r;
        s[i + 1] = s[i + 1 - stride] + g;
        s[i + 2] = s[i + 2 - stride] + b;
      }
    }
    return this;
  }

  /**
   * Runs every job with `poolPartInto`. Throws a RangeError, before pooling any job, when a job's
   * array is not a Float32Array, or its cells are not whole columns and rows or do not fit the
   * array from its offset (a non-negative integer): see checkJobs.
   */
  pool(jobs: readonly PoolJob[], mean: number, scale: number): void {
    checkJobs(jobs);
    for (const { x0, y0, srcW, srcH, outW, outH, part, dst, offset } of jobs) {
      this.poolPartInto(x0, y0, srcW, srcH, outW, outH, part ?? { col: 0, row: 0, cols: outW, rows: outH }, dst, offset, mean, scale);
    }
  }

  /**
   * Adaptive-average-pools the source rectangle starting at (x0, y0) of size srcW x srcH (integer
   * picture coordinates; parts outside the picture, or outside the computed region, count as
   * black, i.e. zero padding) to outW x outH
   * and writes it as planar channels at `dst[offset]`, each value mapped to (v - mean) * scale.
   *
   * Window of output index i: [floor(i * in / out), ceil((i + 1) * in / out)) as in PyTorch.
   */
  poolInto(x0: number, y0: number, srcW: number, srcH: number, outW: number, outH: number, dst: Float32Array, offset: number, mean: number, scale: number): void {
    this.poolPartInto(x0, y0, srcW, srcH, outW, outH, { col: 0, row: 0, cols: outW, rows: outH }, dst, offset, mean, scale);
  }

  /**
   * Like `poolInto`, but writes only output columns col..col+cols-1 and rows row..row+rows-1 of the
   * outW x outH result, as a cols x rows plane: bit for bit the same values as that part of the
   * whole result, at the cost of the part (a search window's share of a whole-picture pyramid level).
   */
  poolPartInto(
    x0: number,
    y0: number,
    srcW: number,
    srcH: number,
    outW: number,
    outH: number,
    part: { col: number; row: number; cols: number; rows: number },
    dst: Float32Array,
    offset: number,
    mean: number,
    scale: number,
  ): void {
    const s = this.sums;
    const w = this.width;
    const h = this.height;
    const stride = (w + 1) * 3;
    const { col, row, cols, rows } = part;
    const plane = cols * rows;
    x0 -= this.originX;
    y0 -= this.originY;
    if (this.xs.length < cols) {
      this.xs = new Int32Array(cols);
      this.xe = new Int32Array(cols);
    }
    const xs = this.xs;
    const xe = this.xe;
    if (this.colInv.length < cols) this.colInv = new Float64Array(cols);
    const colInv = this.colInv;
    const m = mean * scale;
    for (let j = 0; j < cols; j++) {
      const a = x0 + Math.floor(((col + j) * srcW) / outW);
      const b = x0 + Math.ceil(((col + j + 1) * srcW) / outW);
      colInv[j] = 1 / (b - a);
      xs[j] = (a < 0 ? 0 : a > w ? w : a) * 3;
      xe[j] = (b < 0 ? 0 : b > w ? w : b) * 3;
    }
    for (let i = 0; i < rows; i++) {
      const a = y0 + Math.floor(((row + i) * srcH) / outH);
      const b = y0 + Math.ceil(((row + i + 1) * srcH) / outH);
      const rowA = (a < 0 ? 0 : a > h ? h : a) * stride;
      const rowB = (b < 0 ? 0 : b > h ? h : b) * stride;
      const rowK = scale / (b - a);
      let o = offset + i * cols;
      for (let j = 0; j < cols; j++, o++) {
        const p = xs[j];
        const q = xe[j];
        const k = rowK * colInv[j];
        dst[o] = (s[rowB + q] - s[rowA + q] - s[rowB + p] + s[rowA + p]) * k - m;
        dst[o + plane] = (s[rowB + q + 1] - s[rowA + q + 1] - s[rowB + p + 1] + s[rowA + p + 1]) * k - m;
        dst[o + 2 * plane] = (s[rowB + q + 2] - s[rowA + q + 2] - s[rowB + p + 2] + s[rowA + p + 2]) * k - m;
      }
    }
  }
}

/**
 * Throws a RangeError when `img` is not a picture to pool: its width and height must be
 * non-negative integers, and its data must be bytes (a Uint8Array, Buffer or Uint8ClampedArray,
 * of any realm) and hold at least width * height * 3 of them. Pooling a shorter buffer would read past
 * it: IntegralImage's sums would take the missing pixels as black, and the WebAssembly kernel
 * would read what an earlier picture left in its memory. The kernel reads data's bytes (none of a
 * plain array), where IntegralImage reads its elements: other element types would differ.
 */
export function checkPicture(img: RgbImage): void {
  const { width, height, data } = img;
  // The tag, not instanceof: a picture made in a worker or another context is a Uint8Array of its realm.
  const kind = Object.prototype.toString.call(data);
  if (!ArrayBuffer.isView(data) || (kind !== '[object Uint8Array]' && kind !== '[object Uint8ClampedArray]')) {
    throw new RangeError(`a picture's data must be bytes (a Uint8Array or Buffer), not ${kind}`);
  }
  if (!(Number.isInteger(width) && Number.isInteger(height) && width >= 0 && height >= 0)) {
    throw new RangeError(`a picture of ${width} x ${height} pixels cannot be pooled: its sizes must be non-negative integers`);
  }
  if (data.length < width * height * 3) {
    throw new RangeError(`a picture of ${width} x ${height} pixels needs ${width * height * 3} bytes of RGB; its data holds ${data.length}`);
  }
}

/**
 * Throws a RangeError naming the first job whose array is not a Float32Array (of any realm: the
 * kernel copies float32 values with its `set`), whose output (its part's cols x rows, else
 * outW x outH) is not a whole number of columns and rows (the loops would write whole rows of
 * planes a fractional size apart, past its cells), or whose cells do not fit its array from its offset.
 */
export function checkJobs(jobs: readonly PoolJob[]): void {
  let checked: unknown;
  for (let n = 0; n < jobs.length; n++) {
    const { outW, outH, part, dst, offset } = jobs[n];
    // Once per array: a batch's jobs (hundreds of crops) share one.
    if (dst !== checked) {
      const kind = Object.prototype.toString.call(dst);
      if (!ArrayBuffer.isView(dst) || kind !== '[object Float32Array]') throw new RangeError(`pooling job ${n}: its array must be a Float32Array, not ${kind}`);
      checked = dst;
    }
    const cols = part ? part.cols : outW;
    const rows = part ? part.rows : outH;
    if (!(Number.isInteger(cols) && Number.isInteger(rows))) {
      throw new RangeError(`pooling job ${n}: an output of ${cols} x ${rows} cells is not whole columns and rows`);
    }
    const values = 3 * Math.max(0, cols) * Math.max(0, rows);
    if (!(Number.isInteger(offset) && offset >= 0 && offset + values <= dst.length)) {
      throw new RangeError(`pooling job ${n}: ${values} values from offset ${offset} do not fit its array of ${dst.length}`);
    }
  }
}
