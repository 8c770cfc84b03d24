import { Command } from 'commander';
import { contextFor, parseNumber, printJson } from '../context.js';
import { faceJson, loadPicture } from '../faces.js';

export function analyzeCommand(): Command {
  return new Command('analyze')
    .description('detect faces and estimate age and gender for each (a picture without faces gives an empty list)')
    .argument('<image>', 'picture file')
    .option('--min-face <px>', 'smallest face to look for, in pixels', parseNumber('--min-face', 12))
    .option('--json', 'print JSON (the default output)')
    .option('--pretty', 'indent the JSON')
    .action(async (file: string, opts: { minFace?: number; pretty?: boolean }, cmd: Command) => {
      const ctx = contextFor(cmd, { attributes: { enabled: true }, ...(opts.minFace ? { detector: { minFaceSize: opts.minFace } } : {}) });
      // Bad input fails before any model is loaded.
      const image = await loadPicture(ctx, file);
      const analyzer = await ctx.analyzer();
      const [faces] = await analyzer.analyze([image], { embed: false, attributes: true, stillPictures: true });
      printJson({ file, width: image.width, height: image.height, faces: faces.map(faceJson) }, opts.pretty);
      await ctx.close();
    });
}
