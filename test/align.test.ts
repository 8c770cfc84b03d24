import { describe, expect, it } from 'vitest';
import type { Point, RgbImage } from '../src/image/types.js';
import { loadManifest, type FaceCrop } from '../src/models/manifest.js';
import { applyAffine, invertAffine, similarityTransform, type Affine } from '../src/pipeline/align/affine.js';
import { cropTransform } from '../src/pipeline/align/crop.js';
import { normalisationOf, warpInto, type InputNormalisation } from '../src/pipeline/align/warp.js';

const RAW: InputNormalisation = { order: [0, 1, 2], mean: [0, 0, 0], mul: [1, 1, 1] };

function expectAffine(actual: Affine, expected: Affine, digits = 9): void {
  for (const k of ['a', 'b', 'c', 'd', 'e', 'f'] as const) expect(actual[k], k).toBeCloseTo(expected[k], digits);
}

/** A picture whose pixel (x, y) holds R = x, G = y, B = `blue(x, y)`. */
function rampImage(width: number, height: number, blue: (x: number, y: number) => number = () => 7): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = x;
      data[i + 1] = y;
      data[i + 2] = blue(x, y);
    }
  }
  return { width, height, data };
}

/** Warps and returns the three planes of the crop. */
function warp(img: RgbImage, m: Affine, w: number, h: number, norm: InputNormalisation = RAW): Float32Array[] {
  const out = new Float32Array(3 * w * h + 5).fill(NaN);
  warpInto(img, m, w, h, out, 5, norm);
  expect(Number.isNaN(out[4])).toBe(true); // nothing written before the offset
  return [0, 1, 2].map((c) => out.subarray(5 + c * w * h, 5 + (c + 1) * w * h));
}

describe('similarity transform', () => {
  const from: Point[] = [
    [30.5, 40.25],
    [70, 41],
    [52, 60.5],
    [35, 80],
    [68, 79.5],
  ];
  const scale = 1.7;
  const theta = 0.3;
  const known: Affine = {
    a: scale * Math.cos(theta),
    b: -scale * Math.sin(theta),
    c: 12.5,
    d: scale * Math.sin(theta),
    e: scale * Math.cos(theta),
    f: -4.25,
  };

  it('recovers a known rotation, scale and translation exactly', () => {
    const to = from.map(([x, y]) => applyAffine(known, x, y));
    const m = similarityTransform(from, to);
    expectAffine(m, known);
    to.forEach((p, i) => {
      const q = applyAffine(m, from[i][0], from[i][1]);
      expect(q[0]).toBeCloseTo(p[0], 9);
      expect(q[1]).toBeCloseTo(p[1], 9);
    });
    // Inverting and composing gives the identity.
    const inv = invertAffine(m);
    const back = to.map(([x, y]) => applyAffine(inv, x, y));
    back.forEach((p, i) => {
      expect(p[0]).toBeCloseTo(from[i][0], 9);
      expect(p[1]).toBeCloseTo(from[i][1], 9);
    });
  });

  it('is the least-squares fit when the points do not fit exactly, and never reflects', () => {
    const to = from.map(([x, y], i) => {
      const [u, v] = applyAffine(known, x, y);
      return [u + (i % 2 ? 0.8 : -0.8), v + (i % 3 ? 0.5 : -0.5)] as Point;
    });
    const m = similarityTransform(from, to);
    const cost = (t: Affine) => from.reduce((s, [x, y], i) => s + (applyAffine(t, x, y)[0] - to[i][0]) ** 2 + (applyAffine(t, x, y)[1] - to[i][1]) ** 2, 0);
    const best = cost(m);
    // Any small change of its four parameters makes the fit worse.
    for (const [dp, dq, dx, dy] of [
      [1e-3, 0, 0, 0],
      [-1e-3, 0, 0, 0],
      [0, 1e-3, 0, 0],
      [0, -1e-3, 0, 0],
      [0, 0, 1e-2, 0],
      [0, 0, 0, -1e-2],
    ]) {
      const t = { a: m.a + dp, b: m.b - dq, c: m.c + dx, d: m.d + dq, e: m.e + dp, f: m.f + dy };
      expect(cost(t)).toBeGreaterThan(best);
    }
    expect(m.a * m.e - m.b * m.d).toBeGreaterThan(0);
    expect(() => similarityTransform([[1, 1]], [[2, 2]])).toThrow();
    expect(() => similarityTransform([[1, 1], [1, 1]], [[2, 2], [3, 3]])).toThrow(/coincide/);
  });

  it("maps a model's template onto the detected landmarks (similarity crop rule)", () => {
    const arcface = loadManifest().models['arcface-mbf-112'];
    if (arcface.task !== 'embedding') throw new Error('arcface-mbf-112 should be an embedding model');
    const template = arcface.crop.method === 'similarity' ? (arcface.crop.template as Point[]) : [];
    // Landmarks = template placed in the picture by a known similarity transform.
    const landmarks = template.map(([x, y]) => applyAffine(known, x, y));
    const m = cropTransform(arcface.crop, { box: [0, 0, 1, 1], landmarks }, 640, 480);
    expectAffine(m, known);
  });
});

describe('warp', () => {
  const img = rampImage(64, 48);

  it('copies pixels exactly through an integer rotation and translation', () => {
    // Output (u, v) samples source (v + 5, 40 - u): a 90-degree rotation.
    const m: Affine = { a: 0, b: 1, c: 5, d: -1, e: 0, f: 40 };
    const [r, g, b] = warp(img, m, 20, 30);
    for (let v = 0; v < 30; v++) {
      for (let u = 0; u < 20; u++) {
        expect(r[v * 20 + u]).toBe(v + 5);
        expect(g[v * 20 + u]).toBe(40 - u);
        expect(b[v * 20 + u]).toBe(7);
      }
    }
  });

  it('interpolates bilinearly between pixel centres and applies channel order and normalisation', () => {
    const m: Affine = { a: 1, b: 0, c: 10.5, d: 0, e: 1, f: 20.25 };
    const [r, g] = warp(img, m, 4, 4);
    expect(r[0]).toBeCloseTo(10.5, 5);
    expect(g[0]).toBeCloseTo(20.25, 5);
    expect(r[3]).toBeCloseTo(13.5, 5);
    expect(g[3 * 4]).toBeCloseTo(23.25, 5);
    // BGR model: output channel 0 is blue; (v - mean) / std.
    const bgr = normalisationOf({ channels: 'BGR', mean: [1, 2, 3], std: [2, 4, 8] });
    const [c0, c1, c2] = warp(img, { a: 1, b: 0, c: 9, d: 0, e: 1, f: 11 }, 2, 2, bgr);
    expect(c0[0]).toBeCloseTo((7 - 1) / 2, 5);
    expect(c1[0]).toBeCloseTo((11 - 2) / 4, 5);
    expect(c2[0]).toBeCloseTo((9 - 3) / 8, 5);
    const scaled = normalisationOf({ channels: 'RGB', mean: [127.5, 127.5, 127.5], scale: 1 / 128 });
    expect(warp(img, { a: 1, b: 0, c: 9, d: 0, e: 1, f: 11 }, 1, 1, scaled)[0][0]).toBeCloseTo((9 - 127.5) / 128, 6);
  });

  it('treats outside the picture as black', () => {
    const m: Affine = { a: 1, b: 0, c: -10, d: 0, e: 1, f: 0 };
    const [r, g, b] = warp(img, m, 20, 2);
    for (let u = 0; u < 10; u++) expect([r[u], g[u], b[u]]).toEqual([0, 0, 0]);
    expect(r[15]).toBe(5);
    // Half a pixel beyond the border: half the weight is black.
    const [edge] = warp(img, { a: 1, b: 0, c: 63.5, d: 0, e: 1, f: 3 }, 1, 1);
    expect(edge[0]).toBeCloseTo(63 / 2, 5);
  });

  it('area-averages when shrinking, instead of aliasing', () => {
    // Every 4th column white: a 4x shrink must give the block mean (255 / 4), where plain
    // bilinear sampling at the block centres would see only black columns.
    const stripes = rampImage(64, 64, (x) => (x % 4 === 0 ? 255 : 0));
    const m: Affine = { a: 4, b: 0, c: 1.5, d: 0, e: 4, f: 1.5 };
    const [, , b] = warp(stripes, m, 16, 16);
    for (let v = 1; v < 15; v++) for (let u = 1; u < 15; u++) expect(b[v * 16 + u]).toBeCloseTo(255 / 4, 3);
  });
});

describe('box crop rules', () => {
  const box = (enlarge: number, extra: Partial<Extract<FaceCrop, { method: 'box' }>> = {}): FaceCrop => ({
    method: 'box',
    size: [30, 45],
    enlarge,
    square: false,
    keepInside: false,
    ...extra,
  });

  it('enlarges the box about its centre and scales it to the output size', () => {
    // Box 40x60 centred at (120, 80), enlarged 1.5x: 60x90 from (90, 35); 30x45 output: 2 px per output pixel.
    const m = cropTransform(box(1.5), { box: [100, 50, 140, 110], landmarks: [] }, 640, 480);
    // Output pixel (0, 0) covers source [90, 92) x [35, 37): its centre is at pixel coordinate (90.5, 35.5).
    expectAffine(m, { a: 2, b: 0, c: 90.5, d: 0, e: 2, f: 35.5 });
  });

  it('squares the enlarged box on its longer side when asked', () => {
    const m = cropTransform({ ...box(1.5, { square: true }), size: [45, 45] }, { box: [100, 50, 140, 110], landmarks: [] }, 640, 480);
    // 90x90 about (120, 80): from (75, 35), 2 px per output pixel.
    expectAffine(m, { a: 2, b: 0, c: 75.5, d: 0, e: 2, f: 35.5 });
  });

  it('keepInside shifts the enlarged box back into the picture, shrinking it only when the picture is smaller', () => {
    const rule = { ...box(1.4, { keepInside: true }), size: [56, 56] as [number, number] };
    // Top-left corner: 56x56 about (20, 20) would start at (-8, -8); shifted to (0, 0).
    expectAffine(cropTransform(rule, { box: [0, 0, 40, 40], landmarks: [] }, 100, 100), { a: 1, b: 0, c: 0, d: 0, e: 1, f: 0 });
    // Right edge: about (90, 50) it would end at x = 118; shifted to end at 100.
    expectAffine(cropTransform(rule, { box: [70, 30, 110, 70], landmarks: [] }, 100, 100), { a: 1, b: 0, c: 44, d: 0, e: 1, f: 22 });
    // Without keepInside the box hangs outside (and is padded black by the warp).
    expect(cropTransform(box(1.4), { box: [0, 0, 40, 40], landmarks: [] }, 100, 100).c).toBeLessThan(0);
    // A 50x30 picture is smaller than the 56x56 box: the box shrinks to the picture.
    const small = cropTransform(rule, { box: [5, 0, 45, 40], landmarks: [] }, 50, 30);
    expect(small.a).toBeCloseTo(50 / 56, 9);
    expect(small.e).toBeCloseTo(30 / 56, 9);
    expect(applyAffine(small, -0.5, -0.5)[0]).toBeCloseTo(-0.5, 9);
    expect(applyAffine(small, 55.5, 55.5)[1]).toBeCloseTo(29.5, 9);
  });

  it('resizeShorter then cuts the centre (VGGFace2 test-time crop), as in the manifest', () => {
    const vgg = loadManifest().models['vggface2-resnet50-arch'];
    if (vgg.task !== 'embedding' || vgg.crop.method !== 'box') throw new Error('vggface2-resnet50-arch should have a box crop rule');
    expect(vgg.crop).toMatchObject({ enlarge: 1.3, resizeShorter: 256, size: [224, 224] });
    // Box 100x200 -> enlarged 130x260 from (85, 70); shorter side 130 -> 256, so 256x512, centre 224x224 at (16, 144).
    const m = cropTransform(vgg.crop, { box: [100, 100, 200, 300], landmarks: [] }, 640, 480);
    const pxPerOut = 130 / 256;
    expectAffine(m, { a: pxPerOut, b: 0, c: 85 + 16.5 * pxPerOut - 0.5, d: 0, e: pxPerOut, f: 70 + 144.5 * pxPerOut - 0.5 });
    // The crop's centre is the box's centre (pixel centres at integers: continuous 150 is pixel 149.5).
    const centre = applyAffine(m, 111.5, 111.5);
    expect(centre[0]).toBeCloseTo(149.5, 9);
    expect(centre[1]).toBeCloseTo(199.5, 9);
  });
});
