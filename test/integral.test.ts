import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AreaPooler } from '../src/image/area-pooler.js';
import { IntegralImage, type PoolJob } from '../src/image/integral.js';
import { SummedAreaModule, SUMMED_AREA_WASM } from '../src/image/summed-area-wasm.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { pyramidLevels } from '../src/pipeline/detect/pyramid.js';
import { pictureSearch, refineWindows, TRACKED_SEARCH_DEFAULTS } from '../src/pipeline/detect/search-plan.js';
import type { Box } from '../src/image/types.js';
import type { RgbImage } from '../src/image/types.js';

function randomImage(width: number, height: number, seed: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  let x = seed;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    data[i] = x >> 23;
  }
  return { width, height, data };
}

/** PyTorch's adaptive average pooling (window [floor(i*in/out), ceil((i+1)*in/out))), black outside the picture. */
function naivePool(img: RgbImage, x0: number, y0: number, srcW: number, srcH: number, outW: number, outH: number): number[][] {
  const planes = [[], [], []] as number[][];
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < outH; i++) {
      for (let j = 0; j < outW; j++) {
        const ya = Math.floor((i * srcH) / outH);
        const yb = Math.ceil(((i + 1) * srcH) / outH);
        const xa = Math.floor((j * srcW) / outW);
        const xb = Math.ceil(((j + 1) * srcW) / outW);
        let sum = 0;
        for (let y = y0 + ya; y < y0 + yb; y++) {
          for (let x = x0 + xa; x < x0 + xb; x++) if (x >= 0 && y >= 0 && x < img.width && y < img.height) sum += img.data[(y * img.width + x) * 3 + c];
        }
        planes[c].push(sum / ((yb - ya) * (xb - xa)));
      }
    }
  }
  return planes;
}

const kernel = SummedAreaModule.load();
const cases: [string, number[]][] = [
  ['the whole picture, shrunk', [0, 0, 37, 23, 12, 9]],
  ['the whole picture, enlarged', [0, 0, 37, 23, 50, 30]],
  ['a crop inside', [5, 3, 20, 17, 24, 24]],
  ['a crop reaching outside (zero padding)', [-6, -4, 30, 30, 24, 24]],
  ['a crop entirely outside', [40, 30, 10, 10, 6, 6]],
];

describe('integral image pooling (JavaScript)', () => {
  {
    const make = () => new IntegralImage();
    const img = randomImage(37, 23, 7);
    const ii = make().compute(img);

    it('holds exact sums', () => {
      let sum = 0;
      for (let i = 0; i < img.data.length; i += 3) sum += img.data[i + 1];
      expect(ii.sums[(img.height + 1) * (img.width + 1) * 3 - 2]).toBe(sum);
    });

    for (const [what, [x0, y0, w, h, ow, oh]] of cases) {
      it(`area-averages ${what}, normalised, planar at an offset`, () => {
        const dst = new Float32Array(3 * ow * oh + 2).fill(NaN);
        ii.poolInto(x0, y0, w, h, ow, oh, dst, 2, 127.5, 1 / 128);
        const expected = naivePool(img, x0, y0, w, h, ow, oh);
        for (let c = 0; c < 3; c++) {
          for (let k = 0; k < ow * oh; k++) expect(dst[2 + c * ow * oh + k]).toBeCloseTo((expected[c][k] - 127.5) / 128, 5);
        }
        expect(Number.isNaN(dst[1])).toBe(true);
      });
    }

    it('pools a part of a result bit for bit as the whole result has it, from a table of a region around it', () => {
      const big = randomImage(120, 80, 11);
      const whole = new Float32Array(3 * 50 * 34);
      make().compute(big).poolInto(0, 0, 120, 80, 50, 34, whole, 0, 127.5, 1 / 128);
      const part = { col: 14, row: 6, cols: 16, rows: 12 };
      // A table of only the rectangle the part pools from (and a little more), as a search window has.
      const region = make().compute(big, { x: 30, y: 10, width: 50, height: 35 });
      const dst = new Float32Array(3 * part.cols * part.rows);
      region.poolPartInto(0, 0, 120, 80, 50, 34, part, dst, 0, 127.5, 1 / 128);
      for (let c = 0; c < 3; c++) {
        for (let i = 0; i < part.rows; i++) {
          for (let j = 0; j < part.cols; j++) expect(dst[c * part.cols * part.rows + i * part.cols + j]).toBe(whole[c * 50 * 34 + (part.row + i) * 50 + part.col + j]);
        }
      }
    });

    it('is reusable for a picture of another size', () => {
      const other = randomImage(11, 40, 3);
      ii.compute(other);
      const dst = new Float32Array(3 * 4 * 4);
      ii.poolInto(0, 0, 11, 40, 4, 4, dst, 0, 0, 1);
      const expected = naivePool(other, 0, 0, 11, 40, 4, 4);
      for (let k = 0; k < 16; k++) expect(dst[k]).toBeCloseTo(expected[0][k], 4);
    });

    it('sums pictures over 8.4 MP in Float64, which Int32 cannot hold', () => {
      const white: RgbImage = { width: 4000, height: 2100, data: new Uint8Array(4000 * 2100 * 3).fill(255) };
      const table = new IntegralImage().compute(white);
      expect(table.sums).toBeInstanceOf(Float64Array);
      expect(table.sums[2101 * 4001 * 3 - 1]).toBe(255 * 4000 * 2100);
    });
  }
});

describe('area pooling in WebAssembly (AreaPooler)', () => {
  for (const [what, [x0, y0, w, h, ow, oh]] of cases) {
    it(`area-averages ${what}, normalised, planar at an offset`, () => {
      const img = randomImage(37, 23, 7);
      const dst = new Float32Array(3 * ow * oh + 2).fill(NaN);
      new AreaPooler(kernel).pool(img, [{ x0, y0, srcW: w, srcH: h, outW: ow, outH: oh, dst, offset: 2 }], 127.5, 1 / 128);
      const expected = naivePool(img, x0, y0, w, h, ow, oh);
      for (let c = 0; c < 3; c++) {
        for (let k = 0; k < ow * oh; k++) expect(dst[2 + c * ow * oh + k]).toBeCloseTo((expected[c][k] - 127.5) / 128, 5);
      }
      expect(Number.isNaN(dst[1])).toBe(true);
    });
  }

  /** Random pooling jobs over a w x h picture: windows inside, reaching out, wholly outside; shrinking and enlarging; parts. */
  function randomJobs(w: number, h: number, count: number, seed: number): PoolJob[] {
    let x = seed;
    const r = (n: number) => {
      x = (x * 1103515245 + 12345) % 2147483648;
      return (x >> 8) % n;
    };
    return Array.from({ length: count }, () => {
      const outW = 1 + r(60);
      const outH = 1 + r(60);
      const col = r(2) ? r(outW) : 0;
      const row = r(2) ? r(outH) : 0;
      const part = col || row || r(2) ? { col, row, cols: 1 + r(outW - col), rows: 1 + r(outH - row) } : undefined;
      const cells = part ? part.cols * part.rows : outW * outH;
      return { x0: r(w + 40) - 30, y0: r(h + 40) - 30, srcW: 1 + r(w + 20), srcH: 1 + r(h + 20), outW, outH, part, dst: new Float32Array(3 * cells + 5).fill(NaN), offset: 2 };
    });
  }

  /** Pools `jobs` from `img` with the JavaScript loop and with `pooler` (a fresh one by default); the latter's copies. */
  function poolBoth(img: RgbImage, jobs: PoolJob[], pooler = new AreaPooler(kernel)): { js: PoolJob[]; wasm: PoolJob[] } {
    const copies = new Map<Float32Array, Float32Array>();
    const wasmJobs = jobs.map((job) => {
      if (!copies.has(job.dst)) copies.set(job.dst, job.dst.slice());
      return { ...job, dst: copies.get(job.dst)! };
    });
    new IntegralImage().compute(img).pool(jobs, 127.5, 0.0078125);
    pooler.pool(img, wasmJobs, 127.5, 0.0078125);
    return { js: jobs, wasm: wasmJobs };
  }

  function expectSameArrays(got: { js: PoolJob[]; wasm: PoolJob[] }, what: string): void {
    got.wasm.forEach((job, n) => expect(Buffer.from(job.dst.buffer).equals(Buffer.from(got.js[n].dst.buffer)), `${what}: job ${n}`).toBe(true));
  }

  it('pools bit for bit as the JavaScript loop: many jobs a call, parts, windows reaching out or enlarging, bands of rows, a memory that grows', () => {
    const pooler = new AreaPooler(kernel);
    const sizes: [number, number][] = [
      [37, 23],
      [301, 177],
      [1, 1],
      [33, 1],
      [1, 40],
      // Bands of rows: a boundary inside the picture (45 rows of 1921 pixels), rows wider than a band.
      [1921, 1081],
      [100_000, 3],
      // Many large jobs after small ones: the memory grows between calls.
      [1920, 1080],
      [640, 360],
    ];
    sizes.forEach(([w, h], k) => {
      const img = randomImage(w, h, 300 + k);
      // A few jobs (one pass down the picture, as a pyramid's levels), and many (passes over clusters, as crops).
      for (const count of [20, 150]) {
        const jobs = randomJobs(w, h, count, k + count);
        // Coordinates the kernel does not take go to the JavaScript loop, in the same call.
        jobs.push({ x0: 2.5, y0: 1, srcW: 5, srcH: 5, outW: 3, outH: 3, dst: new Float32Array(27 + 5).fill(NaN), offset: 2 });
        jobs.push({ x0: 2 ** 31, y0: 0, srcW: 5, srcH: 5, outW: 3, outH: 3, dst: new Float32Array(27 + 5).fill(NaN), offset: 2 });
        // Jobs tiling one array (a batch of crops) are copied back at once.
        const batch = new Float32Array(3 * 24 * 24 * 5 + 4).fill(NaN);
        for (let n = 0; n < 5; n++) jobs.push({ x0: n * 7 - 10, y0: 9 - n * 5, srcW: 20 + n, srcH: 20 + n, outW: 24, outH: 24, dst: batch, offset: 2 + n * 3 * 24 * 24 });
        const got = poolBoth(img, jobs, pooler);
        got.wasm.forEach((job, n) => {
          expect(Number.isNaN(job.dst[1]) && Number.isNaN(job.dst[job.dst.length - 1]), `${w}x${h}, ${count} jobs: job ${n} writes only its cells`).toBe(true);
          expect(job.dst.some((v) => !Number.isNaN(v)), `${w}x${h}, ${count} jobs: job ${n} writes its cells`).toBe(true);
        });
        expectSameArrays(got, `${w}x${h}, ${count} jobs`);
      }
    });
  });

  it('pools a 1080p pyramid and crops as the detector does, bit for bit, holding about one pass of output', () => {
    const pooler = new AreaPooler(kernel);
    const frame = randomImage(1920, 1080, 9);
    // A whole pyramid at min face 20 in one call (15.6 MB of output: two stripes of rows).
    const levels = pyramidLevels(1920, 1080, 20, 0.709);
    const pyramid = levels.map((l) => ({ x0: 0, y0: 0, srcW: 1920, srcH: 1080, outW: l.width, outH: l.height, dst: new Float32Array(3 * l.width * l.height), offset: 0 }));
    expectSameArrays(poolBoth(frame, pyramid, pooler), 'pyramid');
    // 800 crops of one batch in clusters around 12 faces and scattered (passes over clusters), then
    // 2000 O-Net crops (22 MB: groups of at most 8 MB).
    for (const [count, size] of [[800, 24], [2000, 48]]) {
      const batch = new Float32Array(count * 3 * size * size);
      let x = count;
      const r = (n: number) => {
        x = (x * 1103515245 + 12345) % 2147483648;
        return (x >> 8) % n;
      };
      const crops: PoolJob[] = Array.from({ length: count }, (_, k) => {
        const face = r(16);
        const cx = face < 12 ? 100 + face * 150 + r(40) : r(1920);
        const cy = face < 12 ? 200 + (face % 3) * 300 + r(40) : r(1080);
        const side = 20 + r(face < 12 ? 120 : 400);
        return { x0: cx - side, y0: cy - side, srcW: 2 * side, srcH: 2 * side, outW: size, outH: size, dst: batch, offset: k * 3 * size * size };
      });
      expectSameArrays(poolBoth(frame, crops, pooler), `${count} crops of ${size}`);
    }
    // The tables this replaced held 25 MB per frame (12 bytes a pixel); a pass holds its output.
    expect(pooler.bytes).toBeLessThan(10 * 2 ** 20);
  });

  it('pools pictures over 8.4 MP, whose running sums wrap, and leaves windows over 8 million pixels to the JavaScript loop', () => {
    const white: RgbImage = { width: 4000, height: 2100, data: new Uint8Array(4000 * 2100 * 3).fill(255) };
    const jobs: PoolJob[] = [
      // Windows of 4000 x 2100 and 2000 x 2100 pixels: sums past 2^31.
      { x0: 0, y0: 0, srcW: 4000, srcH: 2100, outW: 1, outH: 1, dst: new Float32Array(3), offset: 0 },
      { x0: 0, y0: 0, srcW: 4000, srcH: 2100, outW: 2, outH: 1, dst: new Float32Array(6), offset: 0 },
      // Small windows at the bottom right, where every running sum has wrapped.
      { x0: 3900, y0: 2000, srcW: 100, srcH: 100, outW: 24, outH: 24, dst: new Float32Array(3 * 576), offset: 0 },
      { x0: 0, y0: 0, srcW: 4000, srcH: 2100, outW: 400, outH: 210, dst: new Float32Array(3 * 400 * 210), offset: 0 },
    ];
    const got = poolBoth(white, jobs);
    expectSameArrays(got, 'white 4000x2100');
    expect(got.wasm[0].dst[0]).toBeCloseTo((255 - 127.5) * 0.0078125, 6);
    expectSameArrays(poolBoth(randomImage(4000, 2100, 3), randomJobs(4000, 2100, 30, 8)), 'random 4000x2100');
  });

  it('pools enlarging windows bit for bit, where up to ceil(out / in) + 1 output rows or columns share a pixel row (every ratio, at the edges, parts)', () => {
    // The kernel keeps the row sums of every output row begun and not yet written: with srcH 3
    // and outH 5, pixel row 1 is in the windows of rows 1, 2 and 3.
    const img = randomImage(30, 20, 30);
    const jobs: PoolJob[] = [];
    for (let src = 1; src <= 7; src++) {
      for (let out = 1; out <= 40; out++) {
        for (const [x0, y0] of [[4, -Math.floor(src / 2)], [-1, 20 - src + 1], [10, 5]]) {
          const part = out > 4 && out % 3 === 0 ? { col: 0, row: 1 + (out % 5), cols: 3, rows: out - 2 } : undefined;
          const cells = part ? part.cols * part.rows : 3 * out;
          jobs.push({ x0, y0, srcW: 5, srcH: src, outW: 3, outH: out, part, dst: new Float32Array(3 * cells + 2).fill(NaN), offset: 1 });
          // The same across columns.
          jobs.push({ x0: y0, y0: x0, srcW: src, srcH: 5, outW: out, outH: 3, dst: new Float32Array(9 * out + 2).fill(NaN), offset: 1 });
        }
      }
    }
    expectSameArrays(poolBoth(img, jobs), 'enlarging, many jobs a call');
    // A few a call: one pass down the picture.
    for (let k = 0; k < jobs.length; k += 97) expectSameArrays(poolBoth(img, jobs.slice(k, k + 4)), `enlarging, jobs ${k}..${k + 3}`);
  });

  it('copies a pass narrower than the picture in bands that fit the memory laid out for a picture row', () => {
    // A picture row of just over half a band (1 row a band) and a pass of just under half (2 rows a band).
    const img = randomImage(43_691, 6, 27);
    const jobs: PoolJob[] = [{ x0: 100, y0: 0, srcW: 21_800, srcH: 6, outW: 300, outH: 3, dst: new Float32Array(3 * 900), offset: 0 }];
    expectSameArrays(poolBoth(img, jobs), 'narrow pass');
  });

  it('pools parts that start before the first cell (negative part col/row) as the JavaScript loop floors them', () => {
    const img = randomImage(40, 30, 21);
    for (const [col, row] of [[-2, 0], [0, -1], [-3, -2], [-1, -5]]) {
      const part = { col, row, cols: 5, rows: 4 };
      const jobs: PoolJob[] = [{ x0: 5, y0: 3, srcW: 7, srcH: 5, outW: 4, outH: 3, part, dst: new Float32Array(3 * 20 + 4).fill(NaN), offset: 2 }];
      expectSameArrays(poolBoth(img, jobs), `part at (${col}, ${row})`);
    }
  });

  it('writes nothing for a part of a negative number of cells, as the JavaScript loop', () => {
    const img = randomImage(40, 30, 22);
    for (const [cols, rows] of [[-2, -3], [-1, 4], [3, -1], [0, 3], [2, 0]]) {
      const jobs: PoolJob[] = [{ x0: 0, y0: 0, srcW: 40, srcH: 30, outW: 8, outH: 6, part: { col: 0, row: 0, cols, rows }, dst: new Float32Array(40).fill(NaN), offset: 2 }];
      const got = poolBoth(img, jobs);
      expect(got.wasm[0].dst.every(Number.isNaN), `${cols} x ${rows} cells`).toBe(true);
      expectSameArrays(got, `${cols} x ${rows} cells`);
    }
  });

  it('pools windows of sizes and positions near 2^30 (products past 2^53) as the JavaScript loop', () => {
    // Output column S - 2 of S - 1 from S columns: its window starts at exactly S - 2 + (S - 2) / (S - 1),
    // a hair under an integer, which the double quotient rounds up to it; the last column; a row too.
    const img = randomImage(40, 30, 23);
    for (const s of [2 ** 30, 2 ** 29 + 12345, 2 ** 28 + 3]) {
      const cols: PoolJob = { x0: 6 - (s - 1), y0: 0, srcW: s, srcH: 30, outW: s - 1, outH: 3, part: { col: s - 2, row: 0, cols: 1, rows: 3 }, dst: new Float32Array(9), offset: 0 };
      const rows: PoolJob = { x0: 0, y0: 6 - (s - 1), srcW: 40, srcH: s, outW: 4, outH: s - 1, part: { col: 0, row: s - 2, cols: 4, rows: 1 }, dst: new Float32Array(12), offset: 0 };
      expectSameArrays(poolBoth(img, [cols, rows]), `size ${s}`);
    }
  });

  it('pools a band of a large job into the array that smaller whole jobs tile, at its own place', () => {
    // More than 8 MB of output: the call goes down the picture in stripes, the large job in bands
    // of rows, the one-row jobs whole in one stripe, tiling a range of the same array.
    const img = randomImage(64, 48, 24);
    const big = 3 * 1000 * 1000;
    for (const bigFirst of [true, false]) {
      const dst = new Float32Array(big + 2 * 3 * 8 + 3).fill(NaN);
      const smallAt = bigFirst ? big + 1 : 1;
      const jobs: PoolJob[] = [
        { x0: 0, y0: 0, srcW: 64, srcH: 48, outW: 1000, outH: 1000, dst, offset: bigFirst ? 1 : 1 + 2 * 3 * 8 },
        { x0: 3, y0: 5, srcW: 20, srcH: 1, outW: 8, outH: 1, dst, offset: smallAt },
        { x0: 9, y0: 40, srcW: 30, srcH: 3, outW: 8, outH: 1, dst, offset: smallAt + 3 * 8 },
      ];
      const got = poolBoth(img, jobs);
      expect(Number.isNaN(got.wasm[0].dst[0]) && got.wasm[0].dst.subarray(1, -2).every((v) => !Number.isNaN(v)), `large job first: ${bigFirst}`).toBe(true);
      expectSameArrays(got, `large job first: ${bigFirst}`);
    }
  });

  it('copies crops of one array back at once only when they tile a range of it: a gap between two, or crops of two sizes, stay as they are', () => {
    const img = randomImage(200, 150, 26);
    for (const count of [5, 40]) {
      for (const shape of ['tiled', 'tiled out of order', 'gap', 'two sizes'] as const) {
        const sizeOf = (n: number) => (shape === 'two sizes' && n % 2 === 1 ? 12 : 24);
        const offsets: number[] = [];
        let at = 3;
        for (let n = 0; n < count; n++) {
          offsets.push(at);
          at += 3 * sizeOf(n) ** 2 + (shape === 'gap' && n === count >> 1 ? 7 : 0);
        }
        // The jobs' order owes nothing to their offsets (the crops of a batch come in any order).
        if (shape === 'tiled out of order') offsets.reverse();
        const dst = new Float32Array(at + 3).fill(NaN);
        const jobs: PoolJob[] = offsets.map((offset, n) => ({ x0: (n * 37) % 180 - 5, y0: (n * 23) % 130 - 5, srcW: 20 + (n % 9), srcH: 18 + (n % 7), outW: sizeOf(n), outH: sizeOf(n), dst, offset }));
        const got = poolBoth(img, jobs);
        const untouched = [...got.wasm[0].dst.keys()].filter((k) => !offsets.some((o, n) => k >= o && k < o + 3 * sizeOf(n) ** 2));
        expect(untouched.filter((k) => !Number.isNaN(got.wasm[0].dst[k])), `${count} crops, ${shape}: only their cells are written`).toEqual([]);
        expectSameArrays(got, `${count} crops, ${shape}`);
      }
    }
  });

  it('refuses jobs whose cells do not fit their array, before pooling any', () => {
    const img = randomImage(40, 30, 25);
    const table = new IntegralImage().compute(img);
    const pooler = new AreaPooler(kernel);
    for (const pool of [(jobs: PoolJob[]) => table.pool(jobs, 127.5, 0.0078125), (jobs: PoolJob[]) => pooler.pool(img, jobs, 127.5, 0.0078125)]) {
      for (const [length, offset] of [[26, 0], [27, 1], [40, -1], [40, 1.5], [40, NaN]]) {
        const fine = new Float32Array(27).fill(NaN);
        const jobs: PoolJob[] = [
          { x0: 0, y0: 0, srcW: 40, srcH: 30, outW: 3, outH: 3, dst: fine, offset: 0 },
          { x0: 0, y0: 0, srcW: 40, srcH: 30, outW: 3, outH: 3, dst: new Float32Array(length), offset },
        ];
        expect(() => pool(jobs), `${length} values from ${offset}`).toThrow(RangeError);
        expect(fine.every(Number.isNaN), `${length} values from ${offset}: nothing pooled`).toBe(true);
      }
    }
  });

  it('refuses jobs whose array is not float32, before pooling any', () => {
    // The kernel copies float32 values with the array's set (a plain array has none: a TypeError
    // after other jobs were pooled); a float64 array would hold the JavaScript loop's unrounded values.
    const img = randomImage(40, 30, 32);
    const table = new IntegralImage().compute(img);
    const pooler = new AreaPooler(kernel);
    const arrays: [string, () => unknown][] = [
      ['a plain array', () => new Array(27).fill(0)],
      ['a Float64Array', () => new Float64Array(27)],
    ];
    for (const pool of [(jobs: PoolJob[]) => table.pool(jobs, 127.5, 0.0078125), (jobs: PoolJob[]) => pooler.pool(img, jobs, 127.5, 0.0078125)]) {
      for (const [what, array] of arrays) {
        const fine = new Float32Array(27).fill(NaN);
        const jobs: PoolJob[] = [
          { x0: 0, y0: 0, srcW: 40, srcH: 30, outW: 3, outH: 3, dst: fine, offset: 0 },
          { x0: 0, y0: 0, srcW: 40, srcH: 30, outW: 3, outH: 3, dst: array() as Float32Array, offset: 0 },
        ];
        expect(() => pool(jobs), what).toThrow(RangeError);
        expect(fine.every(Number.isNaN), `${what}: nothing pooled`).toBe(true);
      }
    }
  });

  it('refuses jobs of a fractional number of output rows or columns, whose loops would write past their cells, before pooling any', () => {
    // 2 x 2.5 cells "fit" 15 values, but the loops write 3 rows of planes 5 apart: the 16th value
    // (the next job's first cell) too. Such jobs go to the JavaScript loop (the kernel takes integers only).
    const img = randomImage(40, 30, 31);
    const table = new IntegralImage().compute(img);
    const pooler = new AreaPooler(kernel);
    const shapes: [string, Partial<PoolJob>][] = [
      ['a part of 2 x 2.5 cells', { outW: 8, outH: 6, part: { col: 0, row: 0, cols: 2, rows: 2.5 } }],
      ['a part of 2.5 x 2 cells', { outW: 8, outH: 6, part: { col: 0, row: 0, cols: 2.5, rows: 2 } }],
      ['an output of 2 x 2.5', { outW: 2, outH: 2.5 }],
      ['an output of 1.5 x 3.5', { outW: 1.5, outH: 3.5 }],
      ['an output of NaN columns', { outW: NaN }],
      ['a part of infinitely many rows', { outW: 8, outH: 6, part: { col: 0, row: 0, cols: 2, rows: Infinity } }],
    ];
    for (const pool of [(jobs: PoolJob[]) => table.pool(jobs, 127.5, 0.0078125), (jobs: PoolJob[]) => pooler.pool(img, jobs, 127.5, 0.0078125)]) {
      for (const [what, shape] of shapes) {
        const dst = new Float32Array(50).fill(NaN);
        const jobs: PoolJob[] = [
          { x0: 0, y0: 0, srcW: 40, srcH: 30, outW: 3, outH: 3, dst, offset: 20 },
          { x0: 0, y0: 0, srcW: 40, srcH: 30, outW: 8, outH: 6, ...shape, dst, offset: 1 },
        ];
        expect(() => pool(jobs), what).toThrow(RangeError);
        expect(dst.every(Number.isNaN), `${what}: nothing pooled`).toBe(true);
      }
    }
  });

  it('reads the pixels around each of distant windows, not the picture between them (tracked faces, their crops), bit for bit', () => {
    const W = 1600;
    const H = 1200;
    const img = randomImage(W, H, 29);
    const search = pictureSearch(W, H, 20, 0.709);
    /** The P-Net jobs of tracked faces' windows (parts of the whole picture's levels, as MtcnnDetector pools them). */
    const windowJobs = (faces: Box[]): PoolJob[][] =>
      refineWindows(faces, TRACKED_SEARCH_DEFAULTS, search).map((w) =>
        w.levels!.map((l) => ({ x0: 0, y0: 0, srcW: W, srcH: H, outW: l.part!.levelWidth, outH: l.part!.levelHeight, part: { col: l.part!.col, row: l.part!.row, cols: l.width, rows: l.height }, dst: new Float32Array(3 * l.width * l.height).fill(NaN), offset: 0 })),
      );
    /** R-Net crops around `centres` (`each` a centre, in one batch). */
    const cropJobs = (centres: [number, number][], each: number): PoolJob[][] => {
      const batch = new Float32Array(centres.length * each * 3 * 576).fill(NaN);
      return centres.map(([cx, cy], c) =>
        Array.from({ length: each }, (_, k) => ({ x0: cx - 30 + 3 * k, y0: cy - 25 + 2 * k, srcW: 50 + k, srcH: 50 + k, outW: 24, outH: 24, dst: batch, offset: (c * each + k) * 3 * 576 })),
      );
    };
    /** The picture rectangle a set of jobs' windows cover (clipped), in pixels. */
    const covered = (jobs: PoolJob[]): number => {
      let [x1, y1, x2, y2] = [W, H, 0, 0];
      for (const { x0, y0, srcW, srcH, outW, outH, part } of jobs) {
        const { col, row, cols, rows } = part ?? { col: 0, row: 0, cols: outW, rows: outH };
        x1 = Math.min(x1, Math.max(0, x0 + Math.floor((col * srcW) / outW)));
        y1 = Math.min(y1, Math.max(0, y0 + Math.floor((row * srcH) / outH)));
        x2 = Math.max(x2, Math.min(W, x0 + Math.ceil(((col + cols) * srcW) / outW)));
        y2 = Math.max(y2, Math.min(H, y0 + Math.ceil(((row + rows) * srcH) / outH)));
      }
      return Math.max(0, x2 - x1) * Math.max(0, y2 - y1);
    };
    const corners: Box[] = [
      [40, 40, 100, 110],
      [1480, 1060, 1550, 1140],
    ];
    const scattered: Box[] = Array.from({ length: 8 }, (_, k) => [100 + (k % 4) * 400, 150 + Math.floor(k / 4) * 700, 160 + (k % 4) * 400, 220 + Math.floor(k / 4) * 700]);
    const cases: [string, PoolJob[][]][] = [
      ['two tracked faces at opposite corners', windowJobs(corners)],
      ['8 tracked faces over the picture (over 32 jobs)', windowJobs(scattered)],
      ['R-Net crops of 2 faces at opposite corners', cropJobs([[70, 75], [1515, 1100]], 8)],
      ['R-Net crops of 5 faces over the picture (over 32 crops)', cropJobs([[100, 100], [1500, 100], [800, 600], [100, 1100], [1500, 1100]], 10)],
    ];
    for (const [what, windows] of cases) {
      const jobs = windows.flat();
      const pooler = new AreaPooler(kernel);
      expectSameArrays(poolBoth(img, jobs, pooler), what);
      // Each window's rectangle once (a pass costs about PASS_PIXELS more than its pixels, so
      // nearby windows may share one); the rectangle around them all is most of the picture.
      const own = windows.reduce((sum, w) => sum + covered(w), 0);
      expect(covered(jobs), what).toBeGreaterThan(W * H * 0.5);
      expect(pooler.sweptPixels, what).toBeLessThanOrEqual(own + windows.length * 4096);
    }
    // The levels of a whole-picture pyramid share their passes: the picture is read about once
    // (15 MB of output: two stripes of rows, which read again the rows their windows cross).
    const pooler = new AreaPooler(kernel);
    const levels = search.pyramid.map((l) => ({ x0: 0, y0: 0, srcW: W, srcH: H, outW: l.width, outH: l.height, dst: new Float32Array(3 * l.width * l.height), offset: 0 }));
    expectSameArrays(poolBoth(img, levels, pooler), 'pyramid');
    expect(pooler.sweptPixels).toBeGreaterThanOrEqual(W * H);
    expect(pooler.sweptPixels).toBeLessThan(W * H * 1.05);
  });

  it("refuses a picture whose pixels do not fill its size, rather than pool the kernel's leftovers of an earlier picture", () => {
    const pooler = new AreaPooler(kernel);
    const job = (): PoolJob => ({ x0: 0, y0: 0, srcW: 64, srcH: 64, outW: 4, outH: 4, dst: new Float32Array(48).fill(NaN), offset: 0 });
    // An earlier picture, all bright, leaves its pixels in the kernel's memory.
    pooler.pool({ width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).fill(200) }, [job()], 0, 1);
    const bad: [string, RgbImage][] = [
      ['10 rows of 64', { width: 64, height: 64, data: new Uint8Array(10 * 64 * 3) }],
      ['one byte short', { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3 - 1) }],
      ['a fractional width', { width: 10.5, height: 4, data: new Uint8Array(200) }],
      ['a negative height', { width: 3, height: -4, data: new Uint8Array(0) }],
      ['a NaN width', { width: NaN, height: 4, data: new Uint8Array(0) }],
      // Samples that are not bytes: the kernel would read the earlier picture (a plain array has no
      // buffer) or the samples' bytes, where the JavaScript loop reads the numbers.
      ['a plain array of numbers', { width: 64, height: 64, data: new Array(64 * 64 * 3).fill(10) as unknown as Uint8Array }],
      ['16-bit samples', { width: 64, height: 64, data: new Uint16Array(64 * 64 * 3).fill(10) as unknown as Uint8Array }],
      ['float samples', { width: 64, height: 64, data: new Float32Array(64 * 64 * 3).fill(10) as unknown as Uint8Array }],
    ];
    for (const [what, img] of bad) {
      const dst = job();
      expect(() => pooler.pool(img, [dst], 0, 1), what).toThrow(RangeError);
      expect(() => new IntegralImage().compute(img), what).toThrow(RangeError);
      expect(dst.dst.every(Number.isNaN), `${what}: nothing pooled`).toBe(true);
    }
    // A picture with more bytes than it needs (a row of a larger buffer, say) is pooled as its size says.
    const long = randomImage(64, 65, 28);
    const fits = { width: 64, height: 64, data: long.data };
    expectSameArrays(poolBoth(fits, [job()], pooler), 'longer data');
    // Bytes in a Buffer that starts inside a larger one, and clamped bytes (a canvas's), are pixels.
    const inside = Buffer.from(long.data.buffer, 7, 64 * 64 * 3);
    expectSameArrays(poolBoth({ width: 64, height: 64, data: inside }, [job()], pooler), 'a Buffer at byte 7 of another');
    const clamped = new Uint8ClampedArray(long.data.buffer, 0, 64 * 64 * 3) as unknown as Uint8Array;
    expectSameArrays(poolBoth({ width: 64, height: 64, data: clamped }, [job()], pooler), 'clamped bytes');
  });

  it('pools with the JavaScript loop alone when given no kernel', () => {
    const img = randomImage(50, 40, 26);
    const got = poolBoth(img, randomJobs(50, 40, 10, 3), new AreaPooler());
    expectSameArrays(got, 'no kernel');
    expect(new AreaPooler().bytes).toBe(0);
  });

  it('names the file and the remedy when the kernel is missing, not WebAssembly, or lacks its exports', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-wasm-'));
    try {
      const lfsPointer = path.join(dir, 'pointer.wasm');
      fs.writeFileSync(lfsPointer, 'version https://git-lfs.github.com/spec/v1\n');
      const truncated = path.join(dir, 'truncated.wasm');
      fs.writeFileSync(truncated, fs.readFileSync(SUMMED_AREA_WASM).subarray(0, 200));
      // A valid module without the kernel's exports (an empty one: magic and version only).
      const foreign = path.join(dir, 'foreign.wasm');
      fs.writeFileSync(foreign, Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
      for (const file of [path.join(dir, 'missing.wasm'), lfsPointer, truncated, foreign]) {
        expect(() => SummedAreaModule.load(file), file).toThrow(file);
        expect(() => SummedAreaModule.load(file), file).toThrow('scripts/build-wasm.sh');
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  /**
   * Rebuilds the kernel with scripts/build-wasm.sh under PATH = `path` and checks the committed
   * .wasm against the rebuild: byte for byte when the rebuild's compiler.txt is the committed one,
   * else by what both pool (another clang may generate other, equally correct code).
   */
  function checkCommittedKernel(pathEnv: string | undefined): void {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-wasm-'));
    const rebuild = 'run scripts/build-wasm.sh and commit src/image/wasm/';
    try {
      execFileSync('bash', [path.join(PACKAGE_ROOT, 'scripts', 'build-wasm.sh')], { env: { ...process.env, PATH: pathEnv, OUT_DIR: out }, stdio: 'pipe' });
      const wasmDir = path.dirname(SUMMED_AREA_WASM);
      const rebuilt = path.join(out, 'summed-area.wasm');
      if (fs.readFileSync(path.join(out, 'compiler.txt'), 'utf8') === fs.readFileSync(path.join(wasmDir, 'compiler.txt'), 'utf8')) {
        expect(fs.readFileSync(rebuilt).equals(fs.readFileSync(SUMMED_AREA_WASM)), `the committed .wasm is not its C source's build: ${rebuild}`).toBe(true);
        return;
      }
      const committed = new AreaPooler(kernel);
      const fresh = new AreaPooler(SummedAreaModule.load(rebuilt));
      // A band boundary inside the picture (45 rows of 1921 pixels a band), one-row bands; a few jobs and many.
      for (const [w, h, count] of [[1921, 1081, 20], [100_000, 3, 20], [641, 359, 100]] as const) {
        const img = randomImage(w, h, w + h);
        const jobs = randomJobs(w, h, count, w);
        const again = jobs.map((job) => ({ ...job, dst: new Float32Array(job.dst.length).fill(NaN) }));
        committed.pool(img, jobs, 127.5, 0.0078125);
        fresh.pool(img, again, 127.5, 0.0078125);
        again.forEach((job, n) => expect(Buffer.from(job.dst.buffer).equals(Buffer.from(jobs[n].dst.buffer)), `the committed .wasm pools otherwise than its C source: ${rebuild}`).toBe(true));
      }
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  }

  it('is committed as scripts/build-wasm.sh builds it from its C source (clang and lld from scripts/system-packages.txt)', () => {
    checkCommittedKernel(process.env.PATH);
  });

  describe('the rebuild check under a clang that generates other code (here: -O1 after -O3)', () => {
    const recorded = fs.readFileSync(path.join(path.dirname(SUMMED_AREA_WASM), 'compiler.txt'), 'utf8').trim();
    let dir = '';
    /** A PATH whose `clang` reports `version` and compiles with the real clang at -O1. */
    function fakeClang(version: string): string {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-clang-'));
      const real = execFileSync('bash', ['-c', 'command -v clang'], { encoding: 'utf8' }).trim();
      fs.writeFileSync(path.join(dir, 'clang'), `#!/bin/sh\nif [ "$1" = --version ]; then echo '${version}'; exit 0; fi\nexec '${real}' "$@" -O1\n`, { mode: 0o755 });
      return `${dir}:${process.env.PATH}`;
    }
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('passes when that clang is another version (CI image with a newer Debian clang)', () => {
      checkCommittedKernel(fakeClang('Other clang version 99.0.0'));
    });

    it('fails, saying how to rebuild, when the recorded clang builds other bytes', () => {
      expect(() => checkCommittedKernel(fakeClang(recorded))).toThrow('run scripts/build-wasm.sh and commit src/image/wasm/');
    });
  });
});
