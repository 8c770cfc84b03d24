import { Command, InvalidArgumentError } from 'commander';
import { FacestreamError, type ErrorCode } from '../../errors.js';
import { readImageFile } from '../../image/decode.js';
import { Enroller, type EnrollPicture } from '../../index/enroll.js';
import type { Box } from '../../image/types.js';
import { counted, printJson } from '../context.js';
import { galleryContext, openForAnalyzer, parseBox, withGalleryOption, type GalleryFlags } from './gallery-open.js';

interface EnrollFlags extends GalleryFlags {
  id?: string;
  metadata?: unknown;
  largest?: boolean;
  box?: Box;
  json?: boolean;
  pretty?: boolean;
}

function parseJson(v: string): unknown {
  try {
    return JSON.parse(v);
  } catch {
    throw new InvalidArgumentError(`--metadata must be JSON, got "${v}"`);
  }
}

export function enrollCommand(): Command {
  return withGalleryOption(
    new Command('enroll')
      .description('add pictures of one person to the gallery (creates the identity when new); every picture is accepted or rejected with a reason')
      .argument('<name>', "the person's display name (an existing identity with this name or id gets the new pictures)")
      .argument('<images...>', 'picture files')
      .option('--id <id>', 'identity id for a new identity (default: a generated UUID), or the existing identity to add to')
      .option('--metadata <json>', 'JSON metadata stored with a new identity', parseJson)
      .option('--largest', 'enroll the largest face of a picture showing several')
      .option('--box <x1,y1,x2,y2>', 'enroll the face in this box (picture pixels)', parseBox)
      .option('--json', 'print the full report as JSON')
      .option('--pretty', 'indent the JSON'),
  ).action(async (name: string, files: string[], opts: EnrollFlags, cmd: Command) => {
    const ctx = galleryContext(cmd, opts, { attributes: { enabled: false } });
    try {
      const pictures: EnrollPicture[] = [];
      const unreadable: { picture: string; code: string; reason: string }[] = [];
      for (const file of files) {
        try {
          pictures.push({ name: file, data: await readImageFile(file, ctx.config.limits) });
        } catch (err) {
          if (!(err instanceof FacestreamError)) throw err;
          unreadable.push({ picture: file, code: err.code, reason: err.message });
        }
      }
      const analyzer = await ctx.analyzer();
      const gallery = await openForAnalyzer(ctx, analyzer, false);
      try {
        const enroller = new Enroller(gallery, analyzer, ctx.config.gallery, { limits: ctx.config.limits });
        const report = pictures.length
          ? await enroller.enrollPictures({ id: opts.id, name, metadata: opts.metadata }, pictures, { allowLargest: opts.largest, box: opts.box })
          : { identity: null, created: false, added: [], rejected: [], results: [], timings: undefined };
        const rejected = [...unreadable, ...report.rejected];
        if (opts.json || opts.pretty) printJson({ gallery: gallery.dir, identity: report.identity, created: report.created, added: report.added, rejected }, opts.pretty);
        else {
          const out = process.stdout;
          if (report.identity) out.write(`${report.created ? 'created' : 'updated'} identity "${report.identity.name}" (${report.identity.id}): ${counted(report.identity.templates, 'template')}\n`);
          for (const t of report.added) out.write(`  added    ${t.source} (template ${t.id})\n`);
          for (const r of rejected) out.write(`  rejected ${r.picture}: ${r.code}: ${r.reason}\n`);
        }
        if (report.added.length === 0) {
          throw new FacestreamError((rejected[0]?.code as ErrorCode | undefined) ?? 'BAD_REQUEST', `nothing enrolled: all ${files.length} pictures were rejected`, { rejected });
        }
      } finally {
        await gallery.close();
      }
    } finally {
      await ctx.close();
    }
  });
}
