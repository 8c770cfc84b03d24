import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadImageFile } from '../src/image/decode.js';
import type { ModelRuntime } from '../src/models/runtime.js';
import { FaceAnalyzer, largestFace } from '../src/pipeline/analyzer.js';
import { AttributeEstimator, type FaceAttributes } from '../src/pipeline/attributes/ssrnet.js';
import { MtcnnDetector } from '../src/pipeline/detect/mtcnn.js';
import { Embedder, type FaceInPicture } from '../src/pipeline/embed/embedder.js';
import { cosineSimilarity } from '../src/pipeline/embed/vector.js';
import { testConfig, testRuntime } from './helpers/models.js';
import { dataFile } from './helpers/paths.js';

describe('arcface-mbf-112 embeddings', () => {
  let runtime: ModelRuntime;
  beforeAll(() => {
    runtime = testRuntime();
  });
  afterAll(() => runtime.close());

  // LFW verification accuracy (>= 99.0%) is tested once, through the CLI that users run:
  // test/eval-lfw.test.ts (embedding the 3811 pictures twice would cost the suite 30 s more).

  it('identifies every person of data/faces who has another picture by leave-one-out nearest neighbour', async () => {
    const config = testConfig();
    const analyzer = await FaceAnalyzer.create(runtime, { ...config, attributes: { ...config.attributes, enabled: false } });
    const gallery: { who: string; file: string; vector: Float32Array }[] = [];
    for (const who of fs.readdirSync(dataFile('faces')).sort()) {
      for (const name of fs.readdirSync(dataFile('faces', who)).sort()) {
        if (name.includes('_partial')) continue;
        const image = await loadImageFile(dataFile('faces', who, name), config.limits);
        const face = largestFace((await analyzer.analyze([image], { attributes: false }))[0]);
        if (!face?.embedding) throw new Error(`no face in faces/${who}/${name}`);
        gallery.push({ who, file: path.join(who, name), vector: face.embedding });
      }
    }
    expect(gallery.length).toBe(20);
    let queries = 0;
    let right = 0;
    let worstSame = 1;
    let bestDifferent = -1;
    const misses: string[] = [];
    for (const q of gallery) {
      const others = gallery.filter((g) => g !== q);
      for (const g of others) {
        const s = cosineSimilarity(q.vector, g.vector);
        if (g.who === q.who) worstSame = Math.min(worstSame, s);
        else bestDifferent = Math.max(bestDifferent, s);
      }
      if (!others.some((g) => g.who === q.who)) continue;
      queries++;
      let best = others[0];
      for (const g of others) if (cosineSimilarity(q.vector, g.vector) > cosineSimilarity(q.vector, best.vector)) best = g;
      if (best.who === q.who) right++;
      else misses.push(`${q.file} -> ${best.file}`);
    }
    console.log(`faces/: ${right}/${queries} identified; same-person similarity >= ${worstSame.toFixed(3)}, different-person <= ${bestDifferent.toFixed(3)}`);
    expect(misses).toEqual([]);
    expect(queries).toBe(15);
    expect(right).toBe(15);
  });

  // Input batches are reused from call to call (BatchBuffers): a batch handed out again while a
  // run still reads it, or a crop left from an earlier face, would change these results.
  it.each([true, false])('embeds and estimates the same for every face whatever else runs beside it, or ran before (inference thread: %s)', async (inferenceThread) => {
    const config = testConfig();
    const local = testRuntime({ ...config, runtime: { ...config.runtime, inferenceThread } });
    try {
      const detector = await MtcnnDetector.load(local);
      const embedder = await Embedder.load(local, 'arcface-mbf-112');
      const attributes = await AttributeEstimator.load(local, config.attributes.ageModel, config.attributes.genderModel);
      const items: FaceInPicture[] = [];
      for (const who of fs.readdirSync(dataFile('faces')).sort().slice(0, 4)) {
        const name = fs.readdirSync(dataFile('faces', who)).sort()[0];
        const image = await loadImageFile(dataFile('faces', who, name), config.limits);
        for (const face of await detector.detect(image)) items.push({ image, face });
      }
      expect(items.length).toBeGreaterThanOrEqual(4);
      const alone: { vector: Float32Array; attributes: FaceAttributes }[] = [];
      for (const item of items) alone.push({ vector: (await embedder.embedFaces([item]))[0], attributes: (await attributes.estimate([item]))[0] });
      // Together, in calls of different sizes at once, then all in one call.
      const halves = [items.slice(0, 2), items.slice(2), items.slice(1, 3)];
      const together = await Promise.all(halves.flatMap((h) => [embedder.embedFaces(h), attributes.estimate(h)]));
      const all = await embedder.embedFaces(items);
      const expectSame = (got: Float32Array, want: Float32Array, what: string) => {
        expect(got.length, what).toBe(want.length);
        let worst = 0;
        for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
        // The same input gives the same output, up to onnxruntime's batch-size-dependent kernels.
        expect(worst, what).toBeLessThan(1e-4);
      };
      halves.forEach((h, k) => {
        h.forEach((item, i) => {
          const n = items.indexOf(item);
          expectSame((together[2 * k] as Float32Array[])[i], alone[n].vector, `call ${k} face ${i}`);
          const est = (together[2 * k + 1] as FaceAttributes[])[i];
          expect(est.gender, `call ${k} face ${i}`).toBe(alone[n].attributes.gender);
          expect(Math.abs(est.age - alone[n].attributes.age), `call ${k} face ${i}`).toBeLessThan(0.5);
        });
      });
      all.forEach((v, n) => expectSame(v, alone[n].vector, `all at once, face ${n}`));
    } finally {
      await local.close();
    }
  });
});
