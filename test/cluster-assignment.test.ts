import { describe, expect, it } from 'vitest';
import { assignStreams, costOf } from '../src/cluster/assignment.js';

/** Stream assignment policy (src/cluster/assignment.ts), with injected costs: no timing involved. */

const ids = (n: number, p = 's') => Array.from({ length: n }, (_, i) => `${p}${i + 1}`);
const countBy = (owners: Map<string, string>) => {
  const out: Record<string, number> = {};
  for (const w of owners.values()) out[w] = (out[w] ?? 0) + 1;
  return out;
};

describe('assignStreams', () => {
  it('assigns nothing without live workers, and every stream to the only worker', () => {
    expect(assignStreams({ streams: ids(3), workers: [], current: new Map(), costs: new Map(), threshold: 0.2 }).owners.size).toBe(0);
    const one = assignStreams({ streams: ids(3), workers: ['a'], current: new Map(), costs: new Map(), threshold: 0.2 });
    expect(countBy(one.owners)).toEqual({ a: 3 });
    expect(one.moves).toBe(3);
  });

  it('spreads unmeasured streams evenly by count', () => {
    const r = assignStreams({ streams: ids(4), workers: ['a', 'b'], current: new Map(), costs: new Map(), threshold: 0.2 });
    expect(countBy(r.owners)).toEqual({ a: 2, b: 2 });
    const r3 = assignStreams({ streams: ids(7), workers: ['a', 'b', 'c'], current: new Map(), costs: new Map(), threshold: 0.2 });
    expect(Object.values(countBy(r3.owners)).sort()).toEqual([2, 2, 3]);
  });

  it('balances by measured cost, not by count', () => {
    // One 1080p stream costs as much as three small ones.
    const costs = new Map([['big', 300], ['s1', 100], ['s2', 100], ['s3', 100]]);
    const r = assignStreams({ streams: [...costs.keys()], workers: ['a', 'b'], current: new Map(), costs, threshold: 0.2 });
    const bigOwner = r.owners.get('big')!;
    expect(['s1', 's2', 's3'].every((s) => r.owners.get(s) !== bigOwner)).toBe(true);
    expect([...r.loads.values()].sort()).toEqual([300, 300]);
  });

  it('charges a stream not measured yet the median measured cost', () => {
    const cost = costOf(new Map([['a', 10], ['b', 30], ['c', 20]]));
    expect(cost('new')).toBe(20);
    expect(cost('a')).toBe(10);
    expect(costOf(new Map())('x')).toBe(1);
  });

  it('moves the streams of a dead worker to the live ones and leaves the rest in place', () => {
    const current = new Map([['s1', 'a'], ['s2', 'a'], ['s3', 'b'], ['s4', 'b']]);
    const r = assignStreams({ streams: ids(4), workers: ['b'], current, costs: new Map(), threshold: 0.2 });
    expect(countBy(r.owners)).toEqual({ b: 4 });
    expect(r.moves).toBe(2);
  });

  it('moves streams back to a worker that joins', () => {
    const current = new Map(ids(4).map((s) => [s, 'b']));
    const r = assignStreams({ streams: ids(4), workers: ['a', 'b'], current, costs: new Map(), threshold: 0.2 });
    expect(countBy(r.owners)).toEqual({ a: 2, b: 2 });
    expect(r.moves).toBe(2);
  });

  it('does not move streams for cost noise below the threshold (hysteresis)', () => {
    const current = new Map([['s1', 'a'], ['s2', 'a'], ['s3', 'b'], ['s4', 'b']]);
    // a carries 5% more than b: within noise, nothing moves.
    const costs = new Map([['s1', 105], ['s2', 105], ['s3', 100], ['s4', 100]]);
    const r = assignStreams({ streams: ids(4), workers: ['a', 'b'], current, costs, threshold: 0.2 });
    expect(r.moves).toBe(0);
    // An odd stream count cannot balance better: 3 vs 2 stays.
    const five = new Map(ids(5).map((s, i) => [s, i < 3 ? 'a' : 'b']));
    expect(assignStreams({ streams: ids(5), workers: ['a', 'b'], current: five, costs: new Map(), threshold: 0.2 }).moves).toBe(0);
  });

  it('is stable: applying its answer again moves nothing, whatever the order of its inputs', () => {
    const costs = new Map(ids(9).map((s, i) => [s, 20 + ((i * 37) % 50)]));
    const first = assignStreams({ streams: ids(9), workers: ['c', 'a', 'b'], current: new Map(), costs, threshold: 0.1 });
    const again = assignStreams({ streams: [...ids(9)].reverse(), workers: ['b', 'c', 'a'], current: first.owners, costs, threshold: 0.1 });
    expect(again.moves).toBe(0);
    expect(again.owners).toEqual(first.owners);
    const loads = [...first.loads.values()];
    expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(70);
  });

  it('drops streams that no longer exist and ignores holders that are not live', () => {
    const current = new Map([['gone', 'a'], ['s1', 'zombie']]);
    const r = assignStreams({ streams: ['s1'], workers: ['a'], current, costs: new Map(), threshold: 0.2 });
    expect([...r.owners]).toEqual([['s1', 'a']]);
  });
});
