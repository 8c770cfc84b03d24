import { Command } from 'commander';
import { contextFor, printJson } from '../context.js';
import { faceJson, loadPicture, requireLargestFace } from '../faces.js';

export function embedCommand(): Command {
  return new Command('embed')
    .description('print the embedding of the largest face in a picture (L2-normalised)')
    .argument('<image>', 'picture file')
    .option('--model <id>', 'embedding model from the manifest (default: config embedding.model)')
    .option('--json', 'print JSON (the default output)')
    .option('--pretty', 'indent the JSON')
    .action(async (file: string, opts: { model?: string; pretty?: boolean }, cmd: Command) => {
      const ctx = contextFor(cmd, { attributes: { enabled: false }, ...(opts.model ? { embedding: { model: opts.model } } : {}) });
      const image = await loadPicture(ctx, file);
      const analyzer = await ctx.analyzer();
      const face = await requireLargestFace(analyzer, image, file);
      printJson({ file, model: analyzer.embedder.modelId, dimension: analyzer.embedder.dimension, face: faceJson(face), embedding: face.embedding }, opts.pretty);
      await ctx.close();
    });
}
