import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { historySchema } from '../src/config/sections/history.js';
import { AppearanceHistory } from '../src/history/history.js';
import { HistoryMetrics } from '../src/history/metrics.js';
import { createLogger } from '../src/log.js';
import { CLI, DATA, MODELS_DIR } from './helpers/paths.js';

/**
 * kill -9 while the history writes: `facestream serve` runs the Hamilton clip with appearances
 * ending after one missed frame (many writes a second), a WebSocket client collects the
 * appearances the server announced as stored, and the process is killed at a random moment
 * after a few. The history must then open, hold every announced appearance, have every row's
 * pictures complete (valid JPEGs) and no stray or temporary file, and answer searches.
 */

const TRIALS = 2;
const KEY = 'crash-test-key-0123456789abcdef';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-history-crash-'));
const historyDir = path.join(tmp, 'data', 'history');
const configFile = path.join(tmp, 'config.json');
fs.writeFileSync(
  configFile,
  JSON.stringify({
    server: { host: '127.0.0.1', port: 0, dataDir: path.join(tmp, 'data'), auth: { keys: [KEY] }, sources: { allowedDirs: [path.join(DATA, 'video')] } },
    gallery: { dir: path.join(tmp, 'gallery') },
    history: { endAfterFrames: 1, endAfterMs: 300, minFrames: 1 },
  }),
);

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Starts the server, makes sure the looping stream runs, collects "stored" announcements, kills the process after `after` of them plus a random delay. */
function runAndKill(after: number): Promise<{ acked: number[]; killed: boolean; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'serve', '--config', configFile], {
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FACESTREAM_'))), FACESTREAM_MODELS_DIR: MODELS_DIR, FACESTREAM_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked: number[] = [];
    let stderr = '';
    let ws: WebSocket | undefined;
    let timer: NodeJS.Timeout | undefined;
    const giveUp = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    readline.createInterface({ input: child.stdout }).on('line', async (line) => {
      const m = /viewer:\s+(http:\/\/[^/\s]+)\//.exec(line);
      if (!m) return;
      const url = m[1];
      const auth = { authorization: `Bearer ${KEY}` };
      await fetch(`${url}/api/v1/streams`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'hamilton', url: path.join(DATA, 'video', 'hamilton_640x360.mp4'), loop: true, realtime: true, fps: 15, minFaceSize: 40 }),
      }).catch(() => {}); // 409 after the first trial: the stream is restored from the data directory
      ws = new WebSocket(`${url.replace('http', 'ws')}/api/v1/live`, ['facestream.v1'], { headers: auth });
      ws.on('error', () => {});
      ws.on('message', (data, binary) => {
        if (binary) return;
        const msg = JSON.parse(String(data)) as { type: string; event?: string; appearance?: { id: number } };
        if (msg.type !== 'history' || msg.event !== 'stored') return;
        acked.push(msg.appearance!.id);
        if (acked.length >= after) timer ??= setTimeout(() => child.kill('SIGKILL'), Math.random() * 400);
      });
    });
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      clearTimeout(giveUp);
      ws?.terminate();
      resolve({ acked, killed: signal === 'SIGKILL', stderr });
    });
  });
}

describe('history crash safety', () => {
  it(`stays readable and keeps every announced appearance through ${TRIALS} kill -9 during writes`, async () => {
    const announced: number[] = [];
    for (let trial = 0; trial < TRIALS; trial++) {
      const { acked, killed, stderr } = await runAndKill(4 + trial * 3);
      expect(killed, stderr).toBe(true);
      expect(acked.length, stderr).toBeGreaterThanOrEqual(4);
      announced.push(...acked);

      const history = await AppearanceHistory.open({ dir: historyDir, config: historySchema.parse({}), dimension: 512, modelId: 'arcface-mbf-112', logger: createLogger('silent'), metrics: new HistoryMetrics(), clusterSimilarity: 0.45 });
      try {
        const { appearances } = history.list({}, 100_000);
        const ids = new Set(appearances.map((a) => a.id));
        for (const id of announced) expect(ids.has(id), `trial ${trial}: announced appearance ${id}`).toBe(true);
        // Every row's pictures are whole; nothing else is left in the pictures folder.
        const onDisk: string[] = [];
        for (const day of fs.readdirSync(path.join(historyDir, 'pictures'))) for (const f of fs.readdirSync(path.join(historyDir, 'pictures', day))) onDisk.push(`${day}/${f}`);
        expect(onDisk.filter((f) => f.endsWith('.tmp'))).toEqual([]);
        expect(onDisk.length).toBe(appearances.length + appearances.filter((a) => a.snapshotUrl).length);
        for (const a of appearances.slice(0, 12)) {
          const crop = await history.picture(a.id, 'crop');
          expect((await sharp(crop).metadata()).format).toBe('jpeg');
          await sharp(crop).raw().toBuffer(); // decodes to the end: not truncated
        }
        // The search index (saved or rebuilt) finds each stored embedding among its nearest neighbours
        // (the looping clip repeats frames, so another appearance may hold the very same embedding).
        const withEmbedding = appearances.filter((a) => a.hasEmbedding).slice(0, 10);
        for (const a of withEmbedding) {
          const v = history.store.embedding(a.id, 512)!;
          expect(history.searchByFace(v, { k: 10, minSimilarity: 0.999 }).map((h) => h.id)).toContain(a.id);
        }
        console.log(`trial ${trial}: ${acked.length} announced this run, ${appearances.length} stored in all, ${withEmbedding.length} checked in the search index`);
      } finally {
        await history.close();
      }
    }
  }, 200_000);
});
