import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { Enroller } from '../../index/enroll.js';
import { enrollDirectory, type FileOutcome } from '../../index/enroll-dir.js';
import { counted, printJson } from '../context.js';
import { galleryContext, openForAnalyzer, withGalleryOption, type GalleryFlags } from './gallery-open.js';

interface EnrollDirFlags extends GalleryFlags {
  largest?: boolean;
  jsonl?: boolean;
  json?: boolean;
  pretty?: boolean;
}

export function enrollDirCommand(): Command {
  return withGalleryOption(
    new Command('enroll-dir')
      .description('bulk enrollment of <root>/<identity>/<pictures> (folder name = identity id and name); resumable: pictures already enrolled are skipped')
      .argument('<root>', 'directory with one folder per person')
      .option('--largest', 'enroll the largest face of pictures showing several')
      .option('--jsonl', 'print one JSON line per picture as soon as it is final (after its commit, for "added")')
      .option('--json', 'print the summary as JSON')
      .option('--pretty', 'indent the JSON'),
  ).action(async (root: string, opts: EnrollDirFlags, cmd: Command) => {
    const ctx = galleryContext(cmd, opts, { attributes: { enabled: false } });
    try {
      const analyzer = await ctx.analyzer();
      const gallery = await openForAnalyzer(ctx, analyzer, false);
      try {
        const enroller = new Enroller(gallery, analyzer, ctx.config.gallery, { limits: ctx.config.limits });
        const bar =
          process.stderr.isTTY && !opts.jsonl
            ? new cliProgress.SingleBar({ format: 'enrolling [{bar}] {value}/{total} pictures | {added} added, {skipped} skipped, {rejected} rejected | {eta_formatted} left', stream: process.stderr }, cliProgress.Presets.shades_classic)
            : undefined;
        const tally = { added: 0, skipped: 0, rejected: 0 };
        let done = 0;
        const summary = await enrollDirectory(enroller, root, {
          allowLargest: opts.largest,
          onStart: (total) => bar?.start(total, 0, tally),
          onFile: (o: FileOutcome) => {
            tally[o.status]++;
            bar?.update(++done, tally);
            if (opts.jsonl) process.stdout.write(`${JSON.stringify(o)}\n`);
          },
        });
        bar?.stop();
        if (opts.json || opts.pretty) printJson({ gallery: gallery.dir, ...summary, counts: gallery.counts() }, opts.pretty);
        else if (!opts.jsonl) {
          const out = process.stdout;
          out.write(`${summary.files} pictures in ${summary.identities} folders: ${summary.added} added, ${summary.skipped} already enrolled, ${summary.rejected} rejected (${summary.seconds.toFixed(1)} s)\n`);
          out.write(`gallery ${gallery.dir}: ${counted(gallery.counts().identities, 'identity', 'identities')}, ${counted(gallery.counts().templates, 'template')}\n`);
          if (summary.failures.length) {
            out.write('\nrejected pictures:\n');
            for (const f of summary.failures) out.write(`  ${f.file}: ${f.code}: ${f.reason}\n`);
          }
        }
      } finally {
        await gallery.close();
      }
    } finally {
      await ctx.close();
    }
  });
}
