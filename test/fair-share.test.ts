import { describe, expect, it } from 'vitest';
import { chargeFairShare, pickFairShare, wakeFairShare, type FairShareStream } from '../src/pipeline/fair-share.js';

interface SimStream extends FairShareStream {
  id: string;
  fps: number;
  offered: number;
  processed: number;
}

/**
 * A discrete-event simulation of live admission with injected per-frame costs and a fake clock:
 * `slots` frames can be in flight, each stream keeps only its newest waiting frame (the older is
 * dropped as stale), and admission follows pickFairShare/chargeFairShare as the pipeline does.
 */
function simulate(streams: { id: string; fps: number; costMs: number }[], slots: number, seconds: number): Map<string, SimStream> {
  const state: SimStream[] = streams.map((s) => ({ ...s, virtualTime: 0, waiting: false, inFlight: 0, offered: 0, processed: 0 }));
  const finishes: { at: number; stream: SimStream }[] = [];
  let inFlight = 0;
  let rr = 0;
  const admit = (now: number) => {
    while (inFlight < slots) {
      const at = pickFairShare(state, rr, 2);
      if (at < 0) return;
      const s = state[at];
      rr = (at + 1) % state.length;
      chargeFairShare(s);
      s.waiting = false;
      s.inFlight++;
      inFlight++;
      finishes.push({ at: now + s.costMs, stream: s });
    }
  };
  const nextOffer = state.map(() => 0);
  for (let now = 0; now < seconds * 1000; now += 1) {
    for (let k = finishes.length - 1; k >= 0; k--) {
      if (finishes[k].at > now) continue;
      const { stream } = finishes[k];
      finishes.splice(k, 1);
      stream.inFlight--;
      stream.processed++;
      inFlight--;
    }
    state.forEach((s, i) => {
      if (now < nextOffer[i]) return;
      nextOffer[i] += 1000 / s.fps;
      s.offered++;
      wakeFairShare(state, s);
      s.waiting = true;
    });
    admit(now);
  }
  return new Map(state.map((s) => [s.id, s]));
}

describe('fair admission with injected costs (fake clock)', () => {
  it('gives a cheap stream all its frames however busy its neighbour', () => {
    // A 1080p stream offered far beyond what two workers can do, beside a 640x360 stream that needs 10% of one.
    const r = simulate(
      [
        { id: 'busy-1080p', fps: 50, costMs: 120 },
        { id: 'small', fps: 10, costMs: 10 },
      ],
      2,
      20,
    );
    const busy = r.get('busy-1080p')!;
    const small = r.get('small')!;
    expect(small.processed / small.offered).toBeGreaterThan(0.95);
    // The busy stream takes the rest of the machine: about 2 slots / 120 ms.
    expect(busy.processed / 20).toBeGreaterThan(14);
  });

  it('splits an overloaded machine equally in compute between heavy streams, not in frames', () => {
    const r = simulate(
      [
        { id: 'a', fps: 50, costMs: 100 },
        { id: 'b', fps: 50, costMs: 50 },
      ],
      1,
      30,
    );
    const computeA = r.get('a')!.processed * 100;
    const computeB = r.get('b')!.processed * 50;
    expect(Math.abs(computeA - computeB) / (computeA + computeB)).toBeLessThan(0.05);
  });

  it('lets a stream that was idle restart at the busy clock, without banked credit', () => {
    const streams: FairShareStream[] = [
      { virtualTime: 5000, costMs: 10, waiting: true, inFlight: 1 },
      { virtualTime: 0, costMs: 10, waiting: false, inFlight: 0 },
    ];
    wakeFairShare(streams, streams[1]);
    streams[1].waiting = true;
    expect(streams[1].virtualTime).toBe(5000);
    // A stream already waiting keeps its place.
    streams[1].virtualTime = 100;
    wakeFairShare(streams, streams[1]);
    expect(streams[1].virtualTime).toBe(100);
    expect(pickFairShare(streams, 0, 2)).toBe(1);
    chargeFairShare(streams[1]);
    expect(streams[1].virtualTime).toBe(110);
  });

  it('respects the per-stream in-flight limit and round-robins ties', () => {
    const streams: FairShareStream[] = [
      { virtualTime: 0, costMs: 10, waiting: true, inFlight: 2 },
      { virtualTime: 0, costMs: 10, waiting: true, inFlight: 0 },
      { virtualTime: 0, costMs: 10, waiting: true, inFlight: 0 },
    ];
    expect(pickFairShare(streams, 0, 2)).toBe(1);
    expect(pickFairShare(streams, 2, 2)).toBe(2);
    expect(pickFairShare([{ ...streams[0] }], 0, 2)).toBe(-1);
  });
});
