import { describe, expect, it } from 'vitest';
import type { Box, RgbImage } from '../src/image/types.js';
import type { Frame } from '../src/ingest/frame.js';
import { StreamDetection, type DetectionPolicy } from '../src/pipeline/detect/detection-schedule.js';
import type { FrameDetectRequest, FrameDetectResult } from '../src/pipeline/detect/frame-detector.js';
import type { DetectedFace } from '../src/pipeline/detect/mtcnn.js';
import { levelPart, levelShares, pyramidLevels } from '../src/pipeline/detect/pyramid.js';
import { mergeFaces, splitKeyframes } from '../src/pipeline/pool/keyframe-split.js';
import { motionWindows, pictureSearch, refineWindows, searchedShare, TRACKED_SEARCH_DEFAULTS } from '../src/pipeline/detect/search-plan.js';
import { MOTION_DEFAULTS, motionGrid, updateMotion, type MotionBackground } from '../src/pipeline/motion/motion-mask.js';
import { IouTracker } from '../src/pipeline/track/tracker.js';

function grey(width: number, height: number, value: number): RgbImage {
  return { width, height, data: new Uint8Array(width * height * 3).fill(value) };
}

function paint(img: RgbImage, box: Box, value: number): RgbImage {
  const data = img.data.slice();
  for (let y = box[1]; y < box[3]; y++) for (let x = box[0]; x < box[2]; x++) data.fill(value, (y * img.width + x) * 3, (y * img.width + x) * 3 + 3);
  return { ...img, data };
}

function background(img: RgbImage): MotionBackground {
  const { cols, rows } = motionGrid(img.width, img.height, MOTION_DEFAULTS.cellSize);
  return { cells: new Float32Array(cols * rows), fresh: true };
}

describe('motion mask', () => {
  it('starts a fresh background without motion, then finds a changed region and nothing else', () => {
    const still = grey(320, 240, 100);
    const bg = background(still);
    expect(updateMotion(still, bg, MOTION_DEFAULTS)).toEqual({ boxes: [], changedShare: 0 });
    expect(bg.fresh).toBe(false);
    expect(updateMotion(still, bg, MOTION_DEFAULTS).boxes).toEqual([]);
    const moved = paint(still, [100, 60, 140, 120], 200);
    const mask = updateMotion(moved, bg, MOTION_DEFAULTS);
    expect(mask.boxes).toHaveLength(1);
    const [x1, y1, x2, y2] = mask.boxes[0];
    // The changed cells, dilated by one cell (8 px) on each side.
    expect(x1).toBeLessThanOrEqual(100);
    expect(y1).toBeLessThanOrEqual(60);
    expect(x2).toBeGreaterThanOrEqual(140);
    expect(y2).toBeGreaterThanOrEqual(120);
    expect(x2 - x1).toBeLessThanOrEqual(40 + 4 * 8);
    expect(mask.changedShare).toBeGreaterThan(0);
  });

  it('ignores changes under the threshold and groups smaller than minCells', () => {
    const still = grey(160, 120, 100);
    const bg = background(still);
    updateMotion(still, bg, MOTION_DEFAULTS);
    expect(updateMotion(paint(still, [0, 0, 160, 120], 100 + MOTION_DEFAULTS.threshold - 1), bg, MOTION_DEFAULTS).boxes).toEqual([]);
    const bg2 = background(still);
    updateMotion(still, bg2, MOTION_DEFAULTS);
    // One changed cell alone is noise at minCells 2.
    expect(updateMotion(paint(still, [80, 40, 88, 48], 250), bg2, MOTION_DEFAULTS).boxes).toEqual([]);
  });

  it('refuses a background of the wrong size', () => {
    expect(() => updateMotion(grey(64, 64, 0), { cells: new Float32Array(3), fresh: false }, MOTION_DEFAULTS)).toThrow(/cells/);
  });
});

describe('search windows between keyframes', () => {
  it('centres a window of windowScale face sizes on each predicted box, on parts of the stream pyramid levels near the face size', () => {
    const picture = pictureSearch(640, 360, 20, 0.709);
    const [w] = refineWindows([[100, 100, 160, 160]], { ...TRACKED_SEARCH_DEFAULTS, windowScale: 2 }, picture);
    expect([w.x, w.y, w.width, w.height]).toEqual([70, 70, 120, 120]);
    const faces = w.levels!.map((l) => 12 / l.scale);
    expect(Math.min(...faces)).toBeGreaterThanOrEqual(30 - 1e-9);
    expect(Math.max(...faces)).toBeLessThanOrEqual(120 + 1e-9);
    // Parts of the whole picture's levels, which a keyframe searches.
    const pyramid = pyramidLevels(640, 360, 20, 0.709);
    for (const l of w.levels!) {
      const level = pyramid.find((p) => p.scale === l.scale)!;
      expect(l.part).toMatchObject({ levelWidth: level.width, levelHeight: level.height });
    }
    // Nothing smaller than the stream's minimum face is searched; a face under it is searched at the finest level only.
    const small = refineWindows([[0, 0, 20, 20]], TRACKED_SEARCH_DEFAULTS, pictureSearch(640, 360, 60, 0.709))[0];
    expect(small.levels!.map((l) => l.scale)).toEqual([12 / 60]);
  });

  it('cuts a level part on the keyframe grid: even cells, covering the window, one P-Net window at least, inside the level', () => {
    const picture = { width: 1920, height: 1080 };
    for (const level of pyramidLevels(1920, 1080, 40, 0.709)) {
      for (const rect of [
        { x: 101, y: 57, width: 90, height: 90 },
        { x: -40, y: -40, width: 80, height: 80 },
        { x: 1880, y: 1000, width: 100, height: 100 },
      ]) {
        const part = levelPart(level, rect, picture)!;
        const { col, row } = part.part!;
        expect(col % 2).toBe(0);
        expect(row % 2).toBe(0);
        expect(Math.min(part.width, part.height)).toBeGreaterThanOrEqual(12);
        expect(col + part.width).toBeLessThanOrEqual(level.width);
        expect(row + part.height).toBeLessThanOrEqual(level.height);
        // The cells cover the window's picture pixels inside the picture.
        expect((col * 1920) / level.width).toBeLessThanOrEqual(Math.max(0, rect.x));
        expect(((col + part.width) * 1920) / level.width).toBeGreaterThanOrEqual(Math.min(1920, rect.x + rect.width) - 1920 / level.width);
      }
      expect(levelPart(level, { x: 2000, y: 0, width: 10, height: 10 }, picture)).toBeUndefined();
    }
  });

  it('leaves motion inside a tracked window to it, merges overlapping motion, pads to one minimum face, clips to the picture', () => {
    const picture = pictureSearch(640, 360, 40, 0.709);
    const refine = refineWindows([[300, 100, 340, 140]], TRACKED_SEARCH_DEFAULTS, picture);
    const motion: Box[] = [
      [310, 110, 330, 130], // inside the tracked face's window
      [10, 10, 30, 30],
      [25, 25, 50, 50], // overlaps the previous once enlarged
      [630, 350, 640, 360], // a corner
    ];
    const windows = motionWindows(motion, refine, picture, TRACKED_SEARCH_DEFAULTS);
    expect(windows).toHaveLength(2);
    for (const w of windows) {
      expect(w.x).toBeGreaterThanOrEqual(0);
      expect(w.y).toBeGreaterThanOrEqual(0);
      expect(w.x + w.width).toBeLessThanOrEqual(640);
      expect(w.y + w.height).toBeLessThanOrEqual(360);
      expect(Math.min(w.width, w.height)).toBeGreaterThanOrEqual(40);
    }
    expect(searchedShare([{ x: 0, y: 0, width: 640, height: 360 }], picture)).toBe(1);
    expect(searchedShare([{ x: -100, y: 0, width: 420, height: 180 }], picture)).toBeCloseTo(0.25, 6);
  });
});

describe('keyframe schedule of a stream', () => {
  const policy: DetectionPolicy = { mode: 'tracked', keyframeIntervalMs: 1000, motionKeyframeGapFrames: 2, refineMaxMisses: 3, motionCellSize: 8 };
  const frame = (seq: number, pts: number, width = 64): Frame => ({ streamId: 's', seq, pts, capturedAt: 0, width, height: 48, data: new Uint8Array(width * 48 * 3) });
  const tracker = new IouTracker({ iouThreshold: 0.3, maxMisses: 25 });
  /** A follow frame's result: motion share, and whether the motion covered most of the picture. */
  const followed = (motionShare: number, wideMotion = false) => ({ faces: [], runs: [], motionShare, wideMotion });
  const motionKeyframe = { faces: [], runs: [{ kind: 'full' as const, share: 1 }], motionShare: 0.9, wideMotion: true };

  it('keys on stream time, only when something moved since the last keyframe, and restarts on a new size or a timeline going back', () => {
    const s = new StreamDetection(policy);
    expect(s.admit(frame(0, 0))).toEqual({ kind: 'keyframe' });
    expect(s.admit(frame(1, 0.5))).toEqual({ kind: 'follow', motionMayKeyframe: false });
    // The first follow frame starts the motion background.
    expect(s.request(frame(1, 0.5), { kind: 'follow', motionMayKeyframe: false }, tracker, 40).motion?.fresh).toBe(true);
    s.done(frame(1, 0.5), followed(0));
    // A second later, but nothing moved: no keyframe; motion may bring one (every other frame at most).
    expect(s.admit(frame(2, 1.5))).toEqual({ kind: 'follow', motionMayKeyframe: true });
    s.done(frame(2, 1.5), followed(0.01));
    expect(s.admit(frame(3, 1.6))).toEqual({ kind: 'keyframe' });
    // The timeline went back (a looped file): the interval restarts.
    expect(s.admit(frame(4, 0.1))).toEqual({ kind: 'keyframe' });
    // A new resolution: a keyframe, then a fresh background.
    expect(s.admit(frame(5, 0.2, 128))).toEqual({ kind: 'keyframe' });
    const next = { kind: 'follow' as const, motionMayKeyframe: false };
    expect(s.admit(frame(6, 0.25, 128))).toEqual(next);
    expect(s.request(frame(6, 0.25, 128), next, tracker, 40).motion?.fresh).toBe(true);
  });

  it('plans keyframes every motionKeyframeGapFrames frames up front while motion covers most of the picture', () => {
    const s = new StreamDetection(policy);
    s.admit(frame(0, 0));
    expect(s.admit(frame(1, 0.04))).toEqual({ kind: 'follow', motionMayKeyframe: false });
    s.done(frame(1, 0.04), followed(0.3, false));
    // Motion small: the worker decides, from the motion it measures, whether this frame becomes a keyframe.
    expect(s.admit(frame(2, 0.08))).toEqual({ kind: 'follow', motionMayKeyframe: true });
    s.done(frame(2, 0.08), motionKeyframe);
    // Motion over most of the picture: keyframes every other frame, planned at admission.
    expect(s.admit(frame(3, 0.12))).toEqual({ kind: 'follow', motionMayKeyframe: false });
    expect(s.admit(frame(4, 0.16))).toEqual({ kind: 'keyframe' });
    expect(s.admit(frame(5, 0.2))).toEqual({ kind: 'follow', motionMayKeyframe: false });
    s.done(frame(5, 0.2), followed(0.9, true));
    expect(s.admit(frame(6, 0.24))).toEqual({ kind: 'keyframe' });
    // The motion narrows: back to motion windows, the worker deciding again.
    expect(s.admit(frame(7, 0.28))).toEqual({ kind: 'follow', motionMayKeyframe: false });
    s.done(frame(7, 0.28), followed(0.05, false));
    expect(s.admit(frame(8, 0.32))).toEqual({ kind: 'follow', motionMayKeyframe: true });
  });

  it('sends keyframes with neither tracks nor motion, so they need nothing of the frames before them', () => {
    const s = new StreamDetection(policy);
    const plan = s.admit(frame(0, 0));
    const request = s.request(frame(0, 0), plan, tracker, 40);
    expect(request).toMatchObject({ mode: 'tracked', keyframe: true, tracks: [] });
    expect(request.motion).toBeUndefined();
  });

  it("asks for the whole picture on every frame in 'full' mode", () => {
    const s = new StreamDetection({ ...policy, mode: 'full' });
    for (let i = 0; i < 3; i++) expect(s.request(frame(i, i / 25), s.admit(frame(i, i / 25)), tracker, 40)).toMatchObject({ mode: 'full', keyframe: true });
  });
});

describe('a keyframe split over workers', () => {
  const request = (width: number, height: number, extra: Partial<FrameDetectRequest> = {}): FrameDetectRequest => ({
    frame: { width, height, data: new Uint8Array(0) },
    minFaceSize: 40,
    mode: 'tracked',
    keyframe: true,
    motionMayKeyframe: false,
    tracks: [],
    ...extra,
  });
  const face = (box: Box, score: number): DetectedFace => ({ box, score, landmarks: [] });
  const result = (faces: DetectedFace[], kind: 'full' | 'refine' = 'full'): FrameDetectResult => ({ faces, runs: [{ kind, share: 1 }], motionShare: 0 });

  it('deals every pyramid level to exactly one share, in order, with about equal P-Net work', () => {
    for (const [w, h, minFace] of [
      [1920, 1080, 40],
      [1920, 1080, 20],
      [3840, 2160, 40],
      [640, 360, 20],
    ]) {
      const levels = pyramidLevels(w, h, minFace, 0.709);
      const shares = levelShares(levels, 2);
      expect(shares).toHaveLength(2);
      expect(shares.flat().sort((a, b) => b.scale - a.scale)).toEqual(levels);
      for (const share of shares) expect(share).toEqual(levels.filter((l) => share.includes(l)));
      const work = shares.map((share) => share.reduce((sum, l) => sum + l.width * l.height, 0));
      // The finest level is about half of all the work: the two shares differ by a few percent.
      expect(Math.min(...work) / Math.max(...work)).toBeGreaterThan(0.9);
    }
    expect(levelShares(pyramidLevels(60, 60, 40, 0.709), 3).map((s) => s.length)).toEqual([1, 1, 0]);
  });

  it('splits large tracked keyframes only, and runs the rest of the batch on the first part', () => {
    const small = request(640, 360);
    const follow = request(1920, 1080, { keyframe: false });
    const full = request(1920, 1080, { mode: 'full' });
    const big = request(1920, 1080);
    expect(splitKeyframes([small, follow, full], 2, 1_000_000, 0.709)).toBeUndefined();
    expect(splitKeyframes([big], 1, 1_000_000, 0.709)).toBeUndefined();
    const split = splitKeyframes([small, big, follow], 2, 1_000_000, 0.709)!;
    expect(split.jobs.map((job) => job.map((r) => r.levelShare))).toEqual([[undefined, { index: 0, count: 2 }, undefined], [{ index: 1, count: 2 }]]);
    expect(split.jobs[1][0].frame).toBe(big.frame);
  });

  it('does not split a keyframe whose pyramid has fewer levels than parts (a part would search nothing)', () => {
    // 1080p: minimum face 900 gives one pyramid level (shorter side 1080 * 12/900 = 14.4, then 10.2), 2000 none.
    expect(pyramidLevels(1920, 1080, 900, 0.709)).toHaveLength(1);
    const oneLevel = request(1920, 1080, { minFaceSize: 900 });
    const noLevel = request(1920, 1080, { minFaceSize: 2000 });
    const twoLevels = request(1920, 1080, { minFaceSize: 700 });
    expect(pyramidLevels(1920, 1080, 700, 0.709)).toHaveLength(2);
    expect(splitKeyframes([oneLevel], 2, 1_000_000, 0.709)).toBeUndefined();
    expect(splitKeyframes([noLevel, oneLevel], 2, 1_000_000, 0.709)).toBeUndefined();
    // The step decides the levels: 0.9 gives the 900 px face a second level (14.4 * 0.9 = 13.0).
    expect(splitKeyframes([oneLevel], 2, 1_000_000, 0.9)?.jobs.map((job) => job.length)).toEqual([1, 1]);
    const split = splitKeyframes([oneLevel, twoLevels], 2, 1_000_000, 0.709)!;
    expect(split.jobs.map((job) => job.map((r) => [r.minFaceSize, r.levelShare]))).toEqual([[[900, undefined], [700, { index: 0, count: 2 }]], [[700, { index: 1, count: 2 }]]]);
    // Every share of a split keyframe holds a level.
    for (const job of split.jobs) for (const r of job.filter((q) => q.levelShare)) expect(levelShares(pyramidLevels(1920, 1080, r.minFaceSize, 0.709), 2)[r.levelShare!.index].length).toBeGreaterThan(0);
  });

  it("merges the parts' faces: a face found by both is kept once, at its best score, and the runs are the first part's", () => {
    const split = splitKeyframes([request(640, 360), request(1920, 1080)], 2, 1_000_000, 0.709)!;
    const a = face([100, 100, 160, 170], 0.99);
    const aAgain = face([102, 98, 161, 171], 0.995);
    const b = face([500, 300, 540, 350], 0.9);
    const c = face([900, 300, 960, 370], 0.95);
    const smallFaces = [face([10, 10, 50, 50], 0.8)];
    const merged = split.merge([
      [result(smallFaces, 'refine'), result([a, b])],
      [result([aAgain, c])],
    ]);
    expect(merged[0]).toEqual(result(smallFaces, 'refine'));
    expect(merged[1].faces).toEqual([aAgain, c, b]);
    expect(merged[1].runs).toEqual([{ kind: 'full', share: 1 }]);
    expect(mergeFaces([])).toEqual([]);
  });
});

describe('tracked pipeline order', () => {
  it("searches a keyframe beside the frame before it, but a follow frame only after that frame's tracking, and tracks in order", async () => {
    const { Pipeline } = await import('../src/pipeline/pipeline.js');
    const { defaultConfig } = await import('../src/config/schema.js');
    const config = defaultConfig();
    // Every other frame a keyframe: motion covers most of the picture.
    type Result = import('../src/pipeline/detect/frame-detector.js').FrameDetectResult;
    const wide: Result = { faces: [], runs: [], motionShare: 0.9, wideMotion: true };
    const keyframe: Result = { faces: [], runs: [{ kind: 'full', share: 1 }], motionShare: 0 };
    const pending: { seq: number; keyframe: boolean; resolve: () => void }[] = [];
    const analysis = {
      concurrency: 2,
      hasAttributes: false,
      ready: async () => {},
      detect: (requests: readonly import('../src/pipeline/detect/frame-detector.js').FrameDetectRequest[]) =>
        Promise.all(
          requests.map((r) => new Promise<Result>((resolve) => pending.push({ seq: (r.frame as unknown as Frame).seq, keyframe: r.keyframe, resolve: () => resolve(r.keyframe ? keyframe : wide) }))),
        ),
      embed: async () => [],
      attributes: async () => [],
      close: async () => {},
    };
    const analyzer = { config: { detector: config.detector }, detector: { options: { minFaceSize: 20 } } } as unknown as import('../src/pipeline/analyzer.js').FaceAnalyzer;
    const pipeline = new Pipeline(analyzer, { ...config.pipeline, detect: { maxBatch: 1, maxDelayMs: 0 } }, { analysis });
    const emitted: number[] = [];
    pipeline.bus.on('frame', (r) => emitted.push(r.seq));
    pipeline.addStream('cam', { mode: 'offline' });
    const offer = (seq: number) => pipeline.offer({ streamId: 'cam', seq, pts: seq / 25, capturedAt: Date.now(), width: 64, height: 48, data: new Uint8Array(64 * 48 * 3) });
    const settle = () => new Promise((r) => setTimeout(r, 20));
    const answer = async (seq: number) => {
      const at = pending.findIndex((p) => p.seq === seq);
      expect(at, `frame ${seq} is being searched`).toBeGreaterThanOrEqual(0);
      pending.splice(at, 1)[0].resolve();
      await settle();
    };
    offer(0);
    await settle();
    expect(pending.map((p) => [p.seq, p.keyframe])).toEqual([[0, true]]);
    await answer(0);
    offer(1); // follow: its result tells the stream that motion is wide
    await settle();
    await answer(1);
    offer(2); // a planned keyframe
    offer(3); // follows 2
    await settle();
    // Frame 2 is searched; frame 3 waits for frame 2's tracking.
    expect(pending.map((p) => p.seq)).toEqual([2]);
    await answer(2);
    expect(pending.map((p) => p.seq)).toEqual([3]);
    offer(4); // a planned keyframe: searched beside frame 3
    await settle();
    expect(pending.map((p) => [p.seq, p.keyframe]).sort()).toEqual([
      [3, false],
      [4, true],
    ]);
    // The keyframe finishes first; it is tracked and emitted after frame 3.
    await answer(4);
    expect(emitted).toEqual([0, 1, 2]);
    await answer(3);
    await pipeline.idle();
    await pipeline.close();
    expect(emitted).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('pipeline tracks across a resolution change', () => {
  it('starts every track over when a camera changes resolution', async () => {
    const { Pipeline } = await import('../src/pipeline/pipeline.js');
    const { defaultConfig } = await import('../src/config/schema.js');
    const config = defaultConfig();
    const face = { box: [10, 10, 30, 30] as Box, score: 0.99, landmarks: [[14, 16], [26, 16], [20, 20], [15, 25], [25, 25]] as [number, number][] };
    // The same box in both sizes: only the size change can end the track.
    const analysis = {
      concurrency: 1,
      hasAttributes: false,
      ready: async () => {},
      detect: async (requests: readonly unknown[]) => requests.map(() => ({ faces: [face], runs: [], motionShare: 0 })),
      embed: async () => [],
      attributes: async () => [],
      close: async () => {},
    };
    const analyzer = { config: { detector: config.detector }, detector: { options: { minFaceSize: 20 } } } as unknown as import('../src/pipeline/analyzer.js').FaceAnalyzer;
    const pipeline = new Pipeline(analyzer, config.pipeline, { analysis });
    const ids: number[] = [];
    pipeline.bus.on('frame', (r) => ids.push(r.faces[0].trackId));
    pipeline.addStream('cam', { mode: 'offline' });
    const sizes = [64, 64, 64, 128, 128];
    sizes.forEach((w, seq) => pipeline.offer({ streamId: 'cam', seq, pts: seq / 25, capturedAt: Date.now(), width: w, height: 48, data: new Uint8Array(w * 48 * 3) }));
    await pipeline.idle();
    await pipeline.close();
    expect(ids).toHaveLength(5);
    expect(new Set(ids.slice(0, 3)).size).toBe(1);
    expect(ids[3]).not.toBe(ids[2]);
    expect(ids[4]).toBe(ids[3]);
  });
});
