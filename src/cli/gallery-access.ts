import fs from 'node:fs';
import path from 'node:path';
import { FacestreamError } from '../errors.js';
import { Gallery } from '../index/gallery.js';
import type { FaceAnalyzer } from '../pipeline/analyzer.js';
import type { CliContext } from './context.js';

/**
 * The gallery `run` recognises with: the one named by --gallery (which must exist), else the
 * configured gallery directory when it holds a gallery, else none (faces are tracked, not named).
 * Opened read-only: a running server may own the gallery.
 */
export async function openGalleryForCli(ctx: CliContext, analyzer: FaceAnalyzer, flag?: string): Promise<Gallery | undefined> {
  const dir = path.resolve(flag ?? ctx.config.gallery.dir);
  const exists = fs.existsSync(dir) && fs.readdirSync(dir).length > 0;
  if (!exists) {
    if (flag) throw new FacestreamError('FILE_NOT_FOUND', `gallery ${dir} does not exist; enroll people first with \`facestream enroll --gallery ${flag} <name> <pictures...>\``, { dir });
    return undefined;
  }
  return Gallery.open(dir, {
    modelId: analyzer.embedder.modelId,
    dimension: analyzer.embedder.dimension,
    config: ctx.config.gallery,
    logger: ctx.logger,
    defaultMinSimilarity: ctx.config.embedding.minSimilarity ?? analyzer.embedder.defaultMinSimilarity,
    readOnly: true,
  });
}
