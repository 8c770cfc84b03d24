import fs from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { FacestreamError } from '../../errors.js';
import { decodeCrop } from '../../index/crop.js';
import { DB_FILE } from '../../index/store.js';
import type { Gallery } from '../../index/gallery.js';
import { reindexGallery } from '../../index/reindex.js';
import { repairDatabase } from '../../index/repair.js';
import { exportGallery, importGallery } from '../../index/transfer.js';
import { Embedder } from '../../pipeline/embed/embedder.js';
import type { CliContext } from '../context.js';
import { counted, printJson } from '../context.js';
import { galleryContext, galleryDir, openAsStored, openForAnalyzer, withGalleryOption, type GalleryFlags } from './gallery-open.js';
import { makeDirectories } from '../../private-files.js';

interface OutputFlags extends GalleryFlags {
  json?: boolean;
  pretty?: boolean;
}

function sub(name: string, description: string): Command {
  // Nested commands do not inherit exitOverride: usage errors must reach main() (exit code 2).
  return withGalleryOption(new Command(name).description(description)).exitOverride();
}

function withOutput(cmd: Command): Command {
  return cmd.option('--json', 'print JSON').option('--pretty', 'indent the JSON');
}

/** The result as JSON with --json or --pretty, else one line for people. */
function printResult(opts: OutputFlags, value: unknown, line: string): void {
  if (opts.json || opts.pretty) printJson(value, opts.pretty);
  else process.stdout.write(`${line}\n`);
}

/** Opens the gallery (read-only or as writer), runs `fn`, always closes. */
async function withGallery<T>(cmd: Command, flags: GalleryFlags, readOnly: boolean, fn: (g: Gallery, ctx: CliContext) => Promise<T> | T): Promise<T> {
  const ctx = galleryContext(cmd, flags);
  try {
    const gallery = await openAsStored(ctx, readOnly);
    try {
      return await fn(gallery, ctx);
    } finally {
      await gallery.close();
    }
  } finally {
    await ctx.close();
  }
}

function parseJson(v: string): unknown {
  try {
    return JSON.parse(v);
  } catch {
    throw new InvalidArgumentError(`expected JSON, got "${v}"`);
  }
}

function progressBar(label: string): cliProgress.SingleBar | undefined {
  return process.stderr.isTTY ? new cliProgress.SingleBar({ format: `${label} [{bar}] {value}/{total} | {eta_formatted} left`, stream: process.stderr }, cliProgress.Presets.shades_classic) : undefined;
}

export function galleryCommand(): Command {
  const gallery = new Command('gallery').description('manage the gallery of enrolled people: list, show, rename, remove, export, import, reindex, check');

  gallery.addCommand(
    withOutput(sub('list', 'identities with their number of templates'))
      .option('--search <text>', 'only names or ids containing this text')
      .action((opts: OutputFlags & { search?: string }, cmd: Command) =>
        withGallery(cmd, opts, true, (g) => {
          const identities = g.listIdentities({ search: opts.search });
          if (opts.json || opts.pretty) return printJson({ gallery: g.dir, model: g.modelId, counts: g.counts(), identities }, opts.pretty);
          process.stdout.write(`gallery ${g.dir} (${g.modelId}): ${counted(g.counts().identities, 'identity', 'identities')}, ${counted(g.counts().templates, 'template')}\n`);
          for (const i of identities) process.stdout.write(`  ${i.name.padEnd(30)} ${counted(i.templates, 'template').padStart(15)}  ${i.id}\n`);
        }),
      ),
  );

  gallery.addCommand(
    withOutput(sub('show', 'one identity (by id or name) with its templates'))
      .argument('<identity>', 'identity id or name')
      .option('--crops <dir>', 'write each template’s stored face crop into this directory')
      .action((ref: string, opts: OutputFlags & { crops?: string }, cmd: Command) =>
        withGallery(cmd, opts, true, (g) => {
          const identity = g.requireIdentity(ref);
          const templates = g.listTemplates(identity.id);
          if (opts.crops) {
            makeDirectories(opts.crops);
            for (const t of templates) {
              const crop = g.templateCrop(t.id);
              if (crop) fs.writeFileSync(path.join(opts.crops, `${identity.id}-${t.id}.${crop.format === 'png' ? 'png' : 'jpg'}`), crop.data);
            }
          }
          if (opts.json || opts.pretty) return printJson({ identity, templates }, opts.pretty);
          const out = process.stdout;
          out.write(`${identity.name} (${identity.id})\n  created ${identity.createdAt}, updated ${identity.updatedAt}\n`);
          if (identity.metadata !== null) out.write(`  metadata ${JSON.stringify(identity.metadata)}\n`);
          out.write(`  ${counted(templates.length, 'template')}:\n`);
          for (const t of templates) {
            out.write(`    ${t.id.padStart(6)}  ${t.source}  face ${t.faceSize === null ? '-' : Math.round(t.faceSize)} px, score ${t.detectionScore?.toFixed(3) ?? '-'}, ${t.createdAt}\n`);
          }
          if (opts.crops) out.write(`  crops written to ${opts.crops}\n`);
        }),
      ),
  );

  gallery.addCommand(
    withOutput(sub('rename', 'give an identity a new display name'))
      .argument('<identity>', 'identity id or name')
      .argument('<name>', 'new name')
      .action((ref: string, name: string, opts: OutputFlags, cmd: Command) =>
        withGallery(cmd, opts, false, (g) => {
          const identity = g.renameIdentity(ref, name);
          printResult(opts, identity, `renamed ${identity.id} to "${identity.name}"`);
        }),
      ),
  );

  gallery.addCommand(
    withOutput(sub('set-metadata', "replace an identity's JSON metadata"))
      .argument('<identity>', 'identity id or name')
      .argument('<json>', 'metadata as JSON', parseJson)
      .action((ref: string, metadata: unknown, opts: OutputFlags, cmd: Command) =>
        withGallery(cmd, opts, false, (g) => {
          const identity = g.updateIdentity(ref, { metadata });
          printResult(opts, identity, `metadata of "${identity.name}" (${identity.id}) updated`);
        }),
      ),
  );

  gallery.addCommand(
    withOutput(sub('remove', 'remove an identity and all its templates'))
      .argument('<identity>', 'identity id or name')
      .action((ref: string, opts: OutputFlags, cmd: Command) =>
        withGallery(cmd, opts, false, (g) => {
          const identity = g.removeIdentity(ref);
          printResult(opts, identity, `removed "${identity.name}" (${identity.id}) and its ${counted(identity.templates, 'template')}`);
        }),
      ),
  );

  gallery.addCommand(
    withOutput(sub('remove-template', 'remove one template (see `gallery show` for ids)'))
      .argument('<template>', 'template id')
      .action((id: string, opts: OutputFlags, cmd: Command) =>
        withGallery(cmd, opts, false, (g) => {
          const t = g.removeTemplate(id);
          printResult(opts, t, `removed template ${t.id} (${t.source}) of ${t.identityId}`);
        }),
      ),
  );

  gallery.addCommand(
    withOutput(sub('export', 'write every identity and template (embeddings and face crops) to a JSON Lines file (.gz: compressed)'))
      .argument('<file>', 'output file, e.g. gallery.jsonl.gz')
      .action((file: string, opts: OutputFlags, cmd: Command) =>
        withGallery(cmd, opts, true, async (g) => {
          const summary = await exportGallery(g, file);
          printResult(opts, summary, `exported ${counted(summary.identities, 'identity', 'identities')} and ${counted(summary.templates, 'template')} to ${file} (${(summary.bytes / 1024).toFixed(0)} KiB)`);
        }),
      ),
  );

  gallery.addCommand(
    withOutput(sub('import', 'add the identities and templates of an export (merged by identity id; pictures already present are skipped)'))
      .argument('<file>', 'file written by `gallery export`')
      .action(async (file: string, opts: OutputFlags, cmd: Command) => {
        const ctx = galleryContext(cmd, opts);
        try {
          const dir = galleryDir(ctx);
          let g: Gallery;
          // What was there before: an import that fails into a gallery it created leaves nothing behind.
          const before = fs.existsSync(dir) ? new Set(fs.readdirSync(dir)) : undefined;
          const fresh = !fs.existsSync(path.join(dir, DB_FILE));
          if (!fresh) g = await openAsStored(ctx, false);
          else {
            // A new gallery takes the configured embedding model.
            g = await openForAnalyzer(ctx, await ctx.analyzer(), false);
          }
          let failed = true;
          try {
            let embedder: Embedder | undefined;
            const summary = await importGallery(g, file, {
              reembed: async (crop) => {
                embedder ??= await Embedder.load(ctx.runtime, g.modelId, ctx.config.embedding.maxBatch);
                const [v] = await embedder.embedFaces([await decodeCrop(crop)]);
                return v;
              },
            });
            if (opts.json || opts.pretty) printJson({ gallery: g.dir, ...summary, counts: g.counts() }, opts.pretty);
            else {
              process.stdout.write(
                `imported ${file}: ${counted(summary.identitiesCreated, 'identity', 'identities')} created, ${summary.identitiesMerged} merged, ${counted(summary.templatesAdded, 'template')} added` +
                  `${summary.reembedded ? ` (${summary.reembedded} re-embedded with ${g.modelId})` : ''}, ${summary.duplicates} already present, ${summary.skipped} skipped\n`,
              );
            }
            failed = false;
          } finally {
            const empty = g.counts().identities === 0;
            await g.close();
            if (failed && fresh && empty) removeCreated(dir, before);
          }
        } finally {
          await ctx.close();
        }
      }),
  );

  gallery.addCommand(
    withOutput(sub('reindex', 're-embed every template with another embedding model from the stored face crops (no pictures needed)'))
      .requiredOption('--model <id>', 'embedding model from the manifest')
      .action(async (opts: OutputFlags & { model: string }, cmd: Command) => {
        const ctx = galleryContext(cmd, opts);
        try {
          const embedder = await Embedder.load(ctx.runtime, opts.model, ctx.config.embedding.maxBatch);
          const bar = progressBar(`re-embedding with ${opts.model}`);
          const summary = await reindexGallery(galleryDir(ctx), embedder, { onStart: (n) => bar?.start(n, 0), onProgress: (n) => bar?.update(n) });
          bar?.stop();
          if (opts.json || opts.pretty) printJson(summary, opts.pretty);
          else {
            process.stdout.write(`re-embedded ${counted(summary.templates, 'template')}: ${summary.fromModel} -> ${summary.toModel} (${summary.dimension}-d) in ${summary.seconds.toFixed(1)} s\n`);
            if (ctx.config.embedding.model !== summary.toModel) process.stdout.write(`set embedding.model to "${summary.toModel}" (or FACESTREAM_EMBEDDING_MODEL) to use the gallery\n`);
          }
        } finally {
          await ctx.close();
        }
      }),
  );

  gallery.addCommand(
    withOutput(sub('check', 'integrity check of the database and the search index (exit 1 on problems)'))
      .option('--repair', 'repair what can be: a damaged database keeps every readable row (the damaged file is set aside), the index is rebuilt (the gallery must not be in use)')
      .action(async (opts: OutputFlags & { repair?: boolean }, cmd: Command) => {
        // A damaged database is repaired before the gallery is opened on it.
        const database = opts.repair ? repairDatabase(galleryDir(galleryContext(cmd, opts))) : undefined;
        await withGallery(cmd, opts, !opts.repair, async (g) => {
          if (opts.repair) await g.rebuild();
          const report = await g.check();
          if (database?.damaged) {
            report.repaired.unshift(
              `database: ${database.problems.slice(0, 3).join('; ')}; kept ${database.identities!.kept} identities and ${database.templates!.kept} templates, lost ${database.identities!.lost} and ${database.templates!.lost}; the damaged file is ${database.setAside}`,
            );
          }
          if (opts.repair) report.repaired.push('index rebuilt from the database and saved');
          if (opts.json || opts.pretty) printJson({ gallery: g.dir, model: g.modelId, loaded: g.loadReport, ...report }, opts.pretty);
          else {
            process.stdout.write(`gallery ${g.dir} (${g.modelId}): ${counted(report.identities, 'identity', 'identities')}, ${counted(report.templates, 'template')}; index ${report.index.entries} entries, ${report.index.deleted} deleted, ${g.loadReport.source}${g.loadReport.reason ? ` (${g.loadReport.reason})` : ''}\n`);
            for (const r of report.repaired) process.stdout.write(`repaired: ${r}\n`);
            process.stdout.write(report.ok ? 'ok\n' : `${report.problems.length} problems:\n${report.problems.map((p) => `  ${p}\n`).join('')}`);
          }
          if (!report.ok) throw new FacestreamError('GALLERY_CORRUPT', `gallery ${g.dir} failed its integrity check${opts.repair ? '' : '; `facestream gallery check --repair` repairs what can be'}`, { problems: report.problems });
        });
      }),
  );

  gallery.addCommand(
    withOutput(sub('compact', 'rebuild the search index without deleted entries and save it')).action((opts: OutputFlags, cmd: Command) =>
      withGallery(cmd, opts, false, async (g) => {
        const before = g.indexStats();
        await g.compact();
        const after = g.indexStats();
        if (opts.json || opts.pretty) printJson({ before, after }, opts.pretty);
        else process.stdout.write(`index compacted: ${before.deleted} deleted entries removed, ${after.entries} entries\n`);
      }),
    ),
  );

  return gallery;
}

/** Removes what a failed command created in `dir`: the entries not in `before`, or the whole directory when it did not exist. */
function removeCreated(dir: string, before: Set<string> | undefined): void {
  if (!before) {
    fs.rmSync(dir, { recursive: true, force: true });
    return;
  }
  for (const entry of fs.readdirSync(dir)) if (!before.has(entry)) fs.rmSync(path.join(dir, entry), { recursive: true, force: true });
}
