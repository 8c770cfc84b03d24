/**
 * `npm run bench -- history`: the appearance history's costs.
 *
 * 1. Write rate while 4 camera-paced streams run (real ingest, pipeline, gallery): the same
 *    streams without the history, with it (default settings), and with it stressed (an appearance
 *    ends after one missed frame, so many are written a second). Reports processed fps per stream
 *    (the history must not change it beyond noise), appearances stored per second, drops, write
 *    time, and disk per stored appearance (database + pictures).
 * 2. Query latency over a synthetic history of --rows appearances (default 1M; --embedded of them
 *    with embeddings, default 50k, for search by face): list filters, cursor pages, counts, one
 *    appearance, search by face, a retention pass. Reports p50/p95 over --queries repetitions and
 *    the database bytes per row.
 *
 * Options: --seconds 15  --warmup 3  --streams 4  --rows 1000000  --embedded 50000  --queries 50  --skip-streams  --skip-queries
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultConfig } from '../src/config/schema.js';
import { historySchema, type HistoryConfig } from '../src/config/sections/history.js';
import { AppearanceHistory } from '../src/history/history.js';
import { HistoryMetrics } from '../src/history/metrics.js';
import { HistoryStore } from '../src/history/store.js';
import { Enroller } from '../src/index/enroll.js';
import { enrollDirectory } from '../src/index/enroll-dir.js';
import { Gallery } from '../src/index/gallery.js';
import { FrameSource } from '../src/ingest/stream.js';
import { createLogger } from '../src/log.js';
import { loadManifest } from '../src/models/manifest.js';
import { ModelRuntime } from '../src/models/runtime.js';
import { ModelStore } from '../src/models/store.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { arg, printTable, type Row, summarize, writeResult } from './report.js';

const SHARED = process.env.FACESTREAM_SHARED ?? path.resolve(PACKAGE_ROOT, '..', 'shared');
const CLIP = path.join(SHARED, 'data', 'video', 'hamilton_640x360.mp4');
const logger = createLogger('warn');

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? dirBytes(path.join(dir, e.name)) : fs.statSync(path.join(dir, e.name)).size;
  return n;
}

async function streamsWithHistory(args: string[]): Promise<{ rows: Row[]; raw: unknown[] }> {
  const seconds = Number(arg(args, 'seconds', '15'));
  const warmup = Number(arg(args, 'warmup', '3'));
  const n = Number(arg(args, 'streams', '4'));
  const config = defaultConfig();
  config.detector.minFaceSize = 40;
  const runtime = new ModelRuntime(new ModelStore(loadManifest(), process.env.FACESTREAM_MODELS_DIR ?? path.join(PACKAGE_ROOT, 'models')), config.runtime, logger);
  const analyzer = await FaceAnalyzer.create(runtime, config);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-bench-history-'));
  const gallery = await Gallery.open(path.join(tmp, 'gallery'), { modelId: analyzer.embedder.modelId, dimension: analyzer.embedder.dimension, config: config.gallery, defaultMinSimilarity: analyzer.embedder.defaultMinSimilarity, logger });
  await enrollDirectory(new Enroller(gallery, analyzer, config.gallery), path.join(SHARED, 'data', 'faces'), { allowLargest: true });
  const rows: Row[] = [];
  const raw: unknown[] = [];
  const modes: { name: string; history?: Partial<HistoryConfig> }[] = [
    { name: 'no history' },
    { name: 'history (defaults)', history: {} },
    { name: 'history (stress: ends after 1 missed frame)', history: { endAfterFrames: 1, minFrames: 1 } },
  ];
  for (const mode of modes) {
    const pipeline = new Pipeline(analyzer, config.pipeline, { gallery, logger });
    const dir = path.join(tmp, `history-${rows.length}`);
    const metrics = new HistoryMetrics();
    const history = mode.history
      ? await AppearanceHistory.open({ dir, config: historySchema.parse(mode.history), dimension: analyzer.embedder.dimension, modelId: analyzer.embedder.modelId, logger, metrics, endAfterFrames: mode.history.endAfterFrames ?? 26, clusterSimilarity: analyzer.embedder.defaultClusterSimilarity })
      : undefined;
    history?.attach(pipeline.bus);
    const sources: FrameSource[] = [];
    for (let i = 0; i < n; i++) {
      const id = `cam${i}`;
      const source = new FrameSource({ id, url: CLIP, realtime: true, loop: true, fps: 10 }, { config: config.ingest, logger });
      pipeline.addStream(id, { mode: 'live', minFaceSize: 40 });
      source.on('frame', (f) => pipeline.offer(f));
      sources.push(source);
    }
    sources.forEach((s) => s.start());
    await new Promise((r) => setTimeout(r, warmup * 1000));
    const processed = () => sources.reduce((a, _s, i) => a + pipeline.streamStats(`cam${i}`)!.processed, 0);
    const p0 = processed();
    const stored0 = history?.counts.stored ?? 0;
    const dropped0 = history?.counts.dropped ?? 0;
    let queueMax = 0;
    const sampler = setInterval(() => (queueMax = Math.max(queueMax, history?.queueDepth ?? 0)), 50);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const wall = (performance.now() - t0) / 1000;
    clearInterval(sampler);
    const p1 = processed();
    const stored = (history?.counts.stored ?? 0) - stored0;
    const dropped = (history?.counts.dropped ?? 0) - dropped0;
    await Promise.all(sources.map((s) => s.stop()));
    await pipeline.close();
    let perAppearance: number | null = null;
    let writeMs: unknown = null;
    if (history) {
      await history.close();
      const total = history.counts.stored;
      perAppearance = total ? dirBytes(dir) / total : null;
      const h = (await metrics.writeSeconds.get()).values;
      const count = h.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
      const sum = h.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0;
      writeMs = count ? (1000 * sum) / count : null;
    }
    const row: Row = {
      mode: mode.name,
      streams: n,
      'fps/stream': (p1 - p0) / wall / n,
      'stored/s': stored / wall,
      dropped,
      'queue max': queueMax,
      'write ms (mean)': writeMs as number | null,
      'KB/appearance': perAppearance === null ? null : perAppearance / 1024,
    };
    rows.push(row);
    raw.push(row);
    process.stderr.write(`done: ${mode.name}\n`);
  }
  await gallery.close();
  await runtime.close();
  fs.rmSync(tmp, { recursive: true, force: true });
  return { rows, raw };
}

/** Random unit vectors around a few thousand "people", so that HNSW sees clustered, face-like data. */
function syntheticEmbeddings(dim: number, people: number, seed = 1): (person: number) => Float32Array {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const centres = Array.from({ length: people }, () => Float32Array.from({ length: dim }, rnd));
  return (p) => {
    const c = centres[p % people];
    const v = Float32Array.from(c, (x) => x + 0.6 * rnd());
    let norm = 0;
    for (const x of v) norm += x * x;
    norm = Math.sqrt(norm);
    return v.map((x) => x / norm);
  };
}

async function queries(args: string[]): Promise<{ rows: Row[]; raw: unknown }> {
  const total = Number(arg(args, 'rows', '1000000'));
  const embedded = Math.min(total, Number(arg(args, 'embedded', '50000')));
  const repeats = Number(arg(args, 'queries', '50'));
  const dim = 512;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-bench-history-q-'));
  const store = new HistoryStore(tmp);
  const embedding = syntheticEmbeddings(dim, 2000);
  const streams = 8;
  const identities = 1000;
  const span = 30 * 86_400_000;
  const start = Date.now() - span;
  const fillStarted = performance.now();
  const batch = 20_000;
  for (let from = 1; from <= total; from += batch) {
    store.transaction(() => {
      for (let id = from; id < Math.min(total + 1, from + batch); id++) {
        const known = id % 3 !== 0;
        const person = id % 2000;
        const startedAt = start + Math.floor((id / total) * span);
        store.insert(
          {
            id,
            streamId: `cam${id % streams}`,
            identity: known ? { id: `person-${person % identities}`, name: `Person ${person % identities}` } : null,
            trackId: id,
            startedAt,
            endedAt: startedAt + 4000,
            bestSimilarity: known ? 0.6 : null,
            frames: 40,
            faceScore: 0.99,
            faceSize: 80,
            sharpness: 200,
            quality: 0.5,
            box: [100, 100, 180, 180],
            frameWidth: 1280,
            frameHeight: 720,
            bestAt: startedAt + 2000,
            cropFile: `x/${id}.crop.jpg`,
            snapshotFile: `x/${id}.snapshot.jpg`,
            bytes: 40_000,
            modelId: 'arcface-mbf-112',
            embedding: id > total - embedded ? embedding(person) : null,
          },
          null,
        );
      }
    });
  }
  const fillSeconds = (performance.now() - fillStarted) / 1000;
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  store.close();
  const dbBytes = dirBytes(tmp);
  process.stderr.write(`filled ${total} rows in ${fillSeconds.toFixed(1)} s\n`);

  const openStarted = performance.now();
  const history = await AppearanceHistory.open({ dir: tmp, config: historySchema.parse({ known: { days: 0, maxBytes: 0 }, unknown: { days: 0, maxBytes: 0 } }), dimension: dim, modelId: 'arcface-mbf-112', logger, metrics: new HistoryMetrics(), clusterSimilarity: 0.45 });
  const openSeconds = (performance.now() - openStarted) / 1000;
  process.stderr.write(`opened (search index of ${embedded} built) in ${openSeconds.toFixed(1)} s\n`);
  const mid = Math.floor(total / 2);
  const time = (fn: (i: number) => unknown) => {
    const ms: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const t = performance.now();
      fn(i);
      ms.push(performance.now() - t);
    }
    return summarize(ms);
  };
  const cases: [string, (i: number) => unknown][] = [
    ['newest 50', () => history.list({}, 50)],
    ['identity, newest 50', (i) => history.list({ identityId: `person-${(i * 37) % identities}` }, 50)],
    ['stream, newest 50', (i) => history.list({ streamId: `cam${i % streams}` }, 50)],
    ['unknown only, newest 50', () => history.list({ known: false }, 50)],
    ['stream + 1 h window', (i) => history.list({ streamId: `cam${i % streams}`, from: start + span / 2, to: start + span / 2 + 3_600_000 }, 50)],
    ['page at the middle (cursor)', (i) => history.list({ before: mid - i * 1000 }, 50)],
    ['identity + cursor deep', (i) => history.list({ identityId: `person-${i % identities}`, before: mid }, 50)],
    ['count one identity', (i) => history.count({ identityId: `person-${i % identities}` })],
    ['one appearance', (i) => history.get(1 + ((i * 7919) % total))],
    ['search by face (k 50)', (i) => history.searchByFace(embedding(i), { k: 50, minSimilarity: 0.3 })],
  ];
  const rows: Row[] = [];
  for (const [name, fn] of cases) {
    const s = time(fn);
    rows.push({ query: name, 'p50 ms': s.p50, 'p95 ms': s.p95, 'max ms': s.max });
  }
  // One retention pass deleting the oldest 1% (rows only: the synthetic rows have no files).
  const retentionStarted = performance.now();
  const cutoff = start + Math.floor(0.01 * span);
  let deleted = 0;
  for (let r = history.store.oldest(true, cutoff, 500); r.length; r = history.store.oldest(true, cutoff, 500)) deleted += history.store.delete(r.map((x) => x.id)).length;
  const retentionMs = performance.now() - retentionStarted;
  rows.push({ query: `retention: delete ${deleted} oldest`, 'p50 ms': retentionMs, 'p95 ms': null, 'max ms': null });
  await history.close();
  fs.rmSync(tmp, { recursive: true, force: true });
  return { rows, raw: { total, embedded, fillSeconds, openSeconds, dbBytes, dbBytesPerRow: dbBytes / total, queries: rows } };
}

export async function run(args: string[]): Promise<void> {
  const result: Record<string, unknown> = {};
  if (!args.includes('--skip-streams')) {
    const s = await streamsWithHistory(args);
    printTable('history while 4 camera-paced streams run (Hamilton clip, 10 fps each, gallery of the shared faces)', s.rows);
    result.streams = s.raw;
  }
  if (!args.includes('--skip-queries')) {
    const q = await queries(args);
    const r = q.raw as { total: number; embedded: number; fillSeconds: number; openSeconds: number; dbBytesPerRow: number };
    printTable(`queries over a synthetic history of ${r.total} appearances (${r.embedded} with embeddings); database ${(r.dbBytesPerRow).toFixed(0)} bytes per row, filled in ${r.fillSeconds.toFixed(1)} s, opened in ${r.openSeconds.toFixed(1)} s`, q.rows);
    result.queries = q.raw;
  }
  writeResult('history', result);
}
