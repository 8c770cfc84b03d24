import { describe, expect, it } from 'vitest';
import { IntegralImage } from '../src/image/integral.js';
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

describe('integral image pooling', () => {
  const img = randomImage(37, 23, 7);
  const ii = new IntegralImage().compute(img);

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
    new IntegralImage().compute(big).poolInto(0, 0, 120, 80, 50, 34, whole, 0, 127.5, 1 / 128);
    const part = { col: 14, row: 6, cols: 16, rows: 12 };
    // A table of only the rectangle the part pools from (and a little more), as a search window has.
    const region = new IntegralImage().compute(big, { x: 30, y: 10, width: 50, height: 35 });
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
