import fs from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../paths.js';
import type { PoolJob } from './integral.js';
import type { RgbImage } from './types.js';

/** The committed WebAssembly build of src/image/wasm/summed-area.c (scripts/build-wasm.sh). */
export const SUMMED_AREA_WASM = path.join(PACKAGE_ROOT, 'src', 'image', 'wasm', 'summed-area.wasm');

const PAGE = 65536;
/** The kernel's vector loads and stores reach up to this far past the pixels and the running row. */
const SLACK = 16;
const align = (n: number) => Math.ceil(n / SLACK) * SLACK;
/** Pixels are copied into the module's memory this many bytes at a time (whole rows; at least one). */
const BAND_BYTES = 256 * 1024;
/** Pools with at most this many jobs (a pyramid's levels) are split into stripes of rows, not jobs. */
const STRIPE_JOBS = 32;
/**
 * Output bytes of one pass: what pooling holds in the module's memory (which never shrinks). A
 * larger pool goes in several passes; a split costs reading again the rows where windows cross it.
 * 8 MB: a 1080p pyramid at min face 40 (4.5 MB) and every crop of a crowded frame in one pass, at
 * min face 20 (15.6 MB) two.
 */
const OUTPUT_BYTES = 8 * 1024 * 1024;
/** Bytes of the kernel's sweep record (2 float64, 12 int32 fields) and of a pool_job (21 int32). */
const SWEEP_BYTES = 72;
const JOB_BYTES = 84;
/** What SummedAreaSweep uses of an instance (as WebAssembly.Module.exports lists them). */
const KERNEL_EXPORTS = ['memory memory', 'function sweep_begin', 'function sweep_rows', 'global __heap_base'];

/**
 * The area-pooling kernel in WebAssembly SIMD (src/image/wasm/summed-area.c), compiled once (per
 * detector): the values of IntegralImage.poolPartInto bit for bit, straight from the pixels with a
 * running summed-area row instead of a table in memory. A 1080p crowd frame on its own (medians,
 * 2 cores): the pyramid at min face 20 / 40 in 5.5 / 2.4 ms, against 6.8 / 3.7 for the table
 * kernel it replaced (its 1.6 ms table included); the R-Net crops (793 / 382) in 6.3 / 2.9 ms,
 * against 3.9 / 1.6 from a table already made; the JavaScript loops take several times as long.
 * Node has had WebAssembly SIMD since 16.4.
 */
export class SummedAreaModule {
  private constructor(private readonly module: WebAssembly.Module) {}

  /**
   * Compiles the kernel and checks its exports (memory, sweep_begin, sweep_rows, __heap_base), so
   * a bad installation fails when the detector is made, not on its first frame. Throws an Error
   * naming `file` and how to restore it when the file is missing, is not WebAssembly this Node
   * can run (e.g. a Git LFS pointer, a truncated copy) or is another build without the kernel.
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

  /** A kernel instance with memory of its own. */
  sweep(): SummedAreaSweep {
    return new SummedAreaSweep(this.module);
  }
}

/**
 * Pools jobs straight from a picture's pixels (see summed-area.c): each pass reads the rectangle
 * its jobs' windows cover once, a band of rows at a time, and holds in its instance's memory its
 * output (at most OUTPUT_BYTES), the band (about 256 KiB) and one running row; the memory grows
 * as pictures need and is reused.
 */
export class SummedAreaSweep {
  private readonly memory: WebAssembly.Memory;
  private readonly begin: (sweep: number) => void;
  private readonly rows: (sweep: number, pixels: number, rows: number) => void;
  /** Where the module's own data and stack end: a pass lays out its records after. */
  private readonly base: number;
  private views: { u8: Uint8Array; i32: Int32Array; f32: Float32Array; f64: Float64Array } | undefined;
  /** Pixels read so far: each pass reads the rectangle its jobs' windows cover. */
  private swept = 0;

  constructor(module: WebAssembly.Module) {
    const { exports } = new WebAssembly.Instance(module, {});
    this.memory = exports.memory as WebAssembly.Memory;
    this.begin = exports.sweep_begin as SummedAreaSweep['begin'];
    this.rows = exports.sweep_rows as SummedAreaSweep['rows'];
    this.base = align((exports.__heap_base as WebAssembly.Global).value);
  }

  /** Bytes of this instance's memory (it grows as pictures need and never shrinks). */
  get bytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** Picture pixels the passes have read so far (each pass once the rectangle its jobs' windows cover). */
  get sweptPixels(): number {
    return this.swept;
  }

  /**
   * Runs pooling jobs on `img` (picture coordinates): each job's values are those of
   * IntegralImage.poolPartInto on the picture's table, bit for bit. Every job must be `kernelJob`
   * and fit its array (AreaPooler.pool checks both).
   *
   * In groups of at most OUTPUT_BYTES of output each. A few jobs (a pyramid's levels) go down the
   * picture together, a group per stripe of their rows. Many jobs (crops) go in the order of their
   * tops, as many a group as fit. Each group goes in passes over clusters of nearby jobs: a pass
   * reads the whole rectangle its jobs cover, and the crops of a crowded frame cover about half of
   * it, scattered; the windows around two tracked faces, a few hundredths of it.
   */
  pool(img: RgbImage, jobs: readonly PoolJob[], mean: number, scale: number): void {
    const whole = (job: PoolJob): Band => ({ job, first: 0, rows: job.part?.rows ?? job.outH, cols: job.part?.cols ?? job.outW, out: 0 });
    const bands = jobs.map(whole).filter((band) => band.rows > 0 && band.cols > 0);
    if (bands.length === 0) return;
    if (bands.length <= STRIPE_JOBS) {
      for (const stripe of stripes(bands)) this.group(img, stripe, clusters(stripe, img), mean, scale);
      return;
    }
    const ordered = [...bands].sort((a, b) => a.job.y0 - b.job.y0);
    let group: Band[] = [];
    let bytes = 0;
    const flush = () => {
      if (group.length > 0) this.group(img, group, clusters(group, img), mean, scale);
      group = [];
      bytes = 0;
    };
    for (const band of ordered) {
      const size = band.cols * band.rows * 12;
      if (bytes + size > OUTPUT_BYTES) flush();
      if (size > OUTPUT_BYTES) for (const stripe of stripes([band])) this.group(img, stripe, [stripe], mean, scale);
      else {
        group.push(band);
        bytes += size;
      }
    }
    flush();
  }

  /**
   * One group: each band (rows first..first+rows-1 of a job's cells) is pooled into the kernel's
   * memory as three planes of cols x rows, by one pass per set of `passes`, then copied to its
   * place in the job's `dst` (at once when the group's bands are whole jobs of one size that tile
   * a range of one array, as a batch of crops does).
   */
  private group(img: RgbImage, bands: Band[], passes: readonly Band[][], mean: number, scale: number): void {
    let at = this.base;
    const tiled = tiledRange(bands);
    if (tiled) {
      for (const band of bands) band.out = at + (band.job.offset - tiled.start) * 4;
      at = align(at + (tiled.end - tiled.start) * 4);
    } else {
      for (const band of bands) {
        band.out = at;
        at = align(at + band.cols * band.rows * 12);
      }
    }
    for (const pass of passes) this.pass(img, pass, at, mean, scale);
    const f32 = this.views!.f32;
    if (tiled) {
      const from = this.base / 4;
      bands[0].job.dst.set(f32.subarray(from, from + tiled.end - tiled.start), tiled.start);
      return;
    }
    for (const band of bands) {
      const { job, first, rows, cols } = band;
      const plane = cols * (job.part?.rows ?? job.outH);
      for (let c = 0; c < 3; c++) {
        const from = band.out / 4 + c * cols * rows;
        job.dst.set(f32.subarray(from, from + cols * rows), job.offset + c * plane + first * cols);
      }
    }
  }

  /**
   * One pass of the kernel over `bands` (their outputs at `band.out` in its memory), with its
   * records and working memory from byte `at`: the rectangle their windows cover is copied in, a
   * band of rows at a time, and swept.
   */
  private pass(img: RgbImage, bands: readonly Band[], at: number, mean: number, scale: number): void {
    const sweep = at;
    const order = align(sweep + SWEEP_BYTES);
    const live = order + bands.length * 4;
    const records = align(live + bands.length * 4);
    at = align(records + bands.length * JOB_BYTES);
    // Each band's window tables and ring after the records (see pool_job in summed-area.c).
    const layout = new Int32Array(bands.length * 8);
    for (let n = 0; n < bands.length; n++) {
      const { cols, rows, job } = bands[n];
      const l = n * 8;
      layout[l] = at; // col_inv
      layout[l + 1] = at + cols * 8; // row_k
      layout[l + 2] = layout[l + 1] + rows * 8; // xs
      layout[l + 3] = layout[l + 2] + cols * 4; // xe
      layout[l + 4] = layout[l + 3] + cols * 4; // ya
      layout[l + 5] = layout[l + 4] + rows * 4; // yb
      layout[l + 6] = align(layout[l + 5] + rows * 4); // tops
      layout[l + 7] = Math.min(rows, 3 + Math.ceil(job.outH / job.srcH)); // ring
      at = layout[l + 6] + layout[l + 7] * cols * 16;
    }
    const rowBytes = img.width * 3;
    const sums = at;
    const sumsBytes = (img.width + 1) * 16;
    const pixels = align(sums + sumsBytes);
    // A band: as many of the pass's rows as BAND_BYTES hold, at least one whole picture row.
    const end = pixels + Math.max(BAND_BYTES, rowBytes) + SLACK;
    const pages = Math.ceil(end / PAGE) - this.memory.buffer.byteLength / PAGE;
    if (pages > 0) this.memory.grow(pages);
    const buffer = this.memory.buffer;
    // A grown memory has a new buffer: views are made again only then.
    if (this.views?.i32.buffer !== buffer) this.views = { u8: new Uint8Array(buffer), i32: new Int32Array(buffer), f32: new Float32Array(buffer), f64: new Float64Array(buffer) };
    const { u8, i32, f64 } = this.views;
    for (let n = 0; n < bands.length; n++) {
      const { job, first, rows, cols, out } = bands[n];
      const r = records / 4 + n * (JOB_BYTES / 4);
      const l = n * 8;
      i32[r] = job.x0;
      i32[r + 1] = job.y0;
      i32[r + 2] = job.srcW;
      i32[r + 3] = job.srcH;
      i32[r + 4] = job.outW;
      i32[r + 5] = job.outH;
      i32[r + 6] = job.part?.col ?? 0;
      i32[r + 7] = (job.part?.row ?? 0) + first;
      i32[r + 8] = cols;
      i32[r + 9] = rows;
      i32[r + 10] = layout[l + 2];
      i32[r + 11] = layout[l + 3];
      i32[r + 12] = layout[l + 4];
      i32[r + 13] = layout[l + 5];
      i32[r + 14] = layout[l];
      i32[r + 15] = layout[l + 1];
      i32[r + 16] = out;
      i32[r + 17] = layout[l + 6];
      i32[r + 18] = layout[l + 7];
    }
    f64[sweep / 8] = mean * scale;
    f64[sweep / 8 + 1] = scale;
    const s = sweep / 4;
    i32[s + 9] = img.width;
    i32[s + 10] = img.height;
    i32[s + 11] = bands.length;
    i32[s + 14] = order;
    i32[s + 15] = live;
    i32[s + 16] = sums;
    i32[s + 17] = records;
    u8.fill(0, sums, sums + sumsBytes);
    this.begin(sweep);
    const x0 = i32[s + 4];
    const x1 = i32[s + 5];
    const y0 = i32[s + 6];
    const y1 = i32[s + 7];
    const width = (x1 - x0) * 3;
    this.swept += (x1 - x0) * (y1 - y0);
    const passRows = Math.max(1, Math.floor(BAND_BYTES / Math.max(1, width)));
    // A plain view: a Buffer's subarray costs several times more, once per row here.
    const data = new Uint8Array(img.data.buffer, img.data.byteOffset, img.data.byteLength);
    for (let top = y0; top < y1; top += passRows) {
      const rows = Math.min(passRows, y1 - top);
      if (x0 === 0 && x1 === img.width) u8.set(data.subarray(top * rowBytes, (top + rows) * rowBytes), pixels);
      else {
        for (let r = 0, from = top * rowBytes + x0 * 3; r < rows; r++, from += rowBytes) u8.set(data.subarray(from, from + width), pixels + r * width);
      }
      this.rows(sweep, pixels, rows);
    }
  }
}

/**
 * The range of one array that `bands` tile, when they are whole jobs of that array, of one size,
 * whose offsets follow one another with no gap or overlap (a batch of crops): then their outputs
 * lie in the kernel's memory as in the array and go to it in one copy. Undefined otherwise.
 */
function tiledRange(bands: readonly Band[]): { start: number; end: number } | undefined {
  if (bands.length < 2) return undefined;
  const { dst } = bands[0].job;
  const values = 3 * cells(bands[0].job);
  const offsets = new Float64Array(bands.length);
  for (let n = 0; n < bands.length; n++) {
    const { job, rows } = bands[n];
    if (job.dst !== dst || rows !== (job.part?.rows ?? job.outH) || 3 * cells(job) !== values) return undefined;
    offsets[n] = job.offset;
  }
  offsets.sort();
  for (let n = 1; n < offsets.length; n++) if (offsets[n] !== offsets[n - 1] + values) return undefined;
  return { start: offsets[0], end: offsets[offsets.length - 1] + values };
}

/**
 * Sets of bands for one pass each: bands whose picture rectangles lie close together share a
 * pass. A pass reads every pixel of the rectangle covering its bands, so a band joins the set
 * where that rectangle grows by the least, when it grows by less than the band's own area plus
 * PASS_PIXELS (about what a pass costs beyond its pixels); sets are then merged by the same rule.
 */
function clusters(bands: readonly Band[], img: { width: number; height: number }): Band[][] {
  const sets: { rect: Rect; bands: Band[] }[] = [];
  for (const band of bands) {
    const rect = bandRect(band, img);
    let best: { rect: Rect; bands: Band[] } | undefined;
    let bestGrowth = PASS_PIXELS;
    for (const set of sets) {
      const growth = unionArea(set.rect, rect) - area(set.rect) - area(rect);
      if (growth < bestGrowth) {
        best = set;
        bestGrowth = growth;
      }
    }
    if (!best) sets.push({ rect, bands: [band] });
    else {
      best.rect = union(best.rect, rect);
      best.bands.push(band);
    }
  }
  // Sweeps until one merges nothing; a set that took another is compared again with the rest
  // (restarting from the first set after each merge made this cubic in the number of sets).
  for (let merged = true; merged; ) {
    merged = false;
    for (let a = 0; a < sets.length; a++) {
      for (let b = a + 1; b < sets.length; ) {
        if (unionArea(sets[a].rect, sets[b].rect) - area(sets[a].rect) - area(sets[b].rect) < PASS_PIXELS) {
          sets[a].rect = union(sets[a].rect, sets[b].rect);
          for (const band of sets[b].bands) sets[a].bands.push(band);
          sets.splice(b, 1);
          merged = true;
          b = a + 1;
        } else b++;
      }
    }
  }
  return sets.map((set) => set.bands);
}

/** About what a pass costs beyond its pixels (records, calls, copies), in pixels' worth. */
const PASS_PIXELS = 4096;

interface Rect {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

/**
 * The rectangle of the picture a band reads: its cells' windows (a part of a whole-picture level
 * reads only its share of the picture), clipped to the picture. Exact for kernel jobs (products
 * under 2^53).
 */
function bandRect(band: Band, img: { width: number; height: number }): Rect {
  const { job, first, rows, cols } = band;
  const col = job.part?.col ?? 0;
  const row = (job.part?.row ?? 0) + first;
  return {
    x1: clip(job.x0 + Math.floor((col * job.srcW) / job.outW), img.width),
    y1: clip(job.y0 + Math.floor((row * job.srcH) / job.outH), img.height),
    x2: clip(job.x0 + Math.ceil(((col + cols) * job.srcW) / job.outW), img.width),
    y2: clip(job.y0 + Math.ceil(((row + rows) * job.srcH) / job.outH), img.height),
  };
}

const clip = (v: number, hi: number) => Math.min(hi, Math.max(0, v));
const area = (r: Rect) => (r.x2 - r.x1) * (r.y2 - r.y1);
const union = (a: Rect, b: Rect): Rect => ({ x1: Math.min(a.x1, b.x1), y1: Math.min(a.y1, b.y1), x2: Math.max(a.x2, b.x2), y2: Math.max(a.y2, b.y2) });
const unionArea = (a: Rect, b: Rect) => (Math.max(a.x2, b.x2) - Math.min(a.x1, b.x1)) * (Math.max(a.y2, b.y2) - Math.min(a.y1, b.y1));

/**
 * Bands of at most about OUTPUT_BYTES of output each, covering every row of every band given:
 * stripe k holds each band's k-th share of its rows, so the stripes go down the picture in turn.
 */
function stripes(bands: readonly Band[]): Band[][] {
  const output = bands.reduce((sum, band) => sum + band.cols * band.rows * 12, 0);
  const count = Math.max(1, Math.ceil(output / OUTPUT_BYTES));
  const done = bands.map(() => 0);
  const out: Band[][] = [];
  for (let stripe = 1; stripe <= count; stripe++) {
    const pass: Band[] = [];
    bands.forEach((band, n) => {
      const until = stripe === count ? band.rows : Math.min(band.rows, Math.max(done[n], Math.round((band.rows * stripe) / count)));
      if (until > done[n]) pass.push({ job: band.job, first: band.first + done[n], rows: until - done[n], cols: band.cols, out: 0 });
      done[n] = until;
    });
    if (pass.length > 0) out.push(pass);
  }
  return out;
}

/** Rows first..first+rows-1 of a job's output cells (all of them for a whole job). */
interface Band {
  job: PoolJob;
  first: number;
  rows: number;
  cols: number;
  /** Byte address of its output in the kernel's memory (set by SummedAreaSweep.group). */
  out: number;
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

/** Most pixels a window may hold in the kernel: its int32 sums are exact below 2^31 / 255. */
const KERNEL_WINDOW_PIXELS = 8_000_000;

const size = (v: number) => Number.isInteger(v) && v >= 1 && v <= KERNEL_LIMIT;
const cell = (v: number) => Number.isInteger(v) && v >= 0 && v <= KERNEL_LIMIT;

/**
 * Whether the kernel can run `job`: integer coordinates and sizes of at most 2^24, output sizes
 * of at least 1, a part from a cell (col, row) >= 0 of no negative size (the kernel's integer
 * division truncates, where the JavaScript loop floors a negative quotient), and windows of at
 * most 8 million pixels (a picture's whole area pooled to one cell would overflow its sums).
 * IntegralImage runs any other job with its JavaScript loop.
 */
export function kernelJob(job: PoolJob): boolean {
  const { x0, y0, srcW, srcH, outW, outH, part } = job;
  return (
    Number.isInteger(x0) &&
    Number.isInteger(y0) &&
    Math.abs(x0) <= KERNEL_LIMIT &&
    Math.abs(y0) <= KERNEL_LIMIT &&
    size(srcW) &&
    size(srcH) &&
    size(outW) &&
    size(outH) &&
    (!part || (cell(part.col) && cell(part.row) && cell(part.cols) && cell(part.rows))) &&
    (Math.ceil(srcW / outW) + 1) * (Math.ceil(srcH / outH) + 1) <= KERNEL_WINDOW_PIXELS
  );
}
