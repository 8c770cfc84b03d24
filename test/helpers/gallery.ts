import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../../src/config/schema.js';
import { Enroller } from '../../src/index/enroll.js';
import { enrollDirectory } from '../../src/index/enroll-dir.js';
import { Gallery } from '../../src/index/gallery.js';
import type { ModelRuntime } from '../../src/models/runtime.js';
import { FaceAnalyzer } from '../../src/pipeline/analyzer.js';
import { testRuntime } from './models.js';
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

/**
 * An analyzer on the test runtime (with `config`) and a gallery enrolled from ../shared/data/faces,
 * for suites that recognise the people of the shared clips; `cleanup` closes both.
 */
export async function enrolledAnalyzer(config: Config): Promise<{ runtime: ModelRuntime; analyzer: FaceAnalyzer; gallery: Gallery; cleanup: () => Promise<void> }> {
  const runtime = testRuntime(config);
  const analyzer = await FaceAnalyzer.create(runtime, config);
  const { gallery, cleanup } = await enrolledGallery(analyzer, config);
  return {
    runtime,
    analyzer,
    gallery,
    cleanup: async () => {
      await cleanup();
      await runtime.close();
    },
  };
}
