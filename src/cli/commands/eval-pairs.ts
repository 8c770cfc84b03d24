import fs from 'node:fs/promises';
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { embeddingDimension, embeddingSpec } from '../../models/manifest.js';
import { readPairs } from '../../eval/pairs.js';
import { rocFile, rocSvg } from '../../eval/roc.js';
import { evaluatePairs, type PairsEvaluation } from '../../eval/run-pairs.js';
import { contextFor, parseNumber, printJson } from '../context.js';

function pct(x: number): string {
  return `${(x * 100).toFixed(2)}%`;
}

export function evalPairsCommand(): Command {
  return new Command('eval-pairs')
    .description('k-fold verification accuracy on a pairs file (LFW format), per model')
    .argument('<pairs>', 'pairs file: LFW pairs.txt, or "pathA pathB 1|0" lines')
    .option('--models <ids>', 'comma-separated embedding models (default: config embedding.model)')
    .option('--folds <k>', 'number of folds', parseNumber('--folds', 2, 100), 10)
    .option('--images <dir>', 'directory the pair paths are relative to (default: images/ beside the file)')
    .option('--aligned', 'pictures are already aligned model-size crops: skip detection (auto when the size matches)')
    .option('--detect', "detect and align every picture, even crops already aligned on a manifest model's template")
    .option('--threshold <similarity>', "fixed threshold for the false accept / reject rates (default: the model's)", parseNumber('--threshold', -1, 1))
    .option('--roc <file>', 'write the ROC curve (.svg or .png)')
    .option('--json [file]', 'print (or write to file) the full result as JSON')
    .action(async (file: string, opts: { models?: string; folds: number; images?: string; aligned?: boolean; detect?: boolean; threshold?: number; roc?: string; json?: string | boolean }, cmd: Command) => {
      const ctx = contextFor(cmd, { attributes: { enabled: false } });
      const pairs = readPairs(file, opts.folds, opts.images);
      const ids = opts.models ? opts.models.split(',').map((s) => s.trim()) : [ctx.config.embedding.model];
      ids.forEach((id) => embeddingSpec(ctx.store.manifest, id));
      const results: PairsEvaluation[] = [];
      for (const id of ids) {
        const bar = process.stderr.isTTY ? new cliProgress.SingleBar({ format: `${id} [{bar}] {value}/{total} pictures`, stream: process.stderr }, cliProgress.Presets.shades_classic) : undefined;
        const result = await evaluatePairs({ runtime: ctx.runtime, config: ctx.config }, id, pairs, opts.folds, {
          threshold: opts.threshold,
          aligned: opts.aligned,
          detect: opts.detect,
          onStart: (total) => bar?.start(total, 0),
          onProgress: (done) => bar?.update(done),
        });
        bar?.stop();
        results.push(result);
      }
      if (opts.roc) await fs.writeFile(opts.roc, await rocFile(rocSvg(results.map((r) => ({ label: r.model, pairs: r.scored }))), opts.roc));
      const summary = results.map(({ scored: _scored, ...rest }) => rest);
      if (opts.json === true) printJson({ pairsFile: file, folds: opts.folds, results: summary }, true);
      else {
        if (typeof opts.json === 'string') await fs.writeFile(opts.json, JSON.stringify({ pairsFile: file, folds: opts.folds, results: summary }, null, 2));
        const out = process.stdout;
        out.write(`${pairs.length} pairs, ${opts.folds}-fold\n\n`);
        out.write(`${'model'.padEnd(26)} ${'accuracy'.padStart(16)} ${'threshold'.padStart(10)} ${'FAR@t'.padStart(8)} ${'FRR@t'.padStart(8)} ${'skipped'.padStart(8)} ${'dim'.padStart(5)} ${'ms/face'.padStart(8)}\n`);
        for (const r of results) {
          const at = r.report.atThreshold;
          out.write(
            `${r.model.padEnd(26)} ${`${pct(r.report.meanAccuracy)} ± ${pct(r.report.stdAccuracy)}`.padStart(16)} ${(at ? at.threshold.toFixed(3) : '-').padStart(10)} ${(at ? pct(at.falseAcceptRate) : '-').padStart(8)} ${(at ? pct(at.falseRejectRate) : '-').padStart(8)} ${String(r.skippedPairs).padStart(8)} ${String(embeddingDimension(embeddingSpec(ctx.store.manifest, r.model))).padStart(5)} ${r.inferMsPerFace.toFixed(1).padStart(8)}\n`,
          );
        }
        out.write('\nbest threshold per fold:\n');
        for (const r of results) out.write(`  ${r.model}: ${r.report.folds.map((f) => `${f.threshold.toFixed(3)} (${pct(f.accuracy)})`).join(', ')}\n`);
        if (opts.roc) out.write(`\nROC curve written to ${opts.roc}\n`);
      }
      await ctx.close();
    });
}
