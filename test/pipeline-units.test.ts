import { describe, expect, it } from 'vitest';
import { batchDecision, BatcherRejection, DynamicBatcher } from '../src/pipeline/batcher.js';
import { OrderedGate } from '../src/pipeline/ordered-gate.js';
import { IdentityVoter, voteWeight } from '../src/pipeline/track/identity-vote.js';
import { IouTracker } from '../src/pipeline/track/tracker.js';
import type { Box } from '../src/image/types.js';

describe('batchDecision (send or wait)', () => {
  const opts = { maxBatch: 4, maxDelayMs: 10 };
  it('is idle with nothing queued', () => expect(batchDecision(0, 0, opts)).toEqual({ action: 'idle' }));
  it('sends a full batch at once', () => expect(batchDecision(6, 0, opts)).toEqual({ action: 'send', size: 4 }));
  it('waits while the oldest item is younger than the delay', () => expect(batchDecision(2, 3, opts)).toEqual({ action: 'wait', ms: 7 }));
  it('sends a partial batch once the oldest item waited long enough', () => expect(batchDecision(2, 10, opts)).toEqual({ action: 'send', size: 2 }));
});

describe('DynamicBatcher', () => {
  it('groups concurrent submissions into batches no larger than maxBatch', async () => {
    const sizes: number[] = [];
    const b = new DynamicBatcher<number, number>(async (xs) => {
      sizes.push(xs.length);
      await new Promise((r) => setTimeout(r, 5));
      return xs.map((x) => x * 2);
    }, { maxBatch: 4, maxDelayMs: 20, maxQueue: 100 });
    const out = await Promise.all(Array.from({ length: 10 }, (_, i) => b.submit(i)));
    expect(out).toEqual(Array.from({ length: 10 }, (_, i) => i * 2));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(4);
    expect(sizes.reduce((a, c) => a + c, 0)).toBe(10);
    expect(sizes.length).toBeLessThan(10);
  });

  it('sends a lone item after maxDelayMs rather than waiting for company', async () => {
    const b = new DynamicBatcher<number, number>(async (xs) => xs, { maxBatch: 8, maxDelayMs: 15, maxQueue: 10 });
    const t0 = performance.now();
    await b.submit(1);
    const waited = performance.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(10);
  });

  it('refuses items beyond maxQueue and rejects everything queued on close', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new DynamicBatcher<number, number>(async (xs) => {
      await gate;
      return xs;
    }, { maxBatch: 1, maxDelayMs: 0, maxQueue: 2 });
    const first = b.submit(1); // running
    const queued = [b.submit(2), b.submit(3)];
    await expect(b.submit(4)).rejects.toBeInstanceOf(BatcherRejection);
    b.close();
    for (const q of queued) await expect(q).rejects.toMatchObject({ reason: 'closed' });
    release();
    await expect(first).resolves.toBe(1);
  });

  it('passes a failing batch error to every item of that batch', async () => {
    const b = new DynamicBatcher<number, number>(async () => {
      throw new Error('model exploded');
    }, { maxBatch: 4, maxDelayMs: 1, maxQueue: 10 });
    await expect(Promise.all([b.submit(1), b.submit(2)])).rejects.toThrow('model exploded');
  });
});

describe('OrderedGate', () => {
  it('lets tickets through in order, hopping over skipped ones', async () => {
    const gate = new OrderedGate();
    const order: number[] = [];
    const run = async (t: number, delay: number) => {
      await new Promise((r) => setTimeout(r, delay));
      await gate.enter(t);
      order.push(t);
      gate.leave(t);
    };
    const skipper = (async () => {
      await new Promise((r) => setTimeout(r, 5));
      gate.skip(1);
    })();
    await Promise.all([run(3, 0), run(0, 20), run(2, 1), skipper]);
    expect(order).toEqual([0, 2, 3]);
  });
});

describe('IouTracker', () => {
  const det = (box: Box) => ({ box, score: 0.99, landmarks: [] });
  it('keeps ids for faces that move a little between frames and gives new faces new ids', () => {
    const t = new IouTracker({ iouThreshold: 0.3, maxMisses: 2 });
    const a = t.update(0, [det([0, 0, 50, 50]), det([200, 200, 260, 260])]).tracks.map((x) => x.id);
    const b = t.update(1, [det([205, 203, 265, 263]), det([4, 2, 54, 52])]).tracks.map((x) => x.id);
    expect(b).toEqual([a[1], a[0]]);
    const c = t.update(2, [det([500, 500, 540, 540])]);
    expect(c.started).toHaveLength(1);
    expect(a).not.toContain(c.tracks[0].id);
  });

  it('follows a face moving steadily faster than IoU alone would allow, by predicting its motion', () => {
    const t = new IouTracker({ iouThreshold: 0.3, maxMisses: 2 });
    const ids = new Set<number>();
    // After a slower start it moves 30 px per frame: consecutive boxes overlap with IoU 0.25 only.
    const xs = [0, 20, 45, 75, 105, 135, 165, 195, 225, 255];
    xs.forEach((x, i) => ids.add(t.update(i, [det([x, 0, x + 50, 50])]).tracks[0].id));
    expect(ids.size).toBe(1);
  });

  it('ends tracks unseen for more than maxMisses frames', () => {
    const t = new IouTracker({ iouThreshold: 0.3, maxMisses: 2 });
    const first = t.update(0, [det([0, 0, 50, 50])]).tracks[0];
    expect(t.update(2, []).ended).toEqual([]);
    expect(t.update(3, []).ended).toEqual([first]);
    expect(t.active).toHaveLength(0);
  });
});

describe('IdentityVoter', () => {
  const vote = (id: string | null, similarity = 0.6, weight = 1) => ({ identityId: id, name: id, similarity, weight });
  it('holds the label against a single stray recognition (no flicker)', () => {
    const v = new IdentityVoter({ window: 10, minShare: 0.5 });
    for (let i = 0; i < 4; i++) v.add(vote('alice'));
    v.add(vote('bob', 0.4));
    expect(v.decide()?.id).toBe('alice');
  });
  it('abstains on ties and when unknown leads', () => {
    const v = new IdentityVoter({ window: 10, minShare: 0.5 });
    v.add(vote('alice'));
    v.add(vote('bob'));
    expect(v.decide()).toBeNull();
    const u = new IdentityVoter({ window: 10, minShare: 0.5 });
    u.add(vote(null, 0.1, 2));
    u.add(vote('alice', 0.4, 1));
    expect(u.decide()).toBeNull();
  });
  it('forgets votes outside the window', () => {
    const v = new IdentityVoter({ window: 3, minShare: 0.5 });
    for (let i = 0; i < 5; i++) v.add(vote('alice'));
    for (let i = 0; i < 3; i++) v.add(vote('bob'));
    expect(v.decide()?.id).toBe('bob');
  });
  it('weighs big faces with a clear margin more than small borderline ones', () => {
    expect(voteWeight(120, 0.8, 0.35, true)).toBeGreaterThan(voteWeight(40, 0.36, 0.35, true));
  });
});

describe('AppearanceLog', () => {
  const alice = { id: 'alice', name: 'Alice' };
  it('announces an arrival once, and a departure only after the grace time without any track showing the person', async () => {
    const { AppearanceLog } = await import('../src/pipeline/appearances.js');
    const { PipelineBus } = await import('../src/pipeline/bus.js');
    const bus = new PipelineBus();
    const events: string[] = [];
    bus.on('appearance', (e) => events.push(`${e.type}:${e.identity.id}`));
    const log = new AppearanceLog('cam', bus, 2000);
    log.observe(1, alice, 0);
    log.end(1, 100); // track lost...
    log.flush(1000);
    log.observe(2, alice, 1500); // ...and found again under a new track within the grace time
    log.end(2, 1600);
    log.flush(3000);
    expect(events).toEqual(['appeared:alice']);
    expect(log.current()).toEqual([]);
    log.flush(3700);
    expect(events).toEqual(['appeared:alice', 'left:alice']);
    log.observe(3, alice, 5000);
    log.clear(5100);
    expect(events).toEqual(['appeared:alice', 'left:alice', 'appeared:alice', 'left:alice']);
  });
});
