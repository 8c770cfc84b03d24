import fs from 'node:fs/promises';
import { Command } from 'commander';
import { drawAnnotations } from '../../image/draw.js';
import { faceIdentification } from '../../index/search.js';
import { annotationFormat, parseAnnotationPath, parseNumber, printJson } from '../context.js';
import { loadPicture } from '../faces.js';
import { galleryContext, openForAnalyzer, withGalleryOption, type GalleryFlags } from './gallery-open.js';

interface IdentifyFlags extends GalleryFlags {
  top: number;
  threshold?: number;
  annotate?: string;
  json?: boolean;
  pretty?: boolean;
}

export function identifyCommand(): Command {
  return withGalleryOption(
    new Command('identify')
      .description('1:N identification: every face in the picture with its top identities from the gallery, or "unknown"')
      .argument('<image>', 'picture file')
      .option('--top <k>', 'identities listed per face', parseNumber('--top', 1, 100), 5)
      .option('--threshold <similarity>', 'similarity under which a face is unknown (default: gallery.minSimilarity, else the model threshold)', parseNumber('--threshold', -1, 1))
      .option('--annotate <file>', 'write the picture with boxes and names (.png or .jpg)', parseAnnotationPath('--annotate'))
      .option('--json', 'print JSON')
      .option('--pretty', 'indent the JSON'),
  ).action(async (file: string, opts: IdentifyFlags, cmd: Command) => {
    const ctx = galleryContext(cmd, opts, { attributes: { enabled: false } });
    try {
      const image = await loadPicture(ctx, file);
      const analyzer = await ctx.analyzer();
      // Read-only: identification works beside a running server that owns the gallery.
      const gallery = await openForAnalyzer(ctx, analyzer, true);
      try {
        if (opts.threshold !== undefined) gallery.minSimilarity = opts.threshold;
        const [faces] = await analyzer.analyze([image], { embed: true, attributes: false, stillPictures: true });
        const results = faces
          .sort((a, b) => a.box[0] - b.box[0])
          .map((face) => {
            return { box: face.box, score: face.score, ...faceIdentification(gallery.identify(face.embedding!, opts.top)) };
          });
        if (opts.annotate) {
          const annotations = results.map((r) => ({
            box: r.box,
            label: r.identity ? `${r.identity.name} ${r.identity.similarity.toFixed(2)}` : 'unknown',
            color: r.identity ? '#22c55e' : '#ef4444',
          }));
          await fs.writeFile(opts.annotate, await drawAnnotations(image, annotations, annotationFormat('--annotate', opts.annotate)));
        }
        if (opts.json || opts.pretty) {
          printJson({ file, gallery: gallery.dir, model: gallery.modelId, threshold: gallery.minSimilarity, counts: gallery.counts(), faces: results }, opts.pretty);
        } else {
          const out = process.stdout;
          out.write(`${file}: ${results.length} face${results.length === 1 ? '' : 's'} (gallery: ${gallery.counts().identities} identities, threshold ${Number(gallery.minSimilarity.toFixed(3))})\n`);
          results.forEach((r, i) => {
            const [x1, y1, x2, y2] = r.box.map((v) => Math.round(v));
            out.write(`\nface ${i + 1} [${x1}, ${y1}, ${x2}, ${y2}]: ${r.identity ? `${r.identity.name} (${r.identity.similarity.toFixed(3)})` : 'unknown'}\n`);
            r.candidates.forEach((c, k) => out.write(`  ${k + 1}. ${c.name.padEnd(30)} ${c.similarity.toFixed(3)}${c.similarity < gallery.minSimilarity ? '  (below threshold)' : ''}\n`));
            if (r.candidates.length === 0) out.write('  (the gallery is empty)\n');
          });
          if (opts.annotate) out.write(`\nannotated picture written to ${opts.annotate}\n`);
        }
      } finally {
        await gallery.close();
      }
    } finally {
      await ctx.close();
    }
  });
}
