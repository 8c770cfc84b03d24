import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { CoresBusyMeter } from '../src/server/cores-busy.js';
import { ServerMetrics } from '../src/server/metrics.js';

type Labels = Record<string, string | number>;

async function values(metrics: ServerMetrics, name: string): Promise<{ labels: Labels; value: number }[]> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  return (await metric.get()).values as { labels: Labels; value: number }[];
}

async function valueOf(metrics: ServerMetrics, name: string, labels: Labels): Promise<number | undefined> {
  return (await values(metrics, name)).find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
}

describe('detection metrics (pipelineObserver.detectionRun)', () => {
  const open: ServerMetrics[] = [];
  afterEach(() => open.splice(0).forEach((m) => m.close()));
  const make = (defaultMetrics = false) => {
    const m = new ServerMetrics({ defaultMetrics });
    open.push(m);
    return m;
  };

  it('creates runs and searched share at zero for every kind when a stream is added, and removes them with it', async () => {
    const m = make();
    m.streamAdded('door');
    m.streamAdded('yard');
    for (const kind of ['full', 'motion', 'refine']) {
      expect(await valueOf(m, 'facestream_detection_runs_total', { stream: 'door', kind })).toBe(0);
      expect(await valueOf(m, 'facestream_detection_searched_frames_total', { stream: 'yard', kind })).toBe(0);
    }
    m.streamRemoved('door');
    expect((await values(m, 'facestream_detection_runs_total')).map((v) => v.labels.stream)).toEqual(['yard', 'yard', 'yard']);
    expect((await values(m, 'facestream_detection_searched_frames_total')).every((v) => v.labels.stream === 'yard')).toBe(true);
    expect(await m.text()).not.toContain('stream="door"');
  });

  it('counts runs per stream and kind and sums the share searched in frame-equivalents', async () => {
    const m = make();
    m.streamAdded('door');
    m.streamAdded('yard');
    const o = m.pipelineObserver;
    // A keyframe, then two frames with a motion search and two tracked faces refined on each.
    o.detectionRun('door', 'full', 1);
    for (let frame = 0; frame < 2; frame++) {
      o.detectionRun('door', 'motion', 0.125);
      o.detectionRun('door', 'refine', 0.01);
      o.detectionRun('door', 'refine', 0.02);
    }
    o.detectionRun('yard', 'full', 1);
    const runs = (kind: string, stream = 'door') => valueOf(m, 'facestream_detection_runs_total', { stream, kind });
    const searched = (kind: string, stream = 'door') => valueOf(m, 'facestream_detection_searched_frames_total', { stream, kind });
    expect([await runs('full'), await runs('motion'), await runs('refine'), await runs('full', 'yard'), await runs('motion', 'yard')]).toEqual([1, 2, 4, 1, 0]);
    expect(await searched('full')).toBe(1);
    expect(await searched('motion')).toBeCloseTo(0.25, 9);
    expect(await searched('refine')).toBeCloseTo(0.06, 9);
    // A still scene: refine runs over nothing add runs but no searched area; a share is never over a whole picture.
    o.detectionRun('yard', 'refine', 0);
    o.detectionRun('yard', 'motion', 1.7);
    expect(await runs('refine', 'yard')).toBe(1);
    expect(await searched('refine', 'yard')).toBe(0);
    expect(await searched('motion', 'yard')).toBe(1);
    // The exposition carries the kind label as the dashboard queries it.
    expect(await m.text()).toMatch(/^facestream_detection_runs_total\{stream="door",kind="refine"\} 4$/m);
  });

  it('reports cores busy, cores available, and an event-loop p99 sampled finer than prom-client\'s 10 ms default', async () => {
    const m = make(true);
    await new Promise((r) => setTimeout(r, 300));
    const text = await m.text();
    expect(text).toMatch(/^facestream_cores_busy \d/m);
    expect(text).toMatch(new RegExp(`^facestream_cores_available ${os.availableParallelism()}$`, 'm'));
    expect(text).toMatch(/^nodejs_eventloop_lag_p99_seconds \d/m);
    // Each sample is the time between two timer ticks, so the smallest one is about the sampling
    // period: 2 ms here, 10 ms with prom-client's default.
    const min = Number(/^nodejs_eventloop_lag_min_seconds (\S+)$/m.exec(text)?.[1]);
    expect(min).toBeGreaterThan(0);
    expect(min).toBeLessThan(0.008);
  });
});

describe('CoresBusyMeter', () => {
  it('divides the CPU time of the last window by its wall time (fake clocks)', () => {
    let ms = 0;
    let cpu = 0;
    const meter = new CoresBusyMeter({ windowMs: 5000, now: () => ms, cpu: () => cpu });
    expect(meter.coresBusy()).toBe(0);
    // 1.5 cores busy for 5 s, sampled every second.
    for (let i = 0; i < 5; i++) {
      ms += 1000;
      cpu += 1.5e6;
      meter.sample();
    }
    expect(meter.coresBusy()).toBeCloseTo(1.5, 9);
    // Then idle for 3 s: the window still holds 2 busy seconds out of 5.
    for (let i = 0; i < 3; i++) {
      ms += 1000;
      meter.sample();
    }
    expect(meter.coresBusy()).toBeCloseTo((2 * 1.5) / 5, 9);
    // Idle for longer than the window: 0.
    for (let i = 0; i < 6; i++) {
      ms += 1000;
      meter.sample();
    }
    expect(meter.coresBusy()).toBe(0);
  });

  it('spans at least the window when scraped between samples, and keeps a bounded history', () => {
    let ms = 0;
    let cpu = 0;
    const meter = new CoresBusyMeter({ windowMs: 2000, now: () => ms, cpu: () => cpu });
    for (let i = 0; i < 1000; i++) {
      ms += 100;
      cpu += i < 500 ? 0 : 100_000; // 1 core busy from t = 50 s
      meter.sample();
    }
    expect(meter.coresBusy()).toBeCloseTo(1, 9);
    expect((meter as unknown as { samples: unknown[] }).samples.length).toBeLessThanOrEqual(23);
  });

  it('counts CPU time of worker threads (the inference thread), not only the main thread', async () => {
    const meter = new CoresBusyMeter();
    // The main thread sleeps while a worker spins for 600 ms of wall time.
    const worker = new Worker('const end = Date.now() + 600; let x = 0; while (Date.now() < end) x += Math.sqrt(x + 1);', { eval: true });
    await new Promise((resolve, reject) => worker.once('exit', resolve).once('error', reject));
    const busy = meter.coresBusy();
    // Even on a machine shared by many processes the worker gets a tenth of a core; an idle main thread far less.
    expect(busy).toBeGreaterThan(0.1);
    expect(busy).toBeLessThanOrEqual(os.availableParallelism() + 0.5);
  });
});
