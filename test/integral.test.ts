import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IntegralImage, type PoolJob } from '../src/image/integral.js';
import { SummedAreaModule, SUMMED_AREA_WASM } from '../src/image/summed-area-wasm.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { pyramidLevels } from '../src/pipeline/detect/pyramid.js';
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
for (const [name, make] of [
  ['JavaScript', () => new IntegralImage()],
  ['WebAssembly', () => new IntegralImage(kernel)],
] as const) {
  describe(`integral image pooling (${name} table)`, () => {
    const img = randomImage(37, 23, 7);
    const ii = make().compute(img);

    it('holds exact sums', () => {
      let sum = 0;
      for (let i = 0; i < img.data.length; i += 3) sum += img.data[i + 1];
      expect(ii.sums[(img.height + 1) * (img.width + 1) * 3 - 2]).toBe(sum);
    });

    const cases: [string, number[]][] = [
      ['the whole picture, shrunk', [0, 0, 37, 23, 12, 9]],
      ['the whole picture, enlarged', [0, 0, 37, 23, 50, 30]],
      ['a crop inside', [5, 3, 20, 17, 24, 24]],
      ['a crop reaching outside (zero padding)', [-6, -4, 30, 30, 24, 24]],
      ['a crop entirely outside', [40, 30, 10, 10, 6, 6]],
    ];
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
  });
}

describe('summed-area table in WebAssembly', () => {
  it("holds the JavaScript loop's table bit for bit: whole pictures, regions, sizes up and down on one table", () => {
    const js = new IntegralImage();
    const wasm = new IntegralImage(kernel);
    const cases: [number, number, { x: number; y: number; width: number; height: number } | undefined][] = [
      [1, 1, undefined],
      [37, 23, undefined],
      [640, 360, undefined],
      [641, 359, { x: 17, y: 5, width: 300, height: 211 }],
      [641, 359, { x: -40, y: -3, width: 100, height: 90 }],
      [641, 359, { x: 600, y: 300, width: 200, height: 200 }],
      [641, 359, { x: 700, y: 10, width: 20, height: 20 }],
      [33, 1, undefined],
      [1920, 1080, undefined],
      [5, 7, { x: 1, y: 2, width: 3, height: 4 }],
      // Bands of rows: a boundary inside the picture (45 rows of 1921 pixels), rows wider than a band.
      [1921, 1081, undefined],
      [100_000, 3, undefined],
      [100_001, 4, { x: 1, y: 1, width: 99_999, height: 3 }],
      // Empty tables: a region of no width, of no height, wholly outside; a picture of no pixels.
      [50, 40, { x: 3, y: 3, width: 0, height: 10 }],
      [50, 40, { x: 3, y: 3, width: 10, height: 0 }],
      [50, 40, { x: 0, y: 45, width: 10, height: 10 }],
      [0, 5, undefined],
      [51, 41, { x: 50, y: 0, width: 1, height: 41 }],
    ];
    cases.forEach(([w, h, region], k) => {
      const img = randomImage(w, h, 100 + k);
      const a = js.compute(img, region);
      const b = wasm.compute(img, region);
      expect([b.width, b.height, b.originX, b.originY]).toEqual([a.width, a.height, a.originX, a.originY]);
      const n = (a.height + 1) * (a.width + 1) * 3;
      expect(b.sums).toBeInstanceOf(Int32Array);
      expect(b.sums.length).toBe(n);
      expect(Buffer.compare(Buffer.from(b.sums.buffer, b.sums.byteOffset, n * 4), Buffer.from(a.sums.buffer, a.sums.byteOffset, n * 4)), `case ${k}`).toBe(0);
    });
  });

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

  it("pools bit for bit as the JavaScript loop: many jobs a call, parts, regions, windows reaching out, a memory that grows", () => {
    const js = new IntegralImage();
    const wasm = new IntegralImage(kernel);
    const cases: [number, number, { x: number; y: number; width: number; height: number } | undefined][] = [
      [37, 23, undefined],
      [301, 177, undefined],
      [640, 360, { x: 100, y: 50, width: 200, height: 150 }],
      [641, 359, { x: -40, y: -3, width: 100, height: 90 }],
      [1, 1, undefined],
      [50, 40, { x: 3, y: 3, width: 0, height: 10 }],
      // Many large jobs after small ones: the memory grows between calls.
      [1920, 1080, undefined],
    ];
    cases.forEach(([w, h, region], k) => {
      const img = randomImage(w, h, 300 + k);
      js.compute(img, region);
      wasm.compute(img, region);
      const expected = randomJobs(w, h, 40, k + 1);
      // Coordinates the kernel does not take go to the JavaScript loop, in the same call.
      expected.push({ x0: 2.5, y0: 1, srcW: 5, srcH: 5, outW: 3, outH: 3, dst: new Float32Array(27 + 5).fill(NaN), offset: 2 });
      expected.push({ x0: 2 ** 31, y0: 0, srcW: 5, srcH: 5, outW: 3, outH: 3, dst: new Float32Array(27 + 5).fill(NaN), offset: 2 });
      // Jobs tiling one array (a batch of crops) are copied back at once.
      const batch = new Float32Array(3 * 24 * 24 * 5 + 4).fill(NaN);
      for (let n = 0; n < 5; n++) expected.push({ x0: n * 7 - 10, y0: 9 - n * 5, srcW: 20 + n, srcH: 20 + n, outW: 24, outH: 24, dst: batch, offset: 2 + n * 3 * 24 * 24 });
      const copies = new Map<Float32Array, Float32Array>();
      const got = expected.map((job) => {
        if (!copies.has(job.dst)) copies.set(job.dst, new Float32Array(job.dst.length).fill(NaN));
        return { ...job, dst: copies.get(job.dst)! };
      });
      js.pool(expected, 127.5, 0.0078125);
      wasm.pool(got, 127.5, 0.0078125);
      // The kernel's memory grew: the table is still read right by the JavaScript loop.
      const sum = new Float32Array(3);
      wasm.poolInto(0, 0, w, h, 1, 1, sum, 0, 0, 1);
      const whole = new Float32Array(3);
      js.poolInto(0, 0, w, h, 1, 1, whole, 0, 0, 1);
      expect([...sum], `case ${k}: the whole picture's mean after pooling`).toEqual([...whole]);
      got.forEach((job, n) => {
        expect(Number.isNaN(job.dst[1]) && Number.isNaN(job.dst[job.dst.length - 1]), `case ${k} job ${n} writes only its cells`).toBe(true);
        expect(job.dst.some((v) => !Number.isNaN(v)), `case ${k} job ${n} writes its cells`).toBe(true);
        expect(Buffer.from(job.dst.buffer).equals(Buffer.from(expected[n].dst.buffer)), `case ${k} job ${n}`).toBe(true);
      });
    });
    // Pyramid levels of a 1080p frame, as the detector pools them.
    const frame = randomImage(1920, 1080, 9);
    js.compute(frame);
    wasm.compute(frame);
    for (const [outW, outH] of [[577, 325], [409, 231], [290, 164], [13, 8]]) {
      const a = new Float32Array(3 * outW * outH);
      const b = new Float32Array(3 * outW * outH);
      js.pool([{ x0: 0, y0: 0, srcW: 1920, srcH: 1080, outW, outH, dst: a, offset: 0 }], 127.5, 0.0078125);
      wasm.pool([{ x0: 0, y0: 0, srcW: 1920, srcH: 1080, outW, outH, dst: b, offset: 0 }], 127.5, 0.0078125);
      expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer)), `${outW}x${outH}`).toBe(true);
    }
    // A whole pyramid in one call (18 MB of output, pooled in stripes of rows), and 800 crops in
    // one batch (5.5 MB, in several calls): the kernel's memory stays near the table's.
    const levels = pyramidLevels(1920, 1080, 20, 0.709);
    const pyramid = (dst: Float32Array[]) => levels.map((l, k) => ({ x0: 0, y0: 0, srcW: 1920, srcH: 1080, outW: l.width, outH: l.height, dst: dst[k], offset: 0 }));
    const [a, b] = [0, 1].map(() => levels.map((l) => new Float32Array(3 * l.width * l.height)));
    js.pool(pyramid(a), 127.5, 0.0078125);
    const before = wasm.capacity;
    wasm.pool(pyramid(b), 127.5, 0.0078125);
    levels.forEach((l, k) => expect(Buffer.from(b[k].buffer).equals(Buffer.from(a[k].buffer)), `level ${l.width}x${l.height}`).toBe(true));
    const crops = (dst: Float32Array) => randomJobs(1920, 1080, 800, 5).map((job, k) => ({ ...job, part: undefined, outW: 24, outH: 24, dst, offset: k * 3 * 576 }));
    const [ca, cb] = [0, 1].map(() => new Float32Array(800 * 3 * 576));
    js.pool(crops(ca), 127.5, 0.0078125);
    wasm.pool(crops(cb), 127.5, 0.0078125);
    expect(Buffer.from(cb.buffer).equals(Buffer.from(ca.buffer)), '800 crops').toBe(true);
    expect(wasm.capacity - before).toBeLessThan(4 * 2 ** 20);
  });

  /** Pools `jobs` with the JavaScript loop and the kernel from tables of `img` (and `region`); the kernel's arrays. */
  function poolBoth(img: RgbImage, region: { x: number; y: number; width: number; height: number } | undefined, jobs: PoolJob[]): { js: PoolJob[]; wasm: PoolJob[] } {
    const copies = new Map<Float32Array, Float32Array>();
    const wasmJobs = jobs.map((job) => {
      if (!copies.has(job.dst)) copies.set(job.dst, job.dst.slice());
      return { ...job, dst: copies.get(job.dst)! };
    });
    new IntegralImage().compute(img, region).pool(jobs, 127.5, 0.0078125);
    new IntegralImage(kernel).compute(img, region).pool(wasmJobs, 127.5, 0.0078125);
    return { js: jobs, wasm: wasmJobs };
  }

  function expectSameArrays(got: { js: PoolJob[]; wasm: PoolJob[] }, what: string): void {
    got.wasm.forEach((job, n) => expect(Buffer.from(job.dst.buffer).equals(Buffer.from(got.js[n].dst.buffer)), `${what}: job ${n}`).toBe(true));
  }

  it('pools parts that start before the first cell (negative part col/row) as the JavaScript loop floors them', () => {
    const img = randomImage(40, 30, 21);
    for (const [col, row] of [[-2, 0], [0, -1], [-3, -2], [-1, -5]]) {
      const part = { col, row, cols: 5, rows: 4 };
      const jobs: PoolJob[] = [{ x0: 5, y0: 3, srcW: 7, srcH: 5, outW: 4, outH: 3, part, dst: new Float32Array(3 * 20 + 4).fill(NaN), offset: 2 }];
      expectSameArrays(poolBoth(img, undefined, jobs), `part at (${col}, ${row})`);
    }
  });

  it('writes nothing for a part of a negative number of cells, as the JavaScript loop', () => {
    const img = randomImage(40, 30, 22);
    for (const [cols, rows] of [[-2, -3], [-1, 4], [3, -1]]) {
      const jobs: PoolJob[] = [{ x0: 0, y0: 0, srcW: 40, srcH: 30, outW: 8, outH: 6, part: { col: 0, row: 0, cols, rows }, dst: new Float32Array(40).fill(NaN), offset: 2 }];
      const got = poolBoth(img, undefined, jobs);
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
      expectSameArrays(poolBoth(img, undefined, [cols, rows]), `size ${s}`);
    }
  });

  it('pools a band of a large job into the array that smaller whole jobs tile, at its own place', () => {
    // More than 2 MB of output: the call goes down the table in stripes, the large job in bands of
    // rows, the one-row jobs whole in one stripe, tiling a range of the same array.
    const img = randomImage(64, 48, 24);
    const big = 3 * 600 * 600;
    for (const bigFirst of [true, false]) {
      const dst = new Float32Array(big + 2 * 3 * 8 + 3).fill(NaN);
      const smallAt = bigFirst ? big + 1 : 1;
      const jobs: PoolJob[] = [
        { x0: 0, y0: 0, srcW: 64, srcH: 48, outW: 600, outH: 600, dst, offset: bigFirst ? 1 : 1 + 2 * 3 * 8 },
        { x0: 3, y0: 5, srcW: 20, srcH: 1, outW: 8, outH: 1, dst, offset: smallAt },
        { x0: 9, y0: 40, srcW: 30, srcH: 3, outW: 8, outH: 1, dst, offset: smallAt + 3 * 8 },
      ];
      const got = poolBoth(img, undefined, jobs);
      expect(Number.isNaN(got.wasm[0].dst[0]) && got.wasm[0].dst.subarray(1, -2).every((v) => !Number.isNaN(v)), `large job first: ${bigFirst}`).toBe(true);
      expectSameArrays(got, `large job first: ${bigFirst}`);
    }
  });

  it('refuses jobs whose cells do not fit their array, before pooling any', () => {
    const img = randomImage(40, 30, 25);
    for (const table of [new IntegralImage(), new IntegralImage(kernel)]) {
      table.compute(img);
      for (const [length, offset] of [[26, 0], [27, 1], [40, -1], [40, 1.5], [40, NaN]]) {
        const fine = new Float32Array(27).fill(NaN);
        const jobs: PoolJob[] = [
          { x0: 0, y0: 0, srcW: 40, srcH: 30, outW: 3, outH: 3, dst: fine, offset: 0 },
          { x0: 0, y0: 0, srcW: 40, srcH: 30, outW: 3, outH: 3, dst: new Float32Array(length), offset },
        ];
        expect(() => table.pool(jobs, 127.5, 0.0078125), `${length} values from ${offset}`).toThrow(RangeError);
        expect(fine.every(Number.isNaN), `${length} values from ${offset}: nothing pooled`).toBe(true);
      }
    }
  });

  it('counts a Float64 table (over 8 MP, a 4K frame) in what a table holds, and lets it go for a smaller picture', () => {
    const table = new IntegralImage(kernel);
    table.compute(randomImage(64, 48, 26));
    const small = table.capacity;
    const uhd: RgbImage = { width: 3840, height: 2160, data: new Uint8Array(3840 * 2160 * 3) };
    table.compute(uhd);
    expect(table.sums).toBeInstanceOf(Float64Array);
    expect(table.capacity).toBeGreaterThanOrEqual(3841 * 2161 * 3 * 8);
    table.compute(randomImage(64, 48, 27));
    expect(table.capacity).toBe(small);
  });

  it('leaves pictures over 8.4 MP to the Float64 loop, whose sums Int32 cannot hold', () => {
    const img: RgbImage = { width: 4000, height: 2100, data: new Uint8Array(4000 * 2100 * 3).fill(255) };
    const table = new IntegralImage(kernel).compute(img);
    expect(table.sums).toBeInstanceOf(Float64Array);
    expect(table.sums[2101 * 4001 * 3 - 1]).toBe(255 * 4000 * 2100);
  });

  it('refuses a rectangle not wholly inside the picture, rather than summing stale bytes of its band', () => {
    const table = kernel.table();
    const img = randomImage(40, 30, 5);
    table.compute(img, 0, 0, 40, 30);
    for (const [x, y, w, h] of [[1, 0, 40, 30], [0, 1, 40, 30], [-1, 0, 10, 10], [0, -1, 10, 10], [0.5, 0, 10, 10], [0, 0, -1, 3], [0, 0, 10, NaN]]) {
      expect(() => table.compute(img, x, y, w, h), `${[x, y, w, h]}`).toThrow(RangeError);
    }
    // An empty rectangle reads no pixels, wherever it is (IntegralImage's region wholly outside).
    expect(table.compute(img, 41, 0, 0, 5).length).toBe(6 * 3);
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
   * Rebuilds the kernels with scripts/build-wasm.sh under PATH = `path` and checks the committed
   * .wasm against the rebuild: byte for byte when the rebuild's compiler.txt is the committed one,
   * else by the tables both compute (another clang may generate other, equally correct code).
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
      const committed = new IntegralImage(kernel);
      const fresh = new IntegralImage(SummedAreaModule.load(rebuilt));
      // A band boundary inside the picture (45 rows of 1921 pixels a band), one-row bands, a region.
      for (const [w, h, region] of [[1921, 1081, undefined], [100_000, 3, undefined], [641, 359, { x: 17, y: 5, width: 300, height: 211 }]] as const) {
        const img = randomImage(w, h, w + h);
        const a = committed.compute(img, region).sums.slice();
        const b = fresh.compute(img, region).sums;
        expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(a.buffer)), `the committed .wasm computes other tables than its C source: ${rebuild}`).toBe(true);
        const jobs = randomJobs(w, h, 20, w);
        const again = jobs.map((job) => ({ ...job, dst: new Float32Array(job.dst.length).fill(NaN) }));
        committed.pool(jobs, 127.5, 0.0078125);
        fresh.pool(again, 127.5, 0.0078125);
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
