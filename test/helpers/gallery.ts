import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../../src/config/schema.js';
import { Enroller } from '../../src/index/enroll.js';
import { enrollDirectory } from '../../src/index/enroll-dir.js';
import { Gallery } from '../../src/index/gallery.js';
import type { FaceAnalyzer } from '../../src/pipeline/analyzer.js';
import { dataFile } from './paths.js';

/** A fresh gallery in a temp dir with every person of shared/data/faces enrolled (folder name = id). */
export async function enrolledGallery(analyzer: FaceAnalyzer, config: Config): Promise<{ gallery: Gallery; dir: string; cleanup: () => Promise<void> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-gallery-'));
  const gallery = await Gallery.open(dir, {
    modelId: analyzer.embedder.modelId,
    dimension: analyzer.embedder.dimension,
    config: config.gallery,
    defaultMinSimilarity: analyzer.embedder.defaultMinSimilarity,
  });
  await enrollDirectory(new Enroller(gallery, analyzer, config.gallery), dataFile('faces'), { allowLargest: true });
  return {
    gallery,
    dir,
    cleanup: async () => {
      await gallery.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
