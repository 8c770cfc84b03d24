import fs from 'node:fs/promises';
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { evaluateIdentification, splitDataset, type IdentificationResult } from '../../eval/identification.js';
import { embeddingSpec } from '../../models/manifest.js';
import { contextFor, parseNumber, printJson } from '../context.js';
import { pct } from './gallery-open.js';

interface EvalFlags {
  models?: string;
  every: number;
  threshold?: number;
  top: number;
  json?: string | boolean;
}

export function evalCommand(): Command {
  return new Command('eval')
    .description('identification experiment on <root>/<identity>/<pictures>: every 10th picture of each identity is a test picture, the rest are enrolled; top-1/top-5 accuracy and "unknown" rate')
    .argument('<root>', 'directory with one folder per person')
    .option('--models <ids>', 'comma-separated embedding models, evaluated on the same split (default: config embedding.model)')
    .option('--every <n>', 'test-set stride: pictures 0, n, 2n, ... of each identity are tested', parseNumber('--every', 2, 1000), 10)
    .option('--threshold <similarity>', "similarity under which the answer is unknown (default: the model's)", parseNumber('--threshold', -1, 1))
    .option('--top <k>', 'candidates per test picture (top-k accuracy)', parseNumber('--top', 1, 100), 5)
    .option('--json [file]', 'print (or write to file) the full result as JSON, every test picture included')
    .action(async (root: string, opts: EvalFlags, cmd: Command) => {
      const ctx = contextFor(cmd, { attributes: { enabled: false } });
      try {
        const split = splitDataset(root, opts.every);
        const ids = opts.models ? opts.models.split(',').map((s) => s.trim()).filter(Boolean) : [ctx.config.embedding.model];
        ids.forEach((id) => embeddingSpec(ctx.store.manifest, id));
        const results: IdentificationResult[] = [];
        for (const id of ids) {
          const bar = process.stderr.isTTY && opts.json !== true ? new cliProgress.SingleBar({ format: `${id} [{bar}] {value}/{total} pictures`, stream: process.stderr }, cliProgress.Presets.shades_classic) : undefined;
          results.push(
            await evaluateIdentification({ runtime: ctx.runtime, config: ctx.config }, id, split, {
              threshold: opts.threshold,
              topK: opts.top,
              logger: ctx.logger,
              onStart: (n) => bar?.start(n, 0),
              onProgress: (n) => bar?.update(n),
            }),
          );
          bar?.stop();
        }
        const full = { root, every: opts.every, split, results };
        if (opts.json === true) return printJson(full, true);
        if (typeof opts.json === 'string') await fs.writeFile(opts.json, JSON.stringify(full, null, 2));
        const out = process.stdout;
        const first = results[0];
        out.write(`${split.length} identities; ${first.enrolledPictures} pictures enrolled for ${first.enrolledIdentities} identities; ${first.testPictures} test pictures (${first.knownTests} of enrolled people, ${first.strangerTests} of strangers)\n\n`);
        const head = ['model', 'threshold', 'top-1', `top-${opts.top}`, 'unknown', 'unknown|known', 'unknown|stranger', 'open-set acc', 'seconds'];
        const rows = results.map((r) => [r.model, r.threshold.toFixed(3), pct(r.top1Accuracy), pct(r.top5Accuracy), pct(r.unknownRate), pct(r.knownUnknownRate), pct(r.strangerUnknownRate), pct(r.openSetAccuracy), r.seconds.toFixed(1)]);
        const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
        const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
        out.write(`${line(head)}\n${line(widths.map((w) => '-'.repeat(w)))}\n${rows.map(line).join('\n')}\n`);
        out.write('\nper identity (top-1 right / tests, answered unknown):\n');
        const nameWidth = Math.max(8, ...split.map((s) => s.identity.length));
        out.write(`${'identity'.padEnd(nameWidth)}  ${'enrolled'.padStart(8)}  ${results.map((r) => r.model.padStart(Math.max(22, r.model.length))).join('  ')}\n`);
        split.forEach((s, i) => {
          const cells = results.map((r) => {
            const row = r.perIdentity[i];
            return `${row.top1}/${row.tests}, ${row.unknown} unknown`.padStart(Math.max(22, r.model.length));
          });
          out.write(`${s.identity.padEnd(nameWidth)}  ${String(results[0].perIdentity[i].enrolled).padStart(8)}  ${cells.join('  ')}\n`);
        });
        const failures = results.flatMap((r) => r.failures.map((f) => `  ${r.model}: ${f.stage} ${f.file}: ${f.reason}`));
        if (failures.length) out.write(`\npictures that could not be used:\n${failures.join('\n')}\n`);
        if (typeof opts.json === 'string') out.write(`\nfull result written to ${opts.json}\n`);
      } finally {
        await ctx.close();
      }
    });
}
