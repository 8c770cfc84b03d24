import type { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gallery } from '../src/index/gallery.js';
import type { RgbImage } from '../src/image/types.js';
import { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { runFramesOffline, trackedAgreement as agreement } from '../src/eval/tracked-agreement.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { FrameDetector, type FrameDetectRequest, type FrameDetectResult } from '../src/pipeline/detect/frame-detector.js';
import { iou } from '../src/pipeline/detect/boxes.js';
import { AnalysisPool } from '../src/pipeline/pool/analysis-pool.js';
import { LocalFrameAnalysis } from '../src/pipeline/pool/frame-analysis.js';
import { pictureSearch, refineWindows, TRACKED_SEARCH_DEFAULTS } from '../src/pipeline/detect/search-plan.js';
import { enrolledAnalyzer } from './helpers/gallery.js';
import { testConfig } from './helpers/models.js';
import { dataFile } from './helpers/paths.js';
import { decodeVideoFrames } from './helpers/video.js';

/** `promise`, or a rejection after `ms`: a hang fails the test instead of stalling it. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('tracked detection against full detection (real models and clips)', () => {
  let analyzer: FaceAnalyzer;
  let gallery: Gallery;
  let cleanup: () => Promise<void>;
  const config = testConfig();

  beforeAll(async () => {
    ({ analyzer, gallery, cleanup } = await enrolledAnalyzer({ ...config, detector: { ...config.detector, minFaceSize: 40 } }));
  });
  afterAll(() => cleanup());
  // The 1080p crowd clip, decoded once for the tests of keyframes split over workers.
  let crowd: RgbImage[] | undefined;
  const crowd1080 = () => (crowd ??= decodeVideoFrames(dataFile('video', 'crowd_1080p.mp4'), 1920, 1080));

  it('finds, in the window around each face a keyframe found, the same face', async () => {
    // A 1080p crowd frame: many faces of many sizes, some near the picture's edge.
    const frame = decodeVideoFrames(dataFile('video', 'crowd_1080p.mp4'), 1920, 1080)[0];
    const search = pictureSearch(frame.width, frame.height, 40, config.detector.scaleFactor);
    const keyframe = await analyzer.detector.searchBatch([{ image: frame, windows: [{ x: 0, y: 0, width: frame.width, height: frame.height }] }], { minFaceSize: 40 });
    expect(keyframe[0].length).toBeGreaterThan(5);
    const windows = keyframe[0].map((f) => ({ image: frame, windows: refineWindows([f.box], TRACKED_SEARCH_DEFAULTS, search) }));
    const found = await analyzer.detector.searchBatch(windows, { minFaceSize: 40 });
    const same = keyframe[0].filter((f, i) => found[i].some((g) => g.box.every((v, k) => Math.abs(v - f.box[k]) < 1e-3)));
    // P-Net sees the keyframe's own pyramid values on its grid; only R-Net/O-Net neighbours and NMS differ.
    expect(same.length / keyframe[0].length).toBeGreaterThanOrEqual(0.9);
  });

  it('finds, searching a 1080p keyframe on two workers at once, the faces one worker finds', async () => {
    const frames = crowd1080().filter((_, i) => i % 12 === 0);
    const params = { tracked: config.detector.tracked, motion: config.detector.motion };
    const split = new AnalysisPool(analyzer, params, { workers: 2, threadsPerWorker: 1, keyframeSplitPixels: 1_000_000 });
    const whole = new AnalysisPool(analyzer, params, { workers: 1, threadsPerWorker: 1, keyframeSplitPixels: 1_000_000 });
    try {
      await Promise.all([split.ready(), whole.ready()]);
      let faces = 0;
      let same = 0;
      let matched = 0;
      for (const frame of frames) {
        const request: FrameDetectRequest = { frame, minFaceSize: 40, mode: 'tracked', keyframe: true, motionMayKeyframe: false, tracks: [] };
        const [parts] = await split.detect([request]);
        const [one] = await whole.detect([request]);
        expect(parts.runs).toEqual([{ kind: 'full', share: 1 }]);
        faces += one.faces.length;
        same += one.faces.filter((f) => parts.faces.some((g) => g.box.every((v, k) => Math.abs(v - f.box[k]) < 1e-3))).length;
        matched += one.faces.filter((f) => parts.faces.some((g) => iou(f.box, g.box) >= 0.5)).length;
        // No face twice, none the whole search would not find.
        expect(parts.faces.length).toBe(one.faces.length);
      }
      console.log(`split keyframes: ${faces} faces, ${matched} matched, ${same} identical boxes`);
      expect(split.stats.splitDetections).toBe(frames.length);
      // A pyramid of one level (minimum face 900 on 1080p) leaves a second part nothing to search: not split.
      const [oneLevel] = await split.detect([{ frame: frames[0], minFaceSize: 900, mode: 'tracked', keyframe: true, motionMayKeyframe: false, tracks: [] }]);
      expect(oneLevel.runs).toEqual([{ kind: 'full', share: 1 }]);
      expect(split.stats.splitDetections).toBe(frames.length);
      // One worker only: nothing to split over.
      expect(whole.stats.splitDetections).toBe(0);
      expect(faces).toBeGreaterThan(5 * frames.length);
      expect(matched).toBe(faces);
      // The parts' NMS sees fewer boxes than the whole search's, so a few faces come from another level.
      expect(same / faces).toBeGreaterThanOrEqual(0.9);
    } finally {
      await Promise.all([split.close(), whole.close()]);
    }
  });

  it('splits keyframes inside a mixed batch, and beside embedding and age/gender jobs, as one worker would search them', async () => {
    const big = crowd1080().filter((_, i) => i % 20 === 0);
    const small = decodeVideoFrames(dataFile('video', 'hamilton_640x360.mp4'), 640, 360)[0];
    const params = { tracked: config.detector.tracked, motion: config.detector.motion };
    const pool = new AnalysisPool(analyzer, params, { workers: 2, threadsPerWorker: 1, keyframeSplitPixels: 1_000_000 });
    const local = new LocalFrameAnalysis(analyzer, params);
    const request = (frame: RgbImage, extra: Partial<FrameDetectRequest> = {}): FrameDetectRequest => ({ frame, minFaceSize: 40, mode: 'tracked', keyframe: true, motionMayKeyframe: false, tracks: [], ...extra });
    try {
      await pool.ready();
      const [first] = await local.detect([request(big[0])]);
      // Split keyframes of two minimum face sizes between a small keyframe, a follow frame and a 'full' frame.
      const batch = [request(small), request(big[1], { minFaceSize: 20 }), request(big[2], { keyframe: false, tracks: first.faces.map((f) => f.box) }), request(big[3]), request(big[4], { mode: 'full' })];
      const expected = await local.detect(batch);
      const got = await within(pool.detect(batch), 60_000);
      expect(pool.stats.splitDetections).toBe(1);
      // A split keyframe's faces may come from a neighbouring level (see the test above): same faces, boxes by IoU.
      const sameFaces = (a: FrameDetectResult, b: FrameDetectResult) => {
        expect(a.faces.length).toBe(b.faces.length);
        for (const face of b.faces) expect(a.faces.some((g) => iou(face.box, g.box) >= 0.5)).toBe(true);
      };
      got.forEach((result, i) => {
        expect(result.runs).toEqual(expected[i].runs);
        expect(result.motionShare).toBe(expected[i].motionShare);
        sameFaces(result, expected[i]);
      });
      // Parts of a keyframe queued with embedding and age/gender jobs: each answers what it answers alone.
      const items = first.faces.slice(0, 4).map((face) => ({ image: big[0], face }));
      const [vectors, attributes] = [await local.embed(items), await local.attributes(items)];
      const [keyframe, later, embedded, aged] = await within(Promise.all([pool.detect([request(big[0])]), pool.detect([request(big[5])]), pool.embed(items), pool.attributes(items)]), 60_000);
      // The first keyframe's parts go straight to the two workers, so the queue is empty for the second: both split.
      expect(pool.stats.splitDetections).toBe(3);
      sameFaces(keyframe[0], first);
      sameFaces(later[0], (await local.detect([request(big[5])]))[0]);
      // The workers' onnxruntime may use other threads than the main one's: equal up to rounding.
      embedded.forEach((v, k) => v.forEach((x, d) => expect(x).toBeCloseTo(vectors[k][d], 4)));
      aged.forEach((a, k) => expect([a.age, a.genderScore]).toEqual([expect.closeTo(attributes[k].age, 2), expect.closeTo(attributes[k].genderScore, 4)]));
    } finally {
      await within(pool.close(), 30_000);
    }
  });

  it("searches a level share only on a tracked keyframe: 'full' mode keeps every level", async () => {
    const frame = crowd1080()[0];
    const detector = new FrameDetector(analyzer.detector, { tracked: config.detector.tracked, motion: config.detector.motion, minScore: analyzer.minScore, scaleFactor: config.detector.scaleFactor });
    const request = (mode: 'full' | 'tracked', levelShare?: FrameDetectRequest['levelShare']): FrameDetectRequest => ({ frame, minFaceSize: 40, mode, keyframe: true, motionMayKeyframe: false, tracks: [], levelShare });
    const [all, fullShared, coarse] = await detector.detect([request('full'), request('full', { index: 1, count: 2 }), request('tracked', { index: 1, count: 2 })]);
    expect(all.faces.length).toBeGreaterThan(5);
    expect(fullShared.faces).toEqual(all.faces);
    // Where it applies, the share (without the finest level) is what is searched: other boxes.
    expect(coarse.faces).not.toEqual(all.faces);
  });

  it('fails a split keyframe cleanly when a worker dies holding one part, then goes on; close() may be called twice', async () => {
    const frame = crowd1080()[0];
    const params = { tracked: config.detector.tracked, motion: config.detector.motion };
    const pool = new AnalysisPool(analyzer, params, { workers: 2, threadsPerWorker: 1, keyframeSplitPixels: 1_000_000 });
    const keyframe: FrameDetectRequest = { frame, minFaceSize: 40, mode: 'tracked', keyframe: true, motionMayKeyframe: false, tracks: [] };
    const settle = <T>(p: Promise<T>) => within(p.then(() => 'resolved', (err: Error) => err.message), 30_000);
    try {
      await pool.ready();
      const [before] = await pool.detect([keyframe]);
      const parts = pool.detect([keyframe]);
      // Both parts went out at once, one to each worker: the second worker's part dies with it.
      const workers = (pool as unknown as { slots: { worker: Worker; job: unknown }[] }).slots;
      expect(workers.map((s) => s.job !== undefined)).toEqual([true, true]);
      await workers[1].worker.terminate();
      expect(await settle(parts)).toMatch(/analysis worker failed/);
      // The worker is replaced and the next keyframe is split again.
      await within(pool.ready(), 30_000);
      const [after] = await within(pool.detect([keyframe]), 30_000);
      expect(after.faces).toEqual(before.faces);
      expect(pool.stats.splitDetections).toBe(3);
      // Closing with parts out fails them; close() again, during or after the first, ends too.
      const out = pool.detect([keyframe]);
      const closing = [pool.close(), pool.close()];
      expect(await settle(out)).toMatch(/shut down/);
      expect(await within(Promise.all(closing), 30_000)).toHaveLength(2);
      expect(await settle(pool.close())).toBe('resolved');
    } finally {
      await within(pool.close(), 30_000);
    }
  });

  // Targets of the issue: recall >= 0.97, extra <= 0.02, labels >= 0.98. Measured: crowd 1080p
  // recall 0.988, extra 0; hamilton 0.987 / 0; crowd 640x360 0.973 / 0.
  const clips: { name: string; fps: number; frames: () => RgbImage[]; recall: number; extra: number; labels: number }[] = [
    { name: 'crowd 1080p', fps: 25, frames: () => decodeVideoFrames(dataFile('video', 'crowd_1080p.mp4'), 1920, 1080) },
    { name: 'hamilton 640x360', fps: 29.97, frames: () => decodeVideoFrames(dataFile('video', 'hamilton_640x360.mp4'), 640, 360) },
    { name: 'crowd 640x360', fps: 25, frames: () => decodeVideoFrames(dataFile('video', 'crowd_1080p.mp4'), 640, 360, { scale: true }) },
  ].map((c) => ({ ...c, recall: 0.97, extra: 0.02, labels: 0.98 }));
  for (const clip of clips) {
    it(`reports the faces full detection finds on ${clip.name}, with the same names`, async () => {
      const frames = clip.frames();
      const pipeline = new Pipeline(analyzer, { ...config.pipeline, recognition: { ...config.pipeline.recognition, interval: 1 } }, { gallery });
      await pipeline.ready();
      const full = await runFramesOffline(pipeline, frames, clip.fps, 'full');
      const tracked = await runFramesOffline(pipeline, frames, clip.fps, 'tracked');
      await pipeline.close();
      const a = agreement(full.results, tracked.results);
      const keyframeFrames = Math.ceil((config.detector.keyframeIntervalMs / 1000) * clip.fps);
      console.log(
        `${clip.name}: recall ${(a.found / a.fullFaces).toFixed(4)} (${a.found}/${a.fullFaces}), extra ${(a.extra / a.fullFaces).toFixed(4)}, labels ${a.sameLabel}/${a.labelled}, entry delay max ${Math.max(...a.entryDelays)} frames, runs full ${JSON.stringify(full.runs)} tracked ${JSON.stringify(tracked.runs)}`,
      );
      expect(full.results.length).toBe(frames.length);
      expect(tracked.results.length).toBe(frames.length);
      expect(full.runs.full).toBe(frames.length);
      // A moving camera (the crowd clip) gets a keyframe every other frame; a stage camera fewer.
      expect(tracked.runs.full).toBeLessThanOrEqual(Math.ceil(frames.length / 2));
      expect(a.found / a.fullFaces).toBeGreaterThanOrEqual(clip.recall);
      expect(a.extra / a.fullFaces).toBeLessThanOrEqual(clip.extra);
      if (a.labelled) expect(a.sameLabel / a.labelled).toBeGreaterThanOrEqual(clip.labels);
      // A face that enters is reported within one keyframe interval.
      expect(Math.max(...a.entryDelays)).toBeLessThanOrEqual(keyframeFrames);
    });
  }

  it('runs no whole-picture detection on a still scene after the first keyframe', async () => {
    const still = decodeVideoFrames(dataFile('video', 'hamilton_640x360.mp4'), 640, 360)[150];
    const pipeline = new Pipeline(analyzer, config.pipeline, { gallery });
    const { results, runs } = await runFramesOffline(pipeline, Array.from({ length: 90 }, () => still), 30, 'tracked');
    await pipeline.close();
    // Three seconds of the same picture: one keyframe, then only the tracked faces' windows.
    expect(runs.full).toBe(1);
    expect(runs.motion).toBe(0);
    expect(results.every((r) => r.faces.length === results[0].faces.length)).toBe(true);
    expect(results[0].faces.length).toBeGreaterThan(0);
  });
});
