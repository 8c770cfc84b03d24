import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadImageFile, type DecodedImage } from '../src/image/decode.js';
import type { ModelRuntime } from '../src/models/runtime.js';
import { FaceAnalyzer, largestFace } from '../src/pipeline/analyzer.js';
import { AttributeEstimator, faceAttributes, SsrNet, decodeSsrNet } from '../src/pipeline/attributes/ssrnet.js';
import type { FaceInPicture } from '../src/pipeline/embed/embedder.js';
import { testConfig, testRuntime } from './helpers/models.js';
import { dataFile } from './helpers/paths.js';

/** Who is in data/faces (see data/README.md). */
const GENDER: Record<string, 'male' | 'female'> = {
  alex_lacamoire: 'male',
  angelina_jolie: 'female',
  barack_obama: 'male',
  joe_biden: 'male',
  kate_siegel: 'female',
  kit_harington: 'male',
  lin_manuel_miranda: 'male',
  paul_rudd: 'male',
  rose_leslie: 'female',
  shea_whigham: 'male',
};

describe('SSR-Net decoding', () => {
  it('matches a hand-computed example', () => {
    const x = [
      ...[0.2, 0.3, 0.5], // prob_stage_1
      ...[0.1, 0.6, 0.3], // prob_stage_2
      ...[0.3, 0.3, 0.4], // prob_stage_3
      0.1, // stage1_delta_k
      -0.2, // stage2_delta_k
      0.05, // stage3_delta_k
      ...[0.1, 0, -0.1], // index_offset_stage1
      ...[0, 0.2, 0], // index_offset_stage2
      ...[-0.1, 0.1, 0], // index_offset_stage3
    ];
    // a = 0.1*0.2 + 1*0.3 + 1.9*0.5 = 1.27 over 3*1.1 = 3.3
    // b = 0*0.1 + 1.2*0.6 + 2*0.3 = 1.32 over 3.3 * 3*0.8 = 7.92
    // c = -0.1*0.3 + 1.1*0.3 + 2*0.4 = 1.1 over 7.92 * 3*1.05 = 24.948
    const expected = (1.27 / 3.3 + 1.32 / 7.92 + 1.1 / 24.948) * 101;
    expect(expected).toBeCloseTo(60.156, 2);
    expect(decodeSsrNet(x, 101)).toBeCloseTo(expected, 10);
    expect(decodeSsrNet(x, 1)).toBeCloseTo(expected / 101, 10);
  });

  it('spans 0 to 26/27 of the scale when all weight sits in the first or last bins', () => {
    const zeros = new Array(21).fill(0);
    const low = [...zeros];
    low[0] = low[3] = low[6] = 1;
    expect(decodeSsrNet(low, 101)).toBe(0);
    const high = [...zeros];
    high[2] = high[5] = high[8] = 1;
    expect(decodeSsrNet(high, 101)).toBeCloseTo((2 / 3 + 2 / 9 + 2 / 27) * 101, 10);
  });
});

describe('age and gender on real faces', () => {
  let runtime: ModelRuntime;
  let analyzer: FaceAnalyzer;
  let estimator: AttributeEstimator;
  const items: { file: string; who: string; item: FaceInPicture }[] = [];

  beforeAll(async () => {
    runtime = testRuntime();
    const config = testConfig();
    analyzer = await FaceAnalyzer.create(runtime, config);
    estimator = analyzer.attributes!;
    for (const who of fs.readdirSync(dataFile('faces')).sort()) {
      for (const name of fs.readdirSync(dataFile('faces', who)).sort()) {
        const file = path.join(who, name);
        const image: DecodedImage = await loadImageFile(dataFile('faces', file), config.limits);
        const face = largestFace((await analyzer.detect([image]))[0]);
        if (!face) throw new Error(`no face found in faces/${file}`);
        items.push({ file, who, item: { image, face } });
      }
    }
  });
  afterAll(() => runtime.close());

  it('gets the gender right on at least 17 of the 21 pictures, with plausible adult ages', async () => {
    expect(items.length).toBe(21);
    const found = await estimator.estimate(items.map((x) => x.item));
    let right = 0;
    const lines = found.map((a, i) => {
      const ok = a.gender === GENDER[items[i].who];
      if (ok) right++;
      return `${items[i].file}: ${a.gender} (${a.genderScore}) age ${a.age}${ok ? '' : '  WRONG'}`;
    });
    console.log(`gender right on ${right}/21\n${lines.join('\n')}`);
    expect(right).toBeGreaterThanOrEqual(17);
    for (const a of found) {
      expect(a.age).toBeGreaterThanOrEqual(16);
      expect(a.age).toBeLessThanOrEqual(85);
      // A score on [0, 1] (the raw regression leaves it, e.g. 1.028 on paul_rudd/1.jpg).
      expect(a.genderScore).toBeGreaterThanOrEqual(0);
      expect(a.genderScore).toBeLessThanOrEqual(1);
      expect(a.gender).toBe(a.genderScore > 0.5 ? 'male' : 'female');
    }
    const mean = found.reduce((s, a) => s + a.age, 0) / found.length;
    expect(mean).toBeGreaterThan(25);
    expect(mean).toBeLessThan(65);
  });

  it('reports the gender score on [0, 1] even where the raw regression leaves it (paul_rudd/1.jpg: 1.028)', async () => {
    // At full size, as `facestream analyze` reads a file.
    const image = await loadImageFile(dataFile('faces', 'paul_rudd', '1.jpg'), { ...testConfig().limits, maxDecodeSide: 0 });
    const rudd = { item: { image, face: largestFace((await analyzer.detect([image]))[0])! } };
    const gender = await SsrNet.load(runtime, 'gender-ssrnet-64');
    const [raw] = await gender.predict([rudd.item]);
    expect(raw).toBeGreaterThan(1); // the fault's input: the net's own value is over 1
    const [a] = await estimator.estimate([rudd.item]);
    expect(a.genderScore).toBe(1);
    expect(a.gender).toBe('male');
    // Other members: below 0, and an age regression outside 0-100.
    expect(faceAttributes(-3, -0.04)).toEqual({ age: 0, gender: 'female', genderScore: 0 });
    expect(faceAttributes(104.2, 0.5004).age).toBe(100);
  });

  it('gives the same values batched as one face at a time', async () => {
    const age = await SsrNet.load(runtime, 'age-ssrnet-64');
    const gender = await SsrNet.load(runtime, 'gender-ssrnet-64');
    const some = items.slice(0, 6).map((x) => x.item);
    for (const net of [age, gender]) {
      const batched = await net.predict(some);
      expect(batched.length).toBe(some.length);
      for (let i = 0; i < some.length; i++) {
        const [single] = await net.predict([some[i]]);
        expect(Math.abs(batched[i] - single)).toBeLessThan(1e-4);
      }
    }
    expect(await age.predict([])).toEqual([]);
  });

  it('is part of analyze() by default and left out when configured off', async () => {
    const withAttributes = await analyzer.analyze([items[0].item.image], { embed: false });
    expect(withAttributes[0][0].attributes?.gender).toMatch(/^(male|female)$/);
    expect(withAttributes[0][0].embedding).toBeUndefined();
    const off = await FaceAnalyzer.create(runtime, { ...testConfig(), attributes: { ...testConfig().attributes, enabled: false } });
    expect(off.attributes).toBeUndefined();
    const [faces] = await off.analyze([items[0].item.image]);
    expect(faces.length).toBeGreaterThan(0);
    expect(faces[0].attributes).toBeUndefined();
    expect(faces[0].embedding?.length).toBe(512);
  });
});
