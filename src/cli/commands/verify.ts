import { Command } from 'commander';
import { cosineSimilarity } from '../../pipeline/embed/vector.js';
import { contextFor, parseNumber, printJson } from '../context.js';
import { faceJson, loadPicture, requireLargestFace } from '../faces.js';

export function verifyCommand(): Command {
  return new Command('verify')
    .description('1:1 verification: are the largest faces of two pictures the same person?')
    .argument('<imageA>', 'first picture')
    .argument('<imageB>', 'second picture')
    .option('--model <id>', 'embedding model from the manifest')
    .option('--threshold <similarity>', "minimum cosine similarity for a match (default: the model's manifest threshold)", parseNumber('--threshold', -1, 1))
    .option('--json', 'print JSON (the default output)')
    .option('--pretty', 'indent the JSON')
    .action(async (a: string, b: string, opts: { model?: string; threshold?: number; pretty?: boolean }, cmd: Command) => {
      const ctx = contextFor(cmd, { attributes: { enabled: false }, ...(opts.model ? { embedding: { model: opts.model } } : {}) });
      const analyzer = await ctx.analyzer();
      const [imageA, imageB] = await Promise.all([loadPicture(ctx, a), loadPicture(ctx, b)]);
      const faceA = await requireLargestFace(analyzer, imageA, a);
      const faceB = await requireLargestFace(analyzer, imageB, b);
      const similarity = cosineSimilarity(faceA.embedding!, faceB.embedding!);
      const threshold = opts.threshold ?? ctx.config.embedding.minSimilarity ?? analyzer.embedder.defaultMinSimilarity ?? 0.5;
      printJson(
        {
          model: analyzer.embedder.modelId,
          similarity,
          distance: 1 - similarity,
          threshold,
          match: similarity >= threshold,
          a: { file: a, face: faceJson(faceA) },
          b: { file: b, face: faceJson(faceB) },
        },
        opts.pretty,
      );
      await ctx.close();
    });
}
