import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPairs } from '../src/eval/pairs.js';
import { evaluatePairs } from '../src/eval/run-pairs.js';
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

  it('reaches at least 99.0% 10-fold verification accuracy on the LFW pairs (aligned crops fed as they are)', async () => {
    const pairs = readPairs(dataFile('lfw', 'pairs.txt'), 10);
    expect(pairs.length).toBe(3000);
    expect(pairs.filter((p) => p.same).length).toBe(1500);
    for (let f = 0; f < 10; f++) expect(pairs.filter((p) => p.fold === f).length).toBe(300);
    const config = testConfig();
    const result = await evaluatePairs({ runtime, config }, 'arcface-mbf-112', pairs, 10);
    const { report } = result;
    console.log(
      `LFW: ${(report.meanAccuracy * 100).toFixed(2)}% ± ${(report.stdAccuracy * 100).toFixed(2)} over ${report.pairs} pairs, ${result.pictures} pictures in ${result.embedSeconds.toFixed(1)} s; ` +
        `at the manifest threshold ${report.atThreshold?.threshold}: FAR ${((report.atThreshold?.falseAcceptRate ?? 0) * 100).toFixed(2)}%, FRR ${((report.atThreshold?.falseRejectRate ?? 0) * 100).toFixed(2)}%`,
    );
    expect(result.failures).toEqual([]);
    expect(result.skippedPairs).toBe(0);
    expect(result.pictures).toBe(3811);
    expect(report.pairs).toBe(3000);
    expect(report.meanAccuracy).toBeGreaterThanOrEqual(0.99);
    // The manifest's default threshold keeps false accepts rare.
    expect(report.atThreshold?.threshold).toBe(0.35);
    expect(report.atThreshold!.falseAcceptRate).toBeLessThan(0.005);
  });

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
