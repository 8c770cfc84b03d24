import { describe, expect, it } from 'vitest';
import type { PairsEvaluation } from '../src/eval/run-pairs.js';
import { runCli } from './helpers/cli.js';
import { dataFile } from './helpers/paths.js';

/**
 * LFW verification with arcface-mbf-112 through `facestream eval-pairs`: the 112x112 aligned
 * pictures are fed as they are (no detection), 3000 pairs in 10 folds of 150 same + 150 different.
 */
describe('facestream eval-pairs on LFW', () => {
  it('reaches at least 99.0% verification accuracy with arcface-mbf-112', async () => {
    const r = await runCli(['eval-pairs', dataFile('lfw', 'pairs.txt'), '--models', 'arcface-mbf-112', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const { results } = JSON.parse(r.stdout) as { results: Omit<PairsEvaluation, 'scored'>[] };
    const [arc] = results;
    expect(arc.model).toBe('arcface-mbf-112');
    expect(arc.report.pairs).toBe(3000);
    expect(arc.skippedPairs).toBe(0);
    expect(arc.report.folds).toHaveLength(10);
    expect(arc.report.meanAccuracy).toBeGreaterThanOrEqual(0.99);
    // The manifest's default threshold keeps false accepts rare.
    expect(arc.report.atThreshold?.threshold).toBe(0.35);
    expect(arc.report.atThreshold!.falseAcceptRate).toBeLessThan(0.005);
    console.log(
      `LFW arcface-mbf-112: ${(arc.report.meanAccuracy * 100).toFixed(2)}% ± ${(arc.report.stdAccuracy * 100).toFixed(2)}; ` +
        `at 0.35: FAR ${(arc.report.atThreshold!.falseAcceptRate * 100).toFixed(2)}%, FRR ${(arc.report.atThreshold!.falseRejectRate * 100).toFixed(2)}%`,
    );
  }, 180_000);
});
