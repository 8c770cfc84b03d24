import { describe, expect, it } from 'vitest';
import type { PairsEvaluation } from '../src/eval/run-pairs.js';
import { runCli } from './helpers/cli.js';
import { dataFile } from './helpers/paths.js';

/**
 * LFW verification through `facestream eval-pairs`, the two real-weight models side by side:
 * arcface-mbf-112 takes the 112x112 aligned pictures as they are (no detection);
 * faceapi-resnet34-150 re-aligns them from the ArcFace template onto its own 150x150 template.
 * 3000 pairs in 10 folds of 150 same + 150 different.
 */
describe('facestream eval-pairs on LFW', () => {
  it('reaches at least 99.0% with arcface-mbf-112 and 98.3% with faceapi-resnet34-150, at thresholds that keep false accepts rare', async () => {
    const r = await runCli(['eval-pairs', dataFile('lfw', 'pairs.txt'), '--models', 'arcface-mbf-112,faceapi-resnet34-150', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const { results } = JSON.parse(r.stdout) as { results: Omit<PairsEvaluation, 'scored'>[] };
    const [arc, faceapi] = results;
    expect(arc.model).toBe('arcface-mbf-112');
    expect(arc.report.pairs).toBe(3000);
    expect(arc.skippedPairs).toBe(0);
    expect(arc.report.folds).toHaveLength(10);
    expect(arc.report.meanAccuracy).toBeGreaterThanOrEqual(0.99);
    // The manifest's default threshold keeps false accepts rare.
    expect(arc.report.atThreshold?.threshold).toBe(0.35);
    expect(arc.report.atThreshold!.falseAcceptRate).toBeLessThan(0.005);

    expect(faceapi.model).toBe('faceapi-resnet34-150');
    expect(faceapi.report.pairs).toBe(3000);
    expect(faceapi.skippedPairs).toBe(0);
    expect(faceapi.report.meanAccuracy).toBeGreaterThanOrEqual(0.983);
    expect(faceapi.report.atThreshold?.threshold).toBe(0.915);
    expect(faceapi.report.atThreshold!.falseAcceptRate).toBeLessThan(0.005);
    expect(faceapi.report.atThreshold!.falseRejectRate).toBeLessThan(0.05);
    for (const m of [arc, faceapi]) {
      console.log(
        `LFW ${m.model}: ${(m.report.meanAccuracy * 100).toFixed(2)}% ± ${(m.report.stdAccuracy * 100).toFixed(2)}; ` +
          `at ${m.report.atThreshold!.threshold}: FAR ${(m.report.atThreshold!.falseAcceptRate * 100).toFixed(2)}%, FRR ${(m.report.atThreshold!.falseRejectRate * 100).toFixed(2)}%`,
      );
    }
  }, 240_000);
});
