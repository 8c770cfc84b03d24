import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { splitDataset, type IdentificationResult } from '../src/eval/identification.js';
import { runCli } from './helpers/cli.js';
import { dataFile } from './helpers/paths.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-eval-'));
const FACES = dataFile('faces');

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('facestream eval <root>: the 9:1 identification experiment', () => {
  it('splits every identity folder deterministically: pictures 0, 10, 20... are tested, the rest enrolled', () => {
    const split = splitDataset(FACES);
    expect(split).toHaveLength(10);
    const obama = split.find((s) => s.identity === 'barack_obama')!;
    expect(obama.test.map((f) => path.basename(f))).toEqual(['1.jpg']);
    expect(obama.enroll.map((f) => path.basename(f))).toEqual(['2.jpg', '3.jpg', '4.jpg', '5.jpg', '6_partial.jpg']);
    // A single-picture identity is only tested: a stranger to the gallery.
    expect(split.find((s) => s.identity === 'paul_rudd')).toMatchObject({ enroll: [], test: [expect.stringMatching(/1\.jpg$/)] });
    expect(splitDataset(FACES)).toEqual(split);
  });

  it('identifies every enrolled person (top-1) and answers unknown for every stranger with arcface; runs several models side by side', async () => {
    const out = path.join(tmp, 'eval.json');
    const r = await runCli(['eval', FACES, '--models', 'arcface-mbf-112,vggface2-resnet50-arch', '--json', out]);
    expect(r.code, r.stderr).toBe(0);
    // Text report: both models in one table, and the per-identity table.
    expect(r.stdout).toMatch(/10 identities; 11 pictures enrolled for 5 identities; 10 test pictures \(5 of enrolled people, 5 of strangers\)/);
    expect(r.stdout).toMatch(/\narcface-mbf-112 +0\.350 +100\.0% +100\.0% +50\.0% +0\.0% +100\.0% +100\.0%/);
    expect(r.stdout).toMatch(/\nvggface2-resnet50-arch +0\.500 /);
    expect(r.stdout).toMatch(/\nbarack_obama +5 +1\/1, 0 unknown +\d\/1, \d unknown/);
    const full = JSON.parse(fs.readFileSync(out, 'utf8')) as { results: IdentificationResult[] };
    const [arc, vgg] = full.results;
    expect(arc).toMatchObject({
      model: 'arcface-mbf-112',
      testPictures: 10,
      knownTests: 5,
      strangerTests: 5,
      top1Accuracy: 1,
      top5Accuracy: 1,
      unknownRate: 0.5,
      knownUnknownRate: 0,
      strangerUnknownRate: 1,
      openSetAccuracy: 1,
      failures: [],
    });
    expect(arc.perIdentity.find((p) => p.identity === 'barack_obama')).toEqual({ identity: 'barack_obama', enrolled: 5, tests: 1, top1: 1, top5: 1, unknown: 0 });
    for (const t of arc.tests.filter((t) => t.known)) {
      expect(t.match?.name).toBe(t.identity);
      expect(t.candidates.length).toBeLessThanOrEqual(5);
    }
    // Same split for every model; the random-weight model is measurably worse at open-set identification.
    expect(vgg.model).toBe('vggface2-resnet50-arch');
    expect(vgg.tests.map((t) => t.file)).toEqual(arc.tests.map((t) => t.file));
    expect(vgg.openSetAccuracy).toBeLessThan(arc.openSetAccuracy);
  });
});
