import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadImageFile } from '../src/image/decode.js';
import type { RgbImage } from '../src/image/types.js';
import type { ModelRuntime } from '../src/models/runtime.js';
import { iou } from '../src/pipeline/detect/boxes.js';
import { MtcnnDetector, type DetectedFace } from '../src/pipeline/detect/mtcnn.js';
import { testConfig, testRuntime } from './helpers/models.js';
import { dataFile } from './helpers/paths.js';
import { decodeVideoFrames } from './helpers/video.js';

interface RefFace {
  box: number[];
  score: number;
  landmarks: number[][];
}

const reference = JSON.parse(fs.readFileSync(dataFile('reference', 'mtcnn_reference.json'), 'utf8')) as {
  images: Record<string, { width: number; height: number; faces: RefFace[] }>;
  videos: Record<string, { width: number; height: number; frames: { frame: number; faces: RefFace[] }[] }>;
};

interface Tally {
  refFaces: number;
  found: number;
  iouSum: number;
  extra: number;
  landmarkErrSum: number;
}

/** Matches our detections against the reference's faces with score >= 0.95 (the criteria). */
function compare(tally: Tally, ours: DetectedFace[], refs: RefFace[]): void {
  const used = new Set<number>();
  for (const r of refs.filter((f) => f.score >= 0.95)) {
    tally.refFaces++;
    let best = 0;
    let bestIndex = -1;
    ours.forEach((f, i) => {
      const o = iou(r.box, f.box);
      if (o > best) {
        best = o;
        bestIndex = i;
      }
    });
    if (best < 0.7) continue;
    tally.found++;
    tally.iouSum += best;
    used.add(bestIndex);
    const width = r.box[2] - r.box[0];
    const f = ours[bestIndex];
    const err = r.landmarks.reduce((s, p, k) => s + Math.hypot(f.landmarks[k][0] - p[0], f.landmarks[k][1] - p[1]), 0) / 5;
    tally.landmarkErrSum += err / width;
  }
  // An extra: a confident detection of ours that overlaps no reference face at all.
  ours.forEach((f, i) => {
    if (f.score >= 0.95 && !used.has(i) && !refs.some((r) => iou(r.box, f.box) >= 0.7)) tally.extra++;
  });
}

describe('MTCNN parity with the reference implementation', () => {
  let runtime: ModelRuntime;
  let detector: MtcnnDetector;
  const tally: Tally = { refFaces: 0, found: 0, iouSum: 0, extra: 0, landmarkErrSum: 0 };

  beforeAll(async () => {
    runtime = testRuntime();
    // The reference's settings: min face 20, factor 0.709, thresholds 0.6/0.7/0.7.
    detector = await MtcnnDetector.load(runtime, { minFaceSize: 20, scaleFactor: 0.709, thresholds: [0.6, 0.7, 0.7] });
  });
  afterAll(() => runtime.close());

  it('matches on every picture in faces/ and scenes/', async () => {
    // Full size, as the reference decoded them (the CLI reads operators' files at full size too).
    const limits = { ...testConfig().limits, maxDecodeSide: 0 };
    for (const [name, ref] of Object.entries(reference.images)) {
      const image = await loadImageFile(dataFile(name), limits);
      expect([image.width, image.height], name).toEqual([ref.width, ref.height]);
      compare(tally, await detector.detect(image), ref.faces);
    }
  });

  for (const video of ['video/hamilton_640x360.mp4', 'video/crowd_1080p.mp4']) {
    it(`matches on every 5th frame of ${video}`, async () => {
      const ref = reference.videos[video];
      const frames: RgbImage[] = decodeVideoFrames(dataFile(video), ref.width, ref.height);
      expect(frames.length).toBe(ref.frames.length);
      const picked = ref.frames.filter((x) => x.frame % 5 === 0);
      // Two frames per call: the batched path (shared P-Net batches, one R-Net/O-Net batch) is what the pipeline uses.
      for (let i = 0; i < picked.length; i += 2) {
        const pair = picked.slice(i, i + 2);
        const found = await detector.detectBatch(pair.map((f) => frames[f.frame]));
        pair.forEach((f, k) => compare(tally, found[k], f.faces));
      }
    });
  }

  it('meets the parity criteria over all of them', () => {
    const recall = tally.found / tally.refFaces;
    const meanIou = tally.iouSum / tally.found;
    const extraRate = tally.extra / tally.refFaces;
    const landmarkErr = tally.landmarkErrSum / tally.found;
    console.log(`parity: ${tally.found}/${tally.refFaces} reference faces found (${(recall * 100).toFixed(1)}%), mean IoU ${meanIou.toFixed(3)}, extra ${tally.extra}, landmark error ${(landmarkErr * 100).toFixed(2)}% of box width`);
    expect(tally.refFaces).toBeGreaterThan(200);
    expect(recall).toBeGreaterThanOrEqual(0.98);
    expect(meanIou).toBeGreaterThanOrEqual(0.9);
    expect(extraRate).toBeLessThanOrEqual(0.02);
    expect(landmarkErr).toBeLessThanOrEqual(0.03);
  });

  it('gives the same faces for a picture alone and inside a batch of different-size pictures', async () => {
    // Full size, as the reference decoded them (the CLI reads operators' files at full size too).
    const limits = { ...testConfig().limits, maxDecodeSide: 0 };
    const a = await loadImageFile(dataFile('scenes', 'two_people.jpg'), limits);
    const b = await loadImageFile(dataFile('scenes', 'multiface.jpg'), limits);
    const [alone] = [await detector.detect(a)];
    const [batchedA, batchedB] = await detector.detectBatch([a, b, a]);
    expect(batchedA).toEqual(alone);
    expect(batchedB.length).toBe((await detector.detect(b)).length);
  });

  it('finds nothing in a blank picture and survives tiny ones', async () => {
    const blank = { width: 320, height: 240, data: new Uint8Array(320 * 240 * 3).fill(128) };
    expect(await detector.detect(blank)).toEqual([]);
    const tiny = { width: 8, height: 8, data: new Uint8Array(8 * 8 * 3) };
    expect(await detector.detect(tiny)).toEqual([]);
  });
});
