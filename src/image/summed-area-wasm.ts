import fs from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../paths.js';
import type { PoolJob } from './integral.js';
import type { RgbImage } from './types.js';

/** The committed WebAssembly build of src/image/wasm/summed-area.c (scripts/build-wasm.sh). */
export const SUMMED_AREA_WASM = path.join(PACKAGE_ROOT, 'src', 'image', 'wasm', 'summed-area.wasm');

const PAGE = 65536;
/** The kernel's vector loads and stores reach up to this far past the pixels and the table. */
const SLACK = 16;
const align = (n: number) => Math.ceil(n / SLACK) * SLACK;
/** Pixels are copied into the module's memory this many bytes at a time (whole rows; at least one). */
const BAND_BYTES = 256 * 1024;
/** Pooling calls with at most this many jobs interleave their rows (see pool_from_table's sweep). */
const SWEEP_JOBS = 32;
/** Output bytes of one kernel call: what pooling adds to a table's memory (see SummedAreaTable.pool). */
const OUTPUT_BYTES = 2 * 1024 * 1024;
/** Bytes of one pool_job record (17 int32 fields, as summed-area.c lays it out). */
const JOB_BYTES = 68;
/** What SummedAreaTable uses of an instance (as WebAssembly.Module.exports lists them). */
const KERNEL_EXPORTS = ['memory memory', 'function summed_area_rows', 'function pool_from_table', 'global __heap_base'];

/**
 * The summed-area table kernels in WebAssembly SIMD, compiled once (per detector): the same table
 * as IntegralImage's JavaScript loop, bit for bit, about 4x faster (a 1080p frame on its own:
 * 1.45 ms against 5.7, plus 0.3 ms to copy the pixels into the module's memory; in `bench core`,
 * beside onnxruntime's threads: 1.9 against 7.3; measured on 2 cores), and pooling from it, the
 * values of IntegralImage.poolPartInto bit for bit, 2-3x faster (a 1080p frame on its own: the
 * pyramid at min face 20 / 40 in 5.5 / 2.0 ms against 14.0 / 4.1, 735 R-Net crops in 4.1 against
 * 7.1). Node has had WebAssembly SIMD since 16.4.
 */
export class SummedAreaModule {
  private constructor(private readonly module: WebAssembly.Module) {}

  /**
   * Compiles the kernels and checks their exports (memory, summed_area_rows, pool_from_table,
   * __heap_base), so a bad installation fails when the detector is made, not on its first frame.
   * Throws an Error naming `file` and how to restore it when the file is missing, is not
   * WebAssembly this Node can run (e.g. a Git LFS pointer, a truncated copy) or is another build
   * without the kernels.
   */
  static load(file: string = SUMMED_AREA_WASM): SummedAreaModule {
    const remedy = 'restore it from the facestream package, or rebuild it with scripts/build-wasm.sh (clang and lld)';
    let module: WebAssembly.Module;
    try {
      module = new WebAssembly.Module(fs.readFileSync(file));
    } catch (err) {
      throw new Error(`summed-area kernel ${file} cannot be loaded (${(err as Error).message}): ${remedy}`, { cause: err });
    }
    const exported = new Set(WebAssembly.Module.exports(module).map((e) => `${e.kind} ${e.name}`));
    const missing = KERNEL_EXPORTS.filter((e) => !exported.has(e));
    if (missing.length > 0) throw new Error(`summed-area kernel ${file} lacks ${missing.join(', ')}: ${remedy}`);
    return new SummedAreaModule(module);
  }

  /** A table with memory of its own (each search window of a batch holds its table at once). */
  table(): SummedAreaTable {
    return new SummedAreaTable(this.module);
  }
}

/** One summed-area table in its own instance's WebAssembly memory, grown as pictures need and reused. */
export class SummedAreaTable {
  private readonly memory: WebAssembly.Memory;
  private readonly kernel: (pixels: number, width: number, rows: number, row: number) => void;
  private readonly poolKernel: (table: number, width: number, height: number, jobs: number, count: number, mean: number, scale: number, sweep: number, next: number) => void;
  /** Where the module's own data and stack end: the table goes after. */
  private readonly base: number;
  /** The table's width in pixels, and where pooling lays out its jobs (after the table). */
  private tableWidth = 0;
  private work = 0;
  private views: { i32: Int32Array; f32: Float32Array } | undefined;
  private tableLength = 0;

  constructor(module: WebAssembly.Module) {
    const { exports } = new WebAssembly.Instance(module, {});
    this.memory = exports.memory as WebAssembly.Memory;
    this.kernel = exports.summed_area_rows as SummedAreaTable['kernel'];
    this.poolKernel = exports.pool_from_table as SummedAreaTable['poolKernel'];
    this.base = align((exports.__heap_base as WebAssembly.Global).value);
  }

  /**
   * The table of the `width` x `height` rectangle at (x, y) of `img` (integer pixels inside the
   * picture, else a RangeError; an empty rectangle may lie anywhere): (height + 1) rows of
   * (width + 1) * 3 Int32 sums, a view of this table's memory that the next call replaces. Sums
   * are exact while 255 * width * height < 2^31 (the caller keeps larger pictures on Float64).
   * The pixels go through a band of rows in the same memory, so the memory holds the table and
   * about 256 KiB more, not a second copy of the picture.
   */
  compute(img: RgbImage, x: number, y: number, width: number, height: number): Int32Array {
    // The band is copied with subarray, which clips silently: a rectangle reaching out of the
    // picture would be summed from the previous band's bytes. An empty one reads nothing.
    const inside = width === 0 || height === 0 || (x >= 0 && y >= 0 && x + width <= img.width && y + height <= img.height);
    if (![x, y, width, height].every(Number.isInteger) || width < 0 || height < 0 || !inside) {
      throw new RangeError(`summed-area table: rectangle ${width}x${height} at (${x}, ${y}) is not integer pixels inside the ${img.width}x${img.height} picture`);
    }
    const stride = (width + 1) * 3;
    const sumsBytes = (height + 1) * stride * 4;
    const rowBytes = width * 3;
    const bandRows = Math.max(1, Math.min(height, Math.floor(BAND_BYTES / Math.max(1, rowBytes))));
    // The table first (16-byte aligned), the band after it.
    const sumsAt = this.base;
    const bandAt = sumsAt + sumsBytes + SLACK;
    const end = bandAt + bandRows * rowBytes + SLACK;
    const pages = Math.ceil(end / PAGE) - this.memory.buffer.byteLength / PAGE;
    if (pages > 0) this.memory.grow(pages);
    const bytes = new Uint8Array(this.memory.buffer);
    bytes.fill(0, sumsAt, sumsAt + stride * 4);
    for (let top = 0; top < height; top += bandRows) {
      const rows = Math.min(bandRows, height - top);
      if (x === 0 && width === img.width) {
        bytes.set(img.data.subarray((y + top) * rowBytes, (y + top + rows) * rowBytes), bandAt);
      } else {
        for (let r = 0; r < rows; r++) {
          const from = ((y + top + r) * img.width + x) * 3;
          bytes.set(img.data.subarray(from, from + rowBytes), bandAt + r * rowBytes);
        }
      }
      this.kernel(bandAt, width, rows, sumsAt + (top + 1) * stride * 4);
    }
    this.tableWidth = width;
    this.tableLength = sumsBytes / 4;
    this.work = bandAt;
    return new Int32Array(this.memory.buffer, sumsAt, sumsBytes / 4);
  }

  /** Bytes of this table's memory (it grows as pictures need and never shrinks). */
  get bytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** A view of the last computed table (a grown memory leaves earlier views empty). */
  table(): Int32Array {
    return new Int32Array(this.memory.buffer, this.base, this.tableLength);
  }

  /**
   * Runs IntegralImage pooling jobs on the last computed table, whose top-left corner is picture
   * pixel (originX, originY) and which is `height` rows high: each job's values are those of
   * IntegralImage.poolPartInto on the same table, bit for bit. Every job must be `kernelJob`.
   *
   * The results go through the kernel's memory (where the band of pixels was) in calls of at
   * most OUTPUT_BYTES of output each, so pooling adds about that much to the table's memory, not
   * a whole pyramid (18 MB at 1080p and min face 20). A few jobs (a pyramid's levels) go down the
   * table together, in stripes of table rows, each call pooling every level's rows in its stripe;
   * many jobs (crops) are pooled in the order of their rows, as many a call as fit.
   */
  pool(jobs: readonly PoolJob[], originX: number, originY: number, height: number, mean: number, scale: number): void {
    if (jobs.length === 0) return;
    const bands = (job: PoolJob, first: number, rows: number): Band => ({ job, first, rows, cols: job.part?.cols ?? job.outW });
    if (jobs.length > SWEEP_JOBS) {
      const ordered = [...jobs].sort((a, b) => a.y0 - b.y0);
      let call: Band[] = [];
      let bytes = 0;
      for (const job of ordered) {
        const band = bands(job, 0, job.part?.rows ?? job.outH);
        const size = band.cols * band.rows * 12;
        if (call.length > 0 && bytes + size > OUTPUT_BYTES) {
          this.run(call, originX, originY, height, mean, scale, false);
          call = [];
          bytes = 0;
        }
        call.push(band);
        bytes += size;
      }
      this.run(call, originX, originY, height, mean, scale, false);
      return;
    }
    // Stripes of table rows, each with about OUTPUT_BYTES of output; a job's output rows go to
    // the stripe where their windows end (roughly: any split gives the same values).
    const output = jobs.reduce((sum, job) => sum + cells(job) * 12, 0);
    const stripes = Math.max(1, Math.ceil(output / OUTPUT_BYTES));
    const done = jobs.map(() => 0);
    for (let stripe = 1; stripe <= stripes; stripe++) {
      const call: Band[] = [];
      jobs.forEach((job, n) => {
        const rows = job.part?.rows ?? job.outH;
        const until = stripe === stripes ? rows : Math.min(rows, Math.max(done[n], Math.round((rows * stripe) / stripes)));
        if (until > done[n]) call.push(bands(job, done[n], until - done[n]));
        done[n] = until;
      });
      this.run(call, originX, originY, height, mean, scale, true);
    }
  }

  /**
   * One kernel call: each band (rows first..first+rows-1 of a job's cells) is pooled into the
   * kernel's memory as three planes of cols x rows, then copied to its place in the job's `dst`
   * (at once for whole jobs that tile a range of one array, as a batch of crops does).
   */
  private run(bands: readonly Band[], originX: number, originY: number, height: number, mean: number, scale: number, sweep: boolean): void {
    const next = this.work;
    const records = next + bands.length * 4;
    let at = align(records + bands.length * JOB_BYTES);
    // Whole jobs of one array that tile a range of it share one output span and one copy.
    const spans = new Map<Float32Array, { start: number; end: number; bands: Band[]; at: number }>();
    for (const band of bands) {
      const { job } = band;
      if (band.rows !== (job.part?.rows ?? job.outH)) continue;
      const end = job.offset + 3 * cells(job);
      const span = spans.get(job.dst);
      if (!span) spans.set(job.dst, { start: job.offset, end, bands: [band], at: -1 });
      else {
        span.start = Math.min(span.start, job.offset);
        span.end = Math.max(span.end, end);
        span.bands.push(band);
      }
    }
    // The bands in a span (a partial band of another job may write to the same array).
    const tiled = new Set<Band>();
    for (const span of spans.values()) {
      const byOffset = span.bands.map((band) => band.job).sort((a, b) => a.offset - b.offset);
      if (span.bands.length > 1 && byOffset.every((job, k) => k === 0 || job.offset === byOffset[k - 1].offset + 3 * cells(byOffset[k - 1]))) {
        span.at = at;
        at = align(at + (span.end - span.start) * 4);
        for (const band of span.bands) tiled.add(band);
      }
    }
    const layouts = bands.map((band) => {
      const { cols, rows, job } = band;
      const span = tiled.has(band) ? spans.get(job.dst) : undefined;
      let dst = span ? span.at + (job.offset - span.start) * 4 : -1;
      if (dst < 0) {
        dst = at;
        at = align(at + cols * rows * 12);
      }
      const colInv = at;
      const rowK = colInv + cols * 8;
      const xs = rowK + rows * 8;
      const xe = xs + cols * 4;
      const ya = xe + cols * 4;
      const yb = ya + rows * 4;
      at = align(yb + rows * 4);
      return { band, colInv, rowK, xs, xe, ya, yb, dst, inSpan: span !== undefined };
    });
    const pages = Math.ceil(at / PAGE) - this.memory.buffer.byteLength / PAGE;
    if (pages > 0) this.memory.grow(pages);
    const buffer = this.memory.buffer;
    // A grown memory has a new buffer: views are made again only then.
    if (this.views?.i32.buffer !== buffer) this.views = { i32: new Int32Array(buffer), f32: new Float32Array(buffer) };
    const { i32, f32 } = this.views;
    layouts.forEach((l, n) => {
      const { job, first, rows, cols } = l.band;
      const r = records / 4 + n * (JOB_BYTES / 4);
      i32[r] = job.x0 - originX;
      i32[r + 1] = job.y0 - originY;
      i32[r + 2] = job.srcW;
      i32[r + 3] = job.srcH;
      i32[r + 4] = job.outW;
      i32[r + 5] = job.outH;
      i32[r + 6] = job.part?.col ?? 0;
      i32[r + 7] = (job.part?.row ?? 0) + first;
      i32[r + 8] = cols;
      i32[r + 9] = rows;
      i32[r + 10] = l.xs;
      i32[r + 11] = l.xe;
      i32[r + 12] = l.ya;
      i32[r + 13] = l.yb;
      i32[r + 14] = l.colInv;
      i32[r + 15] = l.rowK;
      i32[r + 16] = l.dst;
      i32[next / 4 + n] = 0;
    });
    this.poolKernel(this.base, this.tableWidth, height, records, layouts.length, mean, scale, sweep ? 1 : 0, next);
    for (const [dst, span] of spans) {
      if (span.at >= 0) dst.set(f32.subarray(span.at / 4, span.at / 4 + span.end - span.start), span.start);
    }
    for (const l of layouts) {
      if (l.inSpan) continue;
      const { job, first, rows, cols } = l.band;
      const plane = cols * (job.part?.rows ?? job.outH);
      for (let c = 0; c < 3; c++) {
        const from = l.dst / 4 + c * cols * rows;
        job.dst.set(f32.subarray(from, from + cols * rows), job.offset + c * plane + first * cols);
      }
    }
  }
}

/** Rows first..first+rows-1 of a job's output cells (all of them for a whole job). */
interface Band {
  job: PoolJob;
  first: number;
  rows: number;
  cols: number;
}

/** Output cells of a job. */
function cells(job: PoolJob): number {
  return job.part ? job.part.cols * job.part.rows : job.outW * job.outH;
}

/**
 * Largest coordinate or size the kernel takes. The JavaScript loop's products ((col + j + 1) *
 * srcW, at most 2^49 here) are then exact doubles, whose quotients floor and ceil to the same
 * integers as the kernel's integer division; past 2^53 they need not (a window one pixel off).
 */
const KERNEL_LIMIT = 2 ** 24;

/**
 * Whether the kernel can run `job`: integer coordinates and sizes of at most 2^24, output sizes
 * of at least 1, a part from a cell (col, row) >= 0 of no negative size: the kernel's integer
 * division truncates, where the JavaScript loop floors a negative quotient (IntegralImage runs
 * any other job with its JavaScript loop).
 */
export function kernelJob(job: PoolJob): boolean {
  const { x0, y0, srcW, srcH, outW, outH, part } = job;
  const values = [x0, y0, srcW, srcH, outW, outH, part?.col ?? 0, part?.row ?? 0, part?.cols ?? 1, part?.rows ?? 1];
  return values.every((v) => Number.isInteger(v) && Math.abs(v) <= KERNEL_LIMIT) && outW >= 1 && outH >= 1 && srcW >= 1 && srcH >= 1 && values.slice(6).every((v) => v >= 0);
}
