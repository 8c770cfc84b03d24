import fs from 'node:fs';
import { FacestreamError } from '../errors.js';
import type { Embedder } from '../pipeline/embed/embedder.js';
import { decodeCrop } from './crop.js';
import { dropSavedIndex } from './index-file.js';
import { DirectoryLock } from './lock.js';
import { DB_FILE, GalleryStore } from './store.js';
import { checkEmbedding, vectorToBlob } from './vectors.js';
import path from 'node:path';

export interface ReindexOptions {
  /** Templates embedded per model call. */
  batch?: number;
  onStart?: (templates: number) => void;
  onProgress?: (done: number) => void;
}

export interface ReindexSummary {
  fromModel: string;
  toModel: string;
  dimension: number;
  templates: number;
  /** Templates whose new embedding was already computed by an interrupted earlier run. */
  resumed: number;
  seconds: number;
}

/**
 * Re-embeds every template of a gallery with another model from the stored face crops, so a
 * model change needs no new pictures. New embeddings are collected in a side table, committed in
 * batches; the switch (embeddings, model id, dimension) is one final transaction. An interrupted
 * run leaves the gallery on its old model and resumes where it stopped. The saved index is
 * dropped: the next open builds one for the new model.
 */
export async function reindexGallery(dir: string, embedder: Embedder, opts: ReindexOptions = {}): Promise<ReindexSummary> {
  if (!fs.existsSync(path.join(dir, DB_FILE))) throw new FacestreamError('FILE_NOT_FOUND', `${dir} is not a gallery (no ${DB_FILE})`, { dir });
  const started = performance.now();
  const lock = DirectoryLock.acquire(dir);
  const store = new GalleryStore(dir);
  try {
    const fromModel = store.getMeta('model_id') ?? '';
    const toModel = embedder.modelId;
    const db = store.db;
    const missing = (db.prepare('SELECT count(*) AS n FROM templates WHERE crop IS NULL OR crop_geometry IS NULL').get() as { n: number }).n;
    if (missing > 0) {
      throw new FacestreamError('GALLERY_CORRUPT', `${missing} templates of gallery ${dir} have no stored face crop and cannot be re-embedded; remove them first`, { dir, missing });
    }
    store.transaction(() => {
      if (store.getMeta('reindex_model') !== toModel) {
        db.prepare('DELETE FROM reindex').run();
        store.setMeta('reindex_model', toModel);
      }
    });
    const total = store.templateCount();
    const resumed = (db.prepare('SELECT count(*) AS n FROM reindex').get() as { n: number }).n;
    opts.onStart?.(total);
    const batch = opts.batch ?? embedder.maxBatch;
    const pending = db.prepare('SELECT t.id, t.crop, t.crop_format, t.crop_geometry FROM templates t WHERE t.id > ? AND NOT EXISTS (SELECT 1 FROM reindex r WHERE r.template = t.id) ORDER BY t.id LIMIT ?');
    const insert = db.prepare('INSERT OR REPLACE INTO reindex (template, embedding) VALUES (?, ?)');
    let done = resumed;
    let after = 0;
    for (;;) {
      const rows = pending.all(after, batch) as { id: number; crop: Buffer; crop_format: string; crop_geometry: string }[];
      if (rows.length === 0) break;
      after = rows[rows.length - 1].id;
      const items = await Promise.all(
        rows.map((r) => decodeCrop({ data: r.crop, format: r.crop_format === 'png' ? 'png' : 'jpeg', geometry: JSON.parse(r.crop_geometry) })),
      );
      const vectors = await embedder.embedFaces(items);
      vectors.forEach((v, k) => {
        try {
          checkEmbedding(v, embedder.dimension);
        } catch (err) {
          throw new FacestreamError('INFERENCE_FAILED', `template ${rows[k].id}: the new model gave an unusable embedding: ${(err as Error).message}`, { templateId: rows[k].id });
        }
      });
      store.transaction(() => rows.forEach((r, k) => insert.run(r.id, vectorToBlob(vectors[k]))));
      done += rows.length;
      opts.onProgress?.(done);
    }
    store.transaction(() => {
      const left = (db.prepare('SELECT count(*) AS n FROM templates t WHERE NOT EXISTS (SELECT 1 FROM reindex r WHERE r.template = t.id)').get() as { n: number }).n;
      if (left > 0) throw new FacestreamError('GALLERY_CORRUPT', `${left} templates were not re-embedded`, { dir });
      db.prepare('UPDATE templates SET embedding = (SELECT r.embedding FROM reindex r WHERE r.template = templates.id), model_id = ?').run(toModel);
      db.prepare('DELETE FROM reindex').run();
      db.prepare("DELETE FROM meta WHERE key = 'reindex_model'").run();
      dropSavedIndex(dir, store);
      store.setMeta('model_id', toModel);
      store.setMeta('dimension', embedder.dimension);
    });
    return { fromModel, toModel, dimension: embedder.dimension, templates: total, resumed, seconds: (performance.now() - started) / 1000 };
  } finally {
    store.close();
    lock.release();
  }
}
