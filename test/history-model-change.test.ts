import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { historySchema } from '../src/config/sections/history.js';
import { AppearanceHistory } from '../src/history/history.js';
import { HistoryMetrics } from '../src/history/metrics.js';
import { createLogger } from '../src/log.js';

/**
 * The embedding model changes under a history (README: `gallery reindex --model X`, then
 * `embedding.model: X`): the history holds vectors of the old model, which have another length
 * (arcface-mbf-112 512, faceapi-resnet34-150 128) or, with the same length, mean nothing to the new
 * model. The server must still start, keep the appearances, and never compare vectors of two models.
 */

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-history-model-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const open = (dir: string, modelId: string, dimension: number) =>
  AppearanceHistory.open({ dir, config: historySchema.parse({}), dimension, modelId, logger: createLogger('silent'), metrics: new HistoryMetrics(), clusterSimilarity: 0.45 });

/** A unit vector with a 1 at `hot`. */
function unit(dimension: number, hot: number): Float32Array {
  const v = new Float32Array(dimension);
  v[hot] = 1;
  return v;
}

/** Stores an unknown appearance with an embedding (and a cluster holding it) as the recorder would. */
function store(history: AppearanceHistory, id: number, modelId: string, embedding: Float32Array): void {
  const now = Date.now();
  const cluster = history.store.insertCluster(embedding, 1, now, now);
  history.store.insert(
    {
      id,
      streamId: 'door',
      identity: null,
      trackId: id,
      startedAt: now - 1000,
      endedAt: now,
      bestSimilarity: null,
      frames: 10,
      faceScore: 0.99,
      faceSize: 80,
      sharpness: 100,
      quality: 0.5,
      box: [10, 10, 90, 90],
      frameWidth: 640,
      frameHeight: 360,
      bestAt: now,
      cropFile: `none/${id}.crop.jpg`,
      snapshotFile: null,
      bytes: 1000,
      modelId,
      embedding,
    },
    cluster,
  );
}

describe('appearance history across a change of embedding model', () => {
  it('opens with a model of another dimension: appearances kept, old vectors and clusters retired, new ones searchable', async () => {
    const dir = path.join(tmp, 'other-dimension');
    let history = await open(dir, 'arcface-mbf-112', 512);
    store(history, 1, 'arcface-mbf-112', unit(512, 3));
    await history.close();

    // Failed before: "embedding blob holds 2048 bytes, expected 512" and the server did not start.
    history = await open(dir, 'faceapi-resnet34-150', 128);
    expect(history.get(1)).toMatchObject({ id: 1, hasEmbedding: false, clusterId: null });
    expect(history.listClusters({ offset: 0, limit: 10, minSize: 1 }).total).toBe(0);
    store(history, 2, 'faceapi-resnet34-150', unit(128, 3));
    await history.close();

    // Reopened with the same model nothing more is retired, and the new model's vectors are found.
    history = await open(dir, 'faceapi-resnet34-150', 128);
    expect(history.get(2)?.hasEmbedding).toBe(true);
    expect(history.searchByFace(unit(128, 3), { k: 5, minSimilarity: 0.5 }).map((a) => a.id)).toEqual([2]);
    expect(history.list({}, 10).appearances.map((a) => a.id)).toEqual([2, 1]);
    await history.close();
  });

  it('never answers a search with vectors of another model of the same dimension (saved index included)', async () => {
    const dir = path.join(tmp, 'same-dimension');
    let history = await open(dir, 'model-a', 8);
    store(history, 1, 'model-a', unit(8, 0));
    await history.close();
    // Opened once more with model-a: the search index holds the vector and is saved with it.
    history = await open(dir, 'model-a', 8);
    expect(history.searchByFace(unit(8, 0), { k: 5, minSimilarity: 0.5 }).map((a) => a.id)).toEqual([1]);
    await history.close();

    history = await open(dir, 'model-b', 8);
    expect(history.searchByFace(unit(8, 0), { k: 5, minSimilarity: 0.5 })).toEqual([]);
    expect(history.get(1)?.hasEmbedding).toBe(false);
    await history.close();
  });
});
