import fs from 'node:fs';
import { Command } from 'commander';
import { cosineSimilarity } from '../../pipeline/embed/vector.js';
import { contextFor, parseNumber, printJson } from '../context.js';
import { faceJson, loadPicture, requireLargestFace } from '../faces.js';
import { galleryContext, openForAnalyzer, withGalleryOption } from './gallery-open.js';

/** A missing `photos/bob.jpg` is a missing file (a clear FILE_NOT_FOUND), not an identity called so. */
function looksLikePath(arg: string): boolean {
  return /[\\/]/.test(arg) || /\.(jpe?g|png|webp|gif|bmp|tiff?|avif|heic|heif)$/i.test(arg);
}

/** The 1:1 answer, the same for two pictures and for a picture against an identity. */
function verdict(model: string, similarity: number, threshold: number) {
  return { model, similarity, distance: 1 - similarity, threshold, match: similarity >= threshold };
}

export function verifyCommand(): Command {
  return withGalleryOption(
    new Command('verify')
      .description('1:1 verification: are the largest faces of two pictures the same person? With an identity instead of a second picture, compares against that person in the gallery')
      .argument('<imageA>', 'first picture')
      .argument('<imageB>', 'second picture, or an identity (id or name) of the gallery when no such file exists and the argument does not look like a path')
      .option('--identity', 'take <imageB> as a gallery identity even if a file of that name exists')
      .option('--model <id>', 'embedding model from the manifest')
      .option('--threshold <similarity>', "minimum cosine similarity for a match (default: the model's manifest threshold)", parseNumber('--threshold', -1, 1))
      .option('--json', 'print JSON (the default output)')
      .option('--pretty', 'indent the JSON'),
  ).action(async (a: string, b: string, opts: { model?: string; threshold?: number; pretty?: boolean; identity?: boolean; gallery?: string }, cmd: Command) => {
    const overrides = { attributes: { enabled: false }, ...(opts.model ? { embedding: { model: opts.model } } : {}) };
    if (opts.identity || (!fs.existsSync(b) && !looksLikePath(b))) {
      // A name, not a picture: verify against the identity's templates in the gallery.
      const ctx = galleryContext(cmd, opts, overrides);
      try {
        const imageA = await loadPicture(ctx, a);
        const analyzer = await ctx.analyzer();
        const gallery = await openForAnalyzer(ctx, analyzer, true);
        try {
          const faceA = await requireLargestFace(analyzer, imageA, a);
          const identity = gallery.requireIdentity(b);
          const { similarity, templateId } = gallery.identitySimilarity(identity.id, faceA.embedding!);
          const threshold = opts.threshold ?? gallery.minSimilarity;
          printJson(
            {
              ...verdict(analyzer.embedder.modelId, similarity, threshold),
              a: { file: a, face: faceJson(faceA) },
              identity: { id: identity.id, name: identity.name, templates: identity.templates, bestTemplate: templateId },
              gallery: gallery.dir,
            },
            opts.pretty,
          );
        } finally {
          await gallery.close();
        }
      } finally {
        await ctx.close();
      }
      return;
    }
    const ctx = contextFor(cmd, overrides);
    const [imageA, imageB] = await Promise.all([loadPicture(ctx, a), loadPicture(ctx, b)]);
    const analyzer = await ctx.analyzer();
    const faceA = await requireLargestFace(analyzer, imageA, a);
    const faceB = await requireLargestFace(analyzer, imageB, b);
    const similarity = cosineSimilarity(faceA.embedding!, faceB.embedding!);
    const threshold = opts.threshold ?? ctx.config.embedding.minSimilarity ?? analyzer.embedder.defaultMinSimilarity ?? 0.5;
    printJson(
      {
        ...verdict(analyzer.embedder.modelId, similarity, threshold),
        a: { file: a, face: faceJson(faceA) },
        b: { file: b, face: faceJson(faceB) },
      },
      opts.pretty,
    );
    await ctx.close();
  });
}
