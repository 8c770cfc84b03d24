import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameSource } from '../src/ingest/stream.js';
import { createLogger } from '../src/log.js';
import type { Gallery } from '../src/index/gallery.js';
import { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { iou } from '../src/pipeline/detect/boxes.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import type { FrameResult } from '../src/pipeline/result.js';
import { enrolledAnalyzer } from './helpers/gallery.js';
import { testConfig } from './helpers/models.js';
import { dataFile } from './helpers/paths.js';

const reference = JSON.parse(fs.readFileSync(dataFile('reference', 'mtcnn_reference.json'), 'utf8')) as {
  videos: Record<string, { frames: { frame: number; faces: { box: number[]; score: number }[] }[] }>;
};

/** Runs a clip through real ingest (offline: every frame) and the pipeline; returns results in order. */
async function processClip(pipeline: Pipeline, file: string, id: string, config = testConfig()): Promise<FrameResult[]> {
  const source = new FrameSource({ id, url: file, realtime: false }, { config: config.ingest, logger: createLogger('warn') });
  pipeline.addStream(id, { mode: 'offline', source });
  const results: FrameResult[] = [];
  pipeline.bus.on('frame', (r) => r.streamId === id && results.push(r));
  source.on('frame', (f) => pipeline.offer(f));
  const done = new Promise<void>((resolve, reject) =>
    source.on('state', (c) => {
      if (c.state === 'stopped') resolve();
      if (c.state === 'failed') reject(new Error(c.error?.message));
    }),
  );
  source.start();
  await done;
  await pipeline.idle();
  pipeline.removeStream(id);
  return results;
}

/**
 * The reference numbers frames as `ffmpeg -i FILE -f rawvideo -` outputs them, which pads the
 * clip's start (the Hamilton clip's first frame has pts 0.84 s) with copies of the first frame:
 * its index of a frame is round(pts * fps).
 */
const referenceIndex = (r: FrameResult, fps: number) => Math.round(r.pts * fps);

describe('recognition on real video through ingest, pipeline and gallery', () => {
  let analyzer: FaceAnalyzer;
  let gallery: Gallery;
  let cleanup: () => Promise<void>;
  const config = testConfig();

  beforeAll(async () => {
    ({ analyzer, gallery, cleanup } = await enrolledAnalyzer(config));
  });
  afterAll(() => cleanup());

  it('labels Lin-Manuel Miranda in the Hamilton clip and nobody else wrongly', async () => {
    expect(gallery.counts().identities).toBe(10);
    const pipeline = new Pipeline(analyzer, config.pipeline, { gallery });
    const appearances: string[] = [];
    pipeline.bus.on('appearance', (e) => appearances.push(`${e.type}:${e.identity.id}`));
    const results = await processClip(pipeline, dataFile('video', 'hamilton_640x360.mp4'), 'hamilton');
    expect(results.length).toBeGreaterThan(250);

    // Frames ~110-235: the man facing the camera is the largest face; his track must say lin_manuel_miranda.
    const window = results.filter((r) => referenceIndex(r, 29.97) >= 110 && referenceIndex(r, 29.97) <= 235);
    const labelled = window.filter((r) => {
      const largest = [...r.faces].sort((a, b) => (b.box[2] - b.box[0]) - (a.box[2] - a.box[0]))[0];
      return largest?.identity?.id === 'lin_manuel_miranda';
    });
    console.log(`hamilton: lin_manuel_miranda on ${labelled.length}/${window.length} frames of 110-235; appearances ${appearances.join(', ')}`);
    expect(window.length).toBeGreaterThan(100);
    expect(labelled.length / window.length).toBeGreaterThanOrEqual(0.9);

    const names = new Set(results.flatMap((r) => r.faces.flatMap((f) => (f.identity ? [f.identity.id] : []))));
    for (const n of names) expect(['lin_manuel_miranda', 'barack_obama']).toContain(n);
    expect(appearances).toContain('appeared:lin_manuel_miranda');
    await pipeline.close();
  });

  it('counts faces like the reference on the 1080p crowd clip and keeps track ids stable', async () => {
    const pipeline = new Pipeline(analyzer, config.pipeline, { gallery });
    const results = await processClip(pipeline, dataFile('video', 'crowd_1080p.mp4'), 'crowd');
    const ref = reference.videos['video/crowd_1080p.mp4'].frames;
    expect(results.length).toBe(ref.length);
    const ours = results.reduce((s, r) => s + r.faces.length, 0) / results.length;
    const theirs = ref.reduce((s, f) => s + f.faces.length, 0) / ref.length;
    expect(Math.abs(ours - theirs) / theirs).toBeLessThanOrEqual(0.1);

    // Ground-truth tracklets: the reference's confident detections linked frame to frame by IoU.
    const tracklets: { frame: number; box: number[] }[][] = [];
    let open: { frame: number; box: number[] }[][] = [];
    for (const f of ref) {
      const next: typeof open = [];
      for (const face of f.faces.filter((x) => x.score >= 0.95)) {
        const t = open.find((tr) => !next.includes(tr) && iou(tr[tr.length - 1].box, face.box) >= 0.5);
        if (t) {
          t.push({ frame: f.frame, box: face.box });
          next.push(t);
        } else {
          const nt = [{ frame: f.frame, box: face.box }];
          tracklets.push(nt);
          next.push(nt);
        }
      }
      open = next;
    }
    // Along each long tracklet, which of our track ids covered it; every change is an id switch.
    let switches = 0;
    let longest = { frames: 0, dominantShare: 0 };
    for (const t of tracklets.filter((x) => x.length >= 20)) {
      const ids: number[] = [];
      for (const p of t) {
        const r = results[p.frame];
        const match = r.faces.find((f) => iou(f.box, p.box) >= 0.5);
        if (match) ids.push(match.trackId);
      }
      for (let i = 1; i < ids.length; i++) if (ids[i] !== ids[i - 1]) switches++;
      const counts = new Map<number, number>();
      ids.forEach((id) => counts.set(id, (counts.get(id) ?? 0) + 1));
      const dominant = Math.max(0, ...counts.values());
      if (t.length > longest.frames) longest = { frames: t.length, dominantShare: dominant / t.length };
    }
    const long = tracklets.filter((x) => x.length >= 20).length;
    console.log(`crowd: ${ours.toFixed(2)} faces/frame vs reference ${theirs.toFixed(2)}; ${long} long tracklets, ${switches} id switches; longest ${longest.frames} frames, ${(longest.dominantShare * 100).toFixed(0)}% under one id`);
    expect(long).toBeGreaterThanOrEqual(3);
    expect(longest.dominantShare).toBeGreaterThanOrEqual(0.9);
    expect(switches).toBeLessThanOrEqual(long);
    await pipeline.close();
  });
});
