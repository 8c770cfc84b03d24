import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadImageFile } from '../src/image/decode.js';
import type { ModelRuntime } from '../src/models/runtime.js';
import { FaceAnalyzer, largestFace } from '../src/pipeline/analyzer.js';
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
});
