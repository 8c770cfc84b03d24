import type { RgbImage } from '../../image/types.js';
import type { Affine } from './affine.js';
import { applyAffine } from './affine.js';

/** How crop pixels become model input values: channel order and per-channel (v - mean) * mul. */
export interface InputNormalisation {
  /** Source channel for each output channel: [0, 1, 2] for RGB models, [2, 1, 0] for BGR. */
  order: readonly [number, number, number];
  mean: readonly [number, number, number];
  mul: readonly [number, number, number];
}

interface Source {
  width: number;
  height: number;
  data: ArrayLike<number>;
}

/**
 * Shrinks a region of the picture by an integer factor with a box filter (every source pixel
 * counted once). Used before warping a face much larger than the model input, where bilinear
 * sampling alone would alias.
 */
function boxShrinkRegion(img: RgbImage, x0: number, y0: number, w: number, h: number, factor: number): Source {
  const ow = Math.max(1, Math.floor(w / factor));
  const oh = Math.max(1, Math.floor(h / factor));
  const out = new Float32Array(ow * oh * 3);
  const src = img.data;
  const rowSums = new Float32Array(ow * 3);
  const inv = 1 / (factor * factor);
  for (let oy = 0; oy < oh; oy++) {
    rowSums.fill(0);
    for (let dy = 0; dy < factor; dy++) {
      let s = ((y0 + oy * factor + dy) * img.width + x0) * 3;
      for (let ox = 0; ox < ow; ox++) {
        let r = 0;
        let g = 0;
        let b = 0;
        for (let dx = 0; dx < factor; dx++, s += 3) {
          r += src[s];
          g += src[s + 1];
          b += src[s + 2];
        }
        rowSums[ox * 3] += r;
        rowSums[ox * 3 + 1] += g;
        rowSums[ox * 3 + 2] += b;
      }
    }
    const o = oy * ow * 3;
    for (let k = 0; k < ow * 3; k++) out[o + k] = rowSums[k] * inv;
  }
  return { width: ow, height: oh, data: out };
}

/**
 * Warps the picture through `m` (output -> source) into an outW x outH crop written as planar,
 * normalised float32 at dst[offset]. Bilinear sampling; outside the picture is black. When one
 * output pixel spans two or more source pixels, the face region is first box-shrunk by that
 * integer factor so the result is area-averaged rather than aliased.
 */
export function warpInto(img: RgbImage, m: Affine, outW: number, outH: number, dst: Float32Array, offset: number, norm: InputNormalisation): void {
  let src: Source = img;
  let map = m;
  const factor = Math.floor(Math.sqrt(Math.abs(m.a * m.e - m.b * m.d)));
  if (factor >= 2) {
    // Bounding box of the crop's footprint in the picture, clamped and aligned to whole blocks.
    const corners = [applyAffine(m, -0.5, -0.5), applyAffine(m, outW - 0.5, -0.5), applyAffine(m, -0.5, outH - 0.5), applyAffine(m, outW - 0.5, outH - 0.5)];
    const xs = corners.map((p) => p[0]);
    const ys = corners.map((p) => p[1]);
    const x0 = Math.max(0, Math.floor(Math.min(...xs)) - factor);
    const y0 = Math.max(0, Math.floor(Math.min(...ys)) - factor);
    const x1 = Math.min(img.width, Math.ceil(Math.max(...xs)) + factor);
    const y1 = Math.min(img.height, Math.ceil(Math.max(...ys)) + factor);
    const w = Math.floor((x1 - x0) / factor) * factor;
    const h = Math.floor((y1 - y0) / factor) * factor;
    if (w >= factor && h >= factor) {
      src = boxShrinkRegion(img, x0, y0, w, h, factor);
      // Shrunk pixel k has its centre at source x0 + k*factor + (factor-1)/2.
      const off = (factor - 1) / 2;
      map = {
        a: m.a / factor,
        b: m.b / factor,
        c: (m.c - x0 - off) / factor,
        d: m.d / factor,
        e: m.e / factor,
        f: (m.f - y0 - off) / factor,
      };
    }
  }
  sampleBilinear(src, map, outW, outH, dst, offset, norm);
}

function sampleBilinear(src: Source, m: Affine, outW: number, outH: number, dst: Float32Array, offset: number, norm: InputNormalisation): void {
  const { width: w, height: h, data } = src;
  const plane = outW * outH;
  const bgr = norm.order[0] === 2;
  const [m0, m1, m2] = norm.mean;
  const [k0, k1, k2] = norm.mul;
  const row = w * 3;
  for (let v = 0; v < outH; v++) {
    let x = m.b * v + m.c;
    let y = m.e * v + m.f;
    for (let u = 0; u < outW; u++, x += m.a, y += m.d) {
      const xf = Math.floor(x);
      const yf = Math.floor(y);
      const fx = x - xf;
      const fy = y - yf;
      let r = 0;
      let g = 0;
      let b = 0;
      if (xf >= 0 && yf >= 0 && xf + 1 < w && yf + 1 < h) {
        const s = (yf * w + xf) * 3;
        const w00 = (1 - fx) * (1 - fy);
        const w01 = fx * (1 - fy);
        const w10 = (1 - fx) * fy;
        const w11 = fx * fy;
        r = w00 * data[s] + w01 * data[s + 3] + w10 * data[s + row] + w11 * data[s + row + 3];
        g = w00 * data[s + 1] + w01 * data[s + 4] + w10 * data[s + row + 1] + w11 * data[s + row + 4];
        b = w00 * data[s + 2] + w01 * data[s + 5] + w10 * data[s + row + 2] + w11 * data[s + row + 5];
      } else {
        // At the border each neighbour counts only when inside the picture (black outside).
        for (let n = 0; n < 4; n++) {
          const px = xf + (n & 1);
          const py = yf + (n >> 1);
          if (px < 0 || py < 0 || px >= w || py >= h) continue;
          const wgt = (n & 1 ? fx : 1 - fx) * (n >> 1 ? fy : 1 - fy);
          const s = (py * w + px) * 3;
          r += wgt * data[s];
          g += wgt * data[s + 1];
          b += wgt * data[s + 2];
        }
      }
      if (bgr) {
        const t = r;
        r = b;
        b = t;
      }
      const i = offset + v * outW + u;
      dst[i] = (r - m0) * k0;
      dst[i + plane] = (g - m1) * k1;
      dst[i + 2 * plane] = (b - m2) * k2;
    }
  }
}

/** Builds the normalisation for a manifest input spec. */
export function normalisationOf(input: { channels: 'RGB' | 'BGR'; mean: readonly number[]; scale?: number; std?: readonly number[] }): InputNormalisation {
  const order: [number, number, number] = input.channels === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  const mean = [input.mean[0], input.mean[1], input.mean[2]] as const;
  const mul = input.std
    ? ([1 / input.std[0], 1 / input.std[1], 1 / input.std[2]] as const)
    : ([input.scale ?? 1, input.scale ?? 1, input.scale ?? 1] as const);
  return { order, mean, mul };
}
