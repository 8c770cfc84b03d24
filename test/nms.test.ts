import { describe, expect, it } from 'vitest';
import { nms, type Candidate, type OverlapMode } from '../src/pipeline/detect/boxes.js';

/** The textbook all-pairs greedy NMS, the definition the fast one must match exactly. */
function reference(cands: Candidate[], threshold: number, mode: OverlapMode): Candidate[] {
  const plus = mode === 'union' ? 0 : 1;
  const order = cands.map((_, i) => i).sort((a, b) => cands[b].score - cands[a].score);
  const removed = new Set<number>();
  const kept: Candidate[] = [];
  const area = (c: Candidate) => (c.x2 - c.x1 + plus) * (c.y2 - c.y1 + plus);
  for (let oi = 0; oi < order.length; oi++) {
    const a = cands[order[oi]];
    if (removed.has(order[oi])) continue;
    kept.push(a);
    for (let oj = oi + 1; oj < order.length; oj++) {
      const b = cands[order[oj]];
      if (removed.has(order[oj])) continue;
      const w = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1) + plus;
      const h = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1) + plus;
      if (w <= 0 || h <= 0) continue;
      const inter = w * h;
      const overlap = mode === 'min+1' ? inter / Math.min(area(a), area(b)) : inter / (area(a) + area(b) - inter);
      if (overlap > threshold) removed.add(order[oj]);
    }
  }
  return kept;
}

function random(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 2147483648;
  };
}

/** Boxes like P-Net's: a few sizes on a grid, clustered, with tied scores and some degenerate ones. */
function boxes(n: number, seed: number): Candidate[] {
  const r = random(seed);
  return Array.from({ length: n }, () => {
    const size = [12, 17, 24, 34, 48, 300][Math.floor(r() * 6)] * (0.8 + r() * 0.4);
    const x1 = Math.floor(r() * 60) * 3 + (r() < 0.5 ? 0 : 900);
    const y1 = Math.floor(r() * 40) * 3;
    const degenerate = r() < 0.02;
    return { x1, y1, x2: degenerate ? x1 - 2 : x1 + size, y2: y1 + size, score: Math.round(r() * 20) / 20, dx1: 0, dy1: 0, dx2: 0, dy2: 0 };
  });
}

describe('non-maximum suppression', () => {
  for (const mode of ['union', 'union+1', 'min+1'] as const) {
    for (const threshold of [0.5, 0.7]) {
      it(`matches the all-pairs definition exactly (${mode}, ${threshold})`, () => {
        for (const [n, seed] of [
          [3, 1],
          [63, 2],
          [64, 3],
          [500, 4],
          [3000, 5],
        ]) {
          const cands = boxes(n, seed);
          const fast = nms(cands, threshold, mode);
          const slow = reference(cands, threshold, mode);
          expect(fast.length, `${n} boxes`).toBe(slow.length);
          expect(fast.every((c, i) => c === slow[i])).toBe(true);
          expect(fast.length).toBeLessThan(n === 3 ? 4 : n);
        }
      });
    }
  }

  it('suppresses a box nested in a larger one whose area is just over threshold times its own, at every size', () => {
    // IoU of nested boxes is the area ratio: just over the threshold, the pair straddles the
    // boundary of the size classes the grid uses at some sizes, and must still be compared.
    for (const [threshold, mode] of [[0.5, 'union'], [0.7, 'union'], [0.7, 'union+1']] as const) {
      const cands: Candidate[] = [];
      for (let k = 0; k < 200; k++) {
        const side = 10 * 1.013 ** k;
        const inner = side * Math.sqrt(threshold) * 1.0005;
        const x = k * 2000;
        cands.push({ x1: x, y1: 0, x2: x + side, y2: side, score: 0.9, dx1: 0, dy1: 0, dx2: 0, dy2: 0 });
        cands.push({ x1: x, y1: 0, x2: x + inner, y2: inner, score: 0.8, dx1: 0, dy1: 0, dx2: 0, dy2: 0 });
      }
      const kept = nms(cands, threshold, mode);
      expect(kept).toEqual(reference(cands, threshold, mode));
      if (mode === 'union') expect(kept).toHaveLength(200);
    }
  });

  it('matches the all-pairs definition at thresholds of 0, 1, over 1 and a hair under 1, with mixed sizes', () => {
    // A hair under 1: size classes narrower than the rounding of the logarithms (numbered past 2^53).
    const cands = boxes(300, 7);
    // Nested pairs whose IoU is 1 - 2^-10 .. 1 - 2^-49, which thresholds just under 1 tell apart.
    for (let k = 0; k < 40; k++) {
      const outer = { x1: 2000 + k * 50, y1: 0, x2: 2030 + k * 50, y2: 30, score: 0.3, dx1: 0, dy1: 0, dx2: 0, dy2: 0 };
      cands.push(outer, { ...outer, y2: 30 - 30 * 2 ** -(k + 10), score: 0.29 });
    }
    for (const threshold of [0, 1, 1.5, 1 - 2 ** -52, 1 - 2 ** -40, 1 - 1e-9, -0.5]) {
      for (const mode of ['union', 'union+1', 'min+1'] as const) {
        const fast = nms(cands, threshold, mode);
        const slow = reference(cands, threshold, mode);
        expect(fast.length, `${mode}, ${threshold}`).toBe(slow.length);
        expect(fast.every((c, i) => c === slow[i]), `${mode}, ${threshold}`).toBe(true);
      }
    }
  });

  it('matches the all-pairs definition with boxes of no number, infinite or enormous coordinates among them', () => {
    const odd: Partial<Candidate>[] = [
      { x1: NaN },
      { y2: NaN },
      { x1: -Infinity },
      { x2: Infinity, y2: Infinity },
      { x1: -Infinity, y1: -Infinity, x2: Infinity, y2: Infinity },
      { x1: -1e308, x2: 1e308 },
    ];
    for (const extra of odd) {
      const cands = boxes(200, 8);
      // The odd box over the others (a box a broken model could give), best first.
      cands.push({ x1: 0, y1: 0, x2: 50, y2: 50, score: 1, dx1: 0, dy1: 0, dx2: 0, dy2: 0, ...extra });
      // Boxes spanning half the number line (finite areas): a duplicate of one must be suppressed.
      const wide = { x1: -1e308, y1: 0, x2: 0, y2: 1e-300, score: 0.99, dx1: 0, dy1: 0, dx2: 0, dy2: 0 };
      cands.push(wide, { ...wide, score: 0.98 }, { ...wide, x1: 0, x2: 1e308 });
      for (const [mode, threshold] of [['union', 0.5], ['union+1', 0.7], ['min+1', 0.7], ['union', 0]] as const) {
        const fast = nms(cands, threshold, mode);
        const slow = reference(cands, threshold, mode);
        expect(fast.length, `${JSON.stringify(extra)}, ${mode}, ${threshold}`).toBe(slow.length);
        expect(fast.every((c, i) => c === slow[i]), `${JSON.stringify(extra)}, ${mode}, ${threshold}`).toBe(true);
      }
    }
  });

  it('keeps the best of two overlapping boxes and both of two apart', () => {
    const a = { x1: 0, y1: 0, x2: 10, y2: 10, score: 0.9, dx1: 0, dy1: 0, dx2: 0, dy2: 0 };
    const b = { ...a, x1: 1, x2: 11, score: 0.95 };
    const c = { ...a, x1: 100, x2: 110, score: 0.5 };
    expect(nms([a, b, c], 0.5, 'union')).toEqual([b, c]);
    expect(nms([], 0.5, 'union')).toEqual([]);
  });
});
