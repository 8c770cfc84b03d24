/**
 * `npm run bench -- cluster`: cluster mode (docs/cluster.md) on this machine, against a real
 * PostgreSQL and nats-server started here (Debian's packages). Three set-ups run the same four
 * camera-paced streams (three Hamilton clips and the crowd clip at 640 px wide, looped):
 *
 * - embedded: one `facestream serve` process, no cluster (results reach the viewer in-process);
 * - 1 worker: one worker process and one api node (results reach the viewer through NATS);
 * - 2 workers: two worker processes and one api node.
 *
 * Reported per set-up: total processed fps (every worker's facestream_frames_processed_total),
 * capture-to-client latency at a WebSocket viewer of the api node (p50/p95/p99/max). With two
 * workers also: failover time after kill -9 of one worker (until every stream's frames reach the
 * viewer again), and gallery change-to-recognition delay: enrollment acknowledged by the api node
 * -> each worker's replica holds it (min/median/max), and -> first frame naming the person.
 *
 * Options: --seconds 20 (measured per set-up)  --warmup 5  --fps 10  --enrollments 5
 *          --failovers 2  --min-face 48  --threads 1 (onnxruntime threads per process)
 *          --setups embedded,1,2
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../src/paths.js';
import { startNats, type NatsServer } from '../test/helpers/nats.js';
import { startPostgres, type PostgresServer } from '../test/helpers/postgres.js';
import { FrameViewer, metricSum, pollUntil, startServeProcess, type ServeProcess } from '../test/helpers/serve-process.js';
import { arg, printTable, type Row, summarize, writeResult } from './report.js';

const KEY = 'bench-cluster-key-0123456789abcdef';
const AUTH = { authorization: `Bearer ${KEY}` };
const SHARED = process.env.FACESTREAM_SHARED ?? path.resolve(PACKAGE_ROOT, '..', 'shared');
const VIDEO = path.join(SHARED, 'data', 'video');
const FACES = path.join(SHARED, 'data', 'faces');
const CLI = path.join(PACKAGE_ROOT, 'bin', 'facestream.js');
const MODELS_DIR = process.env.FACESTREAM_MODELS_DIR ?? path.join(PACKAGE_ROOT, 'models');

interface Options {
  seconds: number;
  warmup: number;
  fps: number;
  enrollments: number;
  failovers: number;
  minFace: number;
  threads: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const until = <T>(what: string, fn: () => Promise<T | false | undefined> | T | false | undefined, ms: number, every = 100) => pollUntil(what, fn, ms, every);

async function request(url: string, method = 'GET', body?: unknown): Promise<{ status: number; text: string }> {
  const r = await fetch(url, { method, headers: { ...AUTH, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
  return { status: r.status, text: await r.text() };
}

const metricOf = async (node: ServeProcess, name: string) => metricSum((await request(`${node.url}/metrics`)).text, name);

function streams(o: Options) {
  return [
    { id: 'cam-1', url: path.join(VIDEO, 'hamilton_640x360.mp4') },
    { id: 'cam-2', url: path.join(VIDEO, 'hamilton_640x360.mp4') },
    { id: 'cam-3', url: path.join(VIDEO, 'hamilton_640x360.mp4') },
    { id: 'cam-4', url: path.join(VIDEO, 'crowd_1080p.mp4'), maxWidth: 640 },
  ].map((s) => ({ ...s, loop: true, realtime: true, fps: o.fps, minFaceSize: o.minFace }));
}

/** The identities enrolled for the delay measurement: one picture of each person in the shared faces. */
function enrollmentPictures(n: number): { id: string; file: string }[] {
  const people = fs.readdirSync(FACES).filter((d) => d !== 'lin_manuel_miranda').sort();
  return people.slice(0, n).map((p) => {
    const file = fs.readdirSync(path.join(FACES, p)).filter((f) => /^\d+\.(jpg|png)$/.test(f)).sort()[0];
    return { id: p, file: path.join(FACES, p, file) };
  });
}

interface Setup {
  name: string;
  workers: number;
}

export async function run(args: string[]): Promise<void> {
  const o: Options = {
    seconds: Number(arg(args, 'seconds', '20')),
    warmup: Number(arg(args, 'warmup', '5')),
    fps: Number(arg(args, 'fps', '10')),
    enrollments: Number(arg(args, 'enrollments', '5')),
    failovers: Number(arg(args, 'failovers', '2')),
    minFace: Number(arg(args, 'min-face', '48')),
    threads: Number(arg(args, 'threads', '1')),
  };
  const setups: Setup[] = arg(args, 'setups', 'embedded,1,2')
    .split(',')
    .map((s) => (s === 'embedded' ? { name: 'embedded (in-process)', workers: 0 } : { name: `${s} worker${s === '1' ? '' : 's'} + api (NATS)`, workers: Number(s) }));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-bench-cluster-'));
  let pg: PostgresServer | undefined;
  let nats: NatsServer | undefined;
  const running: ServeProcess[] = [];
  const rows: Row[] = [];
  const failoverMs: number[] = [];
  const replicaMs: number[] = [];
  const recognitionMs: number[] = [];
  const raw: Record<string, unknown> = { options: o };
  try {
    if (setups.some((s) => s.workers > 0)) [pg, nats] = await Promise.all([startPostgres(), startNats()]);
    for (const [index, setup] of setups.entries()) {
      process.stderr.write(`cluster bench: ${setup.name}\n`);
      const db = setup.workers > 0 ? await pg!.createDatabase(`bench_${index}`) : undefined;
      const config = (id: string, role?: 'worker' | 'api') => ({
        logLevel: 'warn',
        runtime: { intraOpThreads: o.threads },
        attributes: { enabled: false },
        history: { enabled: false },
        server: { host: '127.0.0.1', port: 0, dataDir: path.join(tmp, `${index}-${id}`, 'data'), auth: { keys: [KEY] }, sources: { allowedDirs: [VIDEO] } },
        gallery: { dir: path.join(tmp, `${index}-${id}`, 'gallery') },
        ...(role ? { cluster: { postgres: db!, nats: nats!.url, role, nodeId: id, prefix: `bench${index}` } } : {}),
      });
      const start = async (id: string, role?: 'worker' | 'api') => {
        const p = await startServeProcess({ id, cli: CLI, configFile: path.join(tmp, `${index}-${id}.json`), config: config(id, role), modelsDir: MODELS_DIR });
        running.push(p);
        return p;
      };
      const workers: ServeProcess[] = [];
      for (let w = 1; w <= setup.workers; w++) workers.push(await start(`w${w}`, 'worker'));
      const front = await start(setup.workers > 0 ? 'api' : 'single', setup.workers > 0 ? 'api' : undefined);
      const processors = setup.workers > 0 ? workers : [front];
      for (const s of streams(o)) {
        const r = await request(`${front.url}/api/v1/streams`, 'POST', s);
        if (r.status !== 201) throw new Error(`creating ${s.id}: ${r.status} ${r.text}`);
      }
      const viewer = new FrameViewer(front.url, KEY);
      const t0 = Date.now();
      await until('frames of all four streams at the viewer', () => viewer.streamsSince(t0).size === 4, 120_000);
      await sleep(o.warmup * 1000);
      const processed = async () => (await Promise.all(processors.map((p) => metricOf(p, 'facestream_frames_processed_total')))).reduce((a, b) => a + b, 0);
      const p0 = await processed();
      const m0 = Date.now();
      await sleep(o.seconds * 1000);
      const p1 = await processed();
      const m1 = Date.now();
      const latency = summarize(viewer.frames.filter((f) => f.at >= m0 && f.at <= m1).map((f) => f.at - f.capturedAt));
      rows.push({ setup: setup.name, workers: setup.workers || 1, 'fps total': (p1 - p0) / ((m1 - m0) / 1000), 'fps asked': 4 * o.fps, 'lat p50': latency.p50, 'lat p95': latency.p95, 'lat p99': latency.p99, 'lat max': latency.max, frames: latency.n });
      raw[setup.name] = { processed: p1 - p0, seconds: (m1 - m0) / 1000, latency };

      if (setup.workers >= 2) {
        // Gallery change -> each worker's replica holds it, and -> first frame naming the person.
        let expected = await metricOf(workers[0], 'facestream_gallery_identities');
        for (const { id, file } of enrollmentPictures(o.enrollments)) {
          const r = await request(`${front.url}/api/v1/enroll`, 'POST', { id, name: id, image: fs.readFileSync(file).toString('base64') });
          const acked = Date.now();
          if (r.status !== 201) {
            process.stderr.write(`enrollment of ${id} refused (${r.status}); skipped\n`);
            continue;
          }
          expected++;
          await Promise.all(
            workers.map(async (w) => {
              await until(`${w.id}'s replica to hold ${id}`, async () => (await metricOf(w, 'facestream_gallery_identities')) >= expected, 10_000, 5);
              replicaMs.push(Date.now() - acked);
            }),
          );
        }
        const lin = fs.readFileSync(path.join(FACES, 'lin_manuel_miranda', '1.png')).toString('base64');
        const r = await request(`${front.url}/api/v1/enroll`, 'POST', { id: 'lin', name: 'Lin-Manuel Miranda', image: lin });
        const acked = Date.now();
        if (r.status === 201) {
          const seen = await until('a frame naming lin', () => viewer.frames.find((f) => f.at >= acked && f.names.includes('lin')), 30_000).catch(() => undefined);
          if (seen) recognitionMs.push(seen.at - acked);
        }

        // Failover: kill -9 the last worker, time until every stream reaches the viewer again, start it again.
        for (let f = 0; f < o.failovers; f++) {
          const victim = workers[workers.length - 1];
          const killedAt = Date.now();
          await victim.kill9();
          running.splice(running.indexOf(victim), 1);
          await until('all four streams after the kill', () => viewer.streamsSince(killedAt + 1000).size === 4, 60_000, 20);
          failoverMs.push(Date.now() - killedAt);
          workers[workers.length - 1] = await start(victim.id, 'worker');
          // Let the streams spread again before the next kill.
          await until('leases spread again', async () => (await metricOf(workers[workers.length - 1], 'facestream_cluster_leases_held')) >= 1, 60_000, 250);
          await sleep(3000);
        }
      }
      viewer.close();
      for (const p of [...running]) await p.kill9();
      running.length = 0;
    }
  } finally {
    for (const p of running) await p.kill9();
    await nats?.stop();
    await pg?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  printTable(`Cluster: four streams at ${o.fps} fps, ${o.seconds} s each (latency: capture to the WebSocket viewer, ms)`, rows);
  const extra: Row[] = [];
  const add = (what: string, values: number[]) => {
    if (!values.length) return;
    const s = summarize(values);
    extra.push({ measure: what, n: s.n, min: s.min, median: s.p50, max: s.max });
  };
  add('failover after kill -9 (ms)', failoverMs);
  add('enrollment ack -> worker replica (ms)', replicaMs);
  add('enrollment ack -> first frame naming (ms)', recognitionMs);
  printTable('Two workers: failover and gallery change delays', extra);
  writeResult('cluster', { rows, delays: extra, failoverMs, replicaMs, recognitionMs, raw });
}
