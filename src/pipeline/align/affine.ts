import type { Point } from '../../image/types.js';

/**
 * A 2x3 affine map from output (crop) pixel coordinates to source picture coordinates:
 *   x = a*u + b*v + c,  y = d*u + e*v + f.
 * Pixel centres sit at integer coordinates, as in OpenCV's warpAffine.
 */
export interface Affine {
  a: number;
  b: number;
  c: number;
  d: number;
  e: number;
  f: number;
}

export function applyAffine(m: Affine, u: number, v: number): Point {
  return [m.a * u + m.b * v + m.c, m.d * u + m.e * v + m.f];
}

export function invertAffine(m: Affine): Affine {
  const det = m.a * m.e - m.b * m.d;
  if (det === 0) throw new Error('affine map is singular');
  const a = m.e / det;
  const b = -m.b / det;
  const d = -m.d / det;
  const e = m.a / det;
  return { a, b, c: -(a * m.c + b * m.f), d, e, f: -(d * m.c + e * m.f) };
}

/**
 * Least-squares similarity transform (rotation, uniform scale, translation; no reflection) taking
 * `from` points onto `to` points: the closed form of Umeyama's method for 2-D.
 */
export function similarityTransform(from: readonly Point[], to: readonly Point[]): Affine {
  const n = from.length;
  if (n < 2 || n !== to.length) throw new Error('similarity transform needs at least two matching point pairs');
  let fx = 0;
  let fy = 0;
  let tx = 0;
  let ty = 0;
  for (let i = 0; i < n; i++) {
    fx += from[i][0];
    fy += from[i][1];
    tx += to[i][0];
    ty += to[i][1];
  }
  fx /= n;
  fy /= n;
  tx /= n;
  ty /= n;
  let num1 = 0;
  let num2 = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    const x = from[i][0] - fx;
    const y = from[i][1] - fy;
    const u = to[i][0] - tx;
    const v = to[i][1] - ty;
    num1 += x * u + y * v;
    num2 += x * v - y * u;
    den += x * x + y * y;
  }
  if (den === 0) throw new Error('similarity transform: source points coincide');
  const p = num1 / den; // scale * cos(theta)
  const q = num2 / den; // scale * sin(theta)
  return { a: p, b: -q, c: tx - p * fx + q * fy, d: q, e: p, f: ty - q * fx - p * fy };
}
