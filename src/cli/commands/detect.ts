import fs from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import { errorMessage, isFacestreamError } from '../../errors.js';
import { drawAnnotations } from '../../image/draw.js';
import { detectStillPictures } from '../../pipeline/detect/still-pictures.js';
import { annotationFormat, contextFor, parseNumber, printJson } from '../context.js';
import { faceJson, loadPicture } from '../faces.js';

interface DetectOptions {
  minFace?: number;
  scaleFactor?: number;
  thresholds?: string;
  draw?: string;
  json?: boolean;
  pretty?: boolean;
  attributes?: boolean;
}

/** Where to write the annotated copy of `file`: the path itself for one input, else a file in that directory. */
function drawTarget(draw: string, file: string, many: boolean): string {
  return many ? path.join(draw, `${path.parse(file).name}.png`) : draw;
}

export function detectCommand(): Command {
  return new Command('detect')
    .description('detect faces: per file, boxes [x1,y1,x2,y2], scores and 5 landmarks as JSON (a picture without faces gives an empty list)')
    .argument('<images...>', 'picture files')
    .option('--min-face <px>', 'smallest face to look for, in pixels', parseNumber('--min-face', 12))
    .option('--scale-factor <f>', 'pyramid scale step (0.709)', parseNumber('--scale-factor', 0.1, 0.95))
    .option('--thresholds <p,r,o>', 'P-Net,R-Net,O-Net score thresholds (0.6,0.7,0.7)')
    .option('--draw <path>', 'write an annotated picture, .png or .jpg (a directory of PNGs when several pictures are given)')
    .option('--json', 'print JSON (the default output)')
    .option('--pretty', 'indent the JSON')
    .action(async (images: string[], opts: DetectOptions, cmd: Command) => {
      const detector: Record<string, unknown> = {};
      if (opts.minFace !== undefined) detector.minFaceSize = opts.minFace;
      if (opts.scaleFactor !== undefined) detector.scaleFactor = opts.scaleFactor;
      if (opts.thresholds) detector.thresholds = opts.thresholds.split(',').map(Number);
      const ctx = contextFor(cmd, { detector });
      const faceDetector = await ctx.detector();
      const minScore = ctx.config.detector.minScore;
      const many = images.length > 1;
      // Several pictures draw PNGs into a directory; one picture, into the file named (its extension says the format).
      let format: 'png' | 'jpeg' = 'png';
      try {
        if (opts.draw && !many) format = annotationFormat('--draw', opts.draw);
      } catch (err) {
        cmd.error(`error: ${errorMessage(err)}`, { exitCode: 2 });
      }
      if (opts.draw && many) await fs.mkdir(opts.draw, { recursive: true });
      const results: unknown[] = [];
      let failed = 0;
      for (const file of images) {
        try {
          const image = await loadPicture(ctx, file);
          const [faces] = await detectStillPictures(faceDetector, [image], { minScore, padding: ctx.config.detector.picturePadding });
          const entry: Record<string, unknown> = { file, width: image.width, height: image.height, faces: faces.map(faceJson) };
          if (opts.draw) {
            const target = drawTarget(opts.draw, file, many);
            await fs.writeFile(target, await drawAnnotations(image, faces.map((f) => ({ box: f.box, landmarks: f.landmarks, label: f.score.toFixed(3) })), format));
            entry.drawn = target;
          }
          results.push(entry);
        } catch (err) {
          if (!isFacestreamError(err)) throw err;
          failed++;
          results.push({ file, error: { code: err.code, message: err.message } });
          process.stderr.write(`facestream: ${errorMessage(err)}\n`);
        }
      }
      printJson(many ? results : results[0], opts.pretty);
      await ctx.close();
      if (failed) process.exitCode = 1;
    });
}
