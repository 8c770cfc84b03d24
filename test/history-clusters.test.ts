import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { historySchema } from '../src/config/sections/history.js';
import { evaluateClustering, type LabelledFace } from '../src/history/cluster-eval.js';
import { UnknownClusters } from '../src/history/clusters.js';
import { decodeImage } from '../src/image/decode.js';
import type { Box, Point } from '../src/image/types.js';
import { largestFace, type FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { cosineSimilarity } from '../src/pipeline/embed/vector.js';
import { dataFile } from './helpers/paths.js';
import { testConfig } from './helpers/models.js';
import { sharedAnalyzer } from './helpers/server.js';

/**
 * The face library's clustering evaluated on the shared pictures: LFW (people with 6+ pictures,
 * 6 each) and the faces folder. Half of the people are enrolled (one picture each); every other
 * picture that the gallery does not recognise goes to clustering, as unknown appearances do in
 * the server. Reports purity and clusters per person over a threshold sweep; the configured
 * default must keep clusters pure without splitting people much.
 */

const LIMITS = { maxImagePixels: 40_000_000, maxImageBytes: 50 * 1024 * 1024 };

/** Deterministic shuffle (arrival order matters to an incremental method; a fixed order keeps the figures reproducible). */
function shuffled<T>(items: T[], seed = 7): T[] {
  const out = items.slice();
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Splits people in two: the first picture of every other person is enrolled; pictures the gallery does not recognise are the unknown ones. */
function unknownFaces(byPerson: Map<string, Float32Array[]>, minSimilarity: number): { unknown: LabelledFace[]; misidentified: number } {
  const gallery: LabelledFace[] = [];
  const probes: LabelledFace[] = [];
  [...byPerson.keys()].sort().forEach((label, i) => {
    const vs = byPerson.get(label)!;
    if (i % 2 === 0) {
      gallery.push({ label, embedding: vs[0] });
      probes.push(...vs.slice(1).map((embedding) => ({ label, embedding })));
    } else probes.push(...vs.map((embedding) => ({ label, embedding })));
  });
  let misidentified = 0;
  const unknown: LabelledFace[] = [];
  for (const p of probes) {
    let best: LabelledFace | undefined;
    let bestSim = -1;
    for (const g of gallery) {
      const s = cosineSimilarity(g.embedding, p.embedding);
      if (s > bestSim) [best, bestSim] = [g, s];
    }
    if (best && bestSim >= minSimilarity) {
      if (best.label !== p.label) misidentified++;
    } else unknown.push(p);
  }
  return { unknown: shuffled(unknown), misidentified };
}

for (const model of ['arcface-mbf-112', 'faceapi-resnet34-150']) {
  describe(`face library clustering (${model})`, () => {
    let analyzer: FaceAnalyzer;
    const lfw = new Map<string, Float32Array[]>();
    const faces = new Map<string, Float32Array[]>();

    beforeAll(async () => {
      const base = testConfig();
      analyzer = await sharedAnalyzer({ ...base, embedding: { ...base.embedding, model } });
      const root = dataFile('lfw', 'images');
      const people = fs.readdirSync(root).filter((p) => fs.readdirSync(path.join(root, p)).length >= 6);
      const crops = [];
      for (const p of people) for (const f of fs.readdirSync(path.join(root, p)).sort().slice(0, 6)) crops.push({ p, image: await decodeImage(fs.readFileSync(path.join(root, p, f)), LIMITS, f) });
      // LFW's pictures are 112x112 crops aligned on arcface-mbf-112's template; another model re-aligns them onto its own.
      const arcface = analyzer.runtime.manifest.models['arcface-mbf-112'];
      const template = arcface.task === 'embedding' && arcface.crop.method === 'similarity' ? (arcface.crop.template as Point[]) : [];
      const [w, h] = analyzer.embedder.inputSize;
      const vs =
        crops[0].image.width === w && crops[0].image.height === h
          ? await analyzer.embedder.embedCrops(crops.map((c) => c.image))
          : await analyzer.embedder.embedFaces(crops.map((c) => ({ image: c.image, face: { box: [0, 0, c.image.width, c.image.height] as Box, landmarks: template } })));
      crops.forEach((c, i) => lfw.set(c.p, [...(lfw.get(c.p) ?? []), vs[i]]));
      for (const p of fs.readdirSync(dataFile('faces'))) {
        for (const f of fs.readdirSync(dataFile('faces', p)).filter((x) => !x.includes('partial'))) {
          const image = await decodeImage(fs.readFileSync(dataFile('faces', p, f)), LIMITS, f);
          const [found] = await analyzer.analyze([image]);
          const face = largestFace(found);
          if (face?.embedding) faces.set(p, [...(faces.get(p) ?? []), face.embedding]);
        }
      }
    }, 120_000);
    afterAll(async () => analyzer?.runtime.close());

    it("keeps clusters pure and people in few clusters at the model's threshold (LFW and the shared faces)", () => {
      // history.clustering.threshold is empty by default: the model's manifest clusterSimilarity applies.
      expect(historySchema.parse({}).clustering.threshold).toBeUndefined();
      const threshold = analyzer.embedder.defaultClusterSimilarity;
      const minSimilarity = analyzer.embedder.defaultMinSimilarity ?? 0.5;
      // A sweep around the model's threshold, on its own similarity scale.
      const sweep = [-0.1, -0.05, -0.02, -0.005, 0, 0.02, 0.05].map((d) => Math.round((threshold + d) * 1000) / 1000).filter((t) => t <= 1);
      for (const [name, set] of [
        ['LFW 6+ pictures', lfw],
        ['faces folder', faces],
      ] as const) {
        const { unknown, misidentified } = unknownFaces(set, minSimilarity);
        console.log(`${model}, ${name}: ${set.size} people, ${unknown.length} unknown faces clustered (${misidentified} misidentified by the half gallery)`);
        for (const t of sweep) {
          const e = evaluateClustering(unknown, t);
          console.log(`  threshold ${t.toFixed(3)}: ${e.clusters} clusters for ${e.people} people, purity ${e.purity.toFixed(3)}, clusters per person mean ${e.meanSplits.toFixed(2)} max ${e.maxSplits}, mixed clusters ${e.mixed}`);
        }
        const e = evaluateClustering(unknown, threshold);
        expect(e.purity, name).toBeGreaterThanOrEqual(0.95);
        expect(e.meanSplits, name).toBeLessThanOrEqual(2);
      }
    });
  });
}

describe('face library clustering (centroids)', () => {
  const lfw = new Map<string, Float32Array[]>();

  beforeAll(async () => {
    const analyzer = await sharedAnalyzer();
    const root = dataFile('lfw', 'images');
    const people = fs.readdirSync(root).filter((p) => fs.readdirSync(path.join(root, p)).length >= 6).slice(0, 2);
    for (const p of people) {
      const images = [];
      for (const f of fs.readdirSync(path.join(root, p)).sort().slice(0, 3)) images.push(await decodeImage(fs.readFileSync(path.join(root, p, f)), LIMITS, f));
      lfw.set(p, await analyzer.embedder.embedCrops(images));
    }
    await analyzer.runtime.close();
  }, 60_000);

  it('updates centroids incrementally: add, remove, merge and recompute agree', () => {
    const [a1, a2, a3] = lfw.get([...lfw.keys()][0])!;
    const [b1] = lfw.get([...lfw.keys()][1])!;
    const c = new UnknownClusters(512, 0.45);
    c.create(1, a1, 10, 20);
    c.add(1, a2, 5, 30);
    c.create(2, b1, 40, 50);
    expect(c.get(1)).toMatchObject({ size: 2, firstSeen: 5, lastSeen: 30 });
    c.add(1, a3, 6, 7);
    c.remove(1, a3);
    const sum = c.get(1)!.sum;
    for (let i = 0; i < 512; i++) expect(sum[i]).toBeCloseTo(a1[i] + a2[i], 5);
    c.merge(1, 2);
    expect(c.get(2)).toBeUndefined();
    expect(c.get(1)).toMatchObject({ size: 3, firstSeen: 5, lastSeen: 50 });
    const recomputed = c.reset(1, [a1, a2, b1].map((v) => ({ v, startedAt: 0, endedAt: 0 })))!;
    for (let i = 0; i < 512; i++) expect(recomputed.sum[i]).toBeCloseTo(a1[i] + a2[i] + b1[i], 5);
    expect(c.remove(1, a1)?.size).toBe(2);
    c.remove(1, a2);
    expect(c.remove(1, b1)).toBeNull();
    expect(c.size).toBe(0);
  });
});
