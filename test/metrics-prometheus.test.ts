import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { REPO, dataFile } from './helpers/paths.js';
import { sharedAnalyzer, startTestServer, TestClient, waitFor, type TestServer } from './helpers/server.js';

const DASHBOARD = path.join(REPO, 'grafana', 'dashboards', 'facestream.json');

interface Panel {
  title: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** Grafana's variables as Prometheus needs them: every stream, a rate window that spans several 1 s scrapes. */
function substitute(expr: string): string {
  return expr.replaceAll('$__rate_interval', '15s').replaceAll('$stream', '.*');
}

describe('Prometheus metrics and the Grafana dashboard (real Prometheus scraping a running server)', () => {
  let analyzer: FaceAnalyzer;
  let server: TestServer;
  let prometheus: ChildProcess | undefined;
  let promUrl: string;
  let viewer: TestClient;
  const promLog: string[] = [];

  beforeAll(async () => {
    analyzer = await sharedAnalyzer();
    server = await startTestServer({ analyzer });
    await server.ctx.enroller.enrollPictures({ id: 'lin', name: 'Lin-Manuel Miranda' }, [{ name: '1.png', data: fs.readFileSync(dataFile('faces', 'lin_manuel_miranda', '1.png')) }]);
    const r = await server.app.inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { id: 'hamilton', url: dataFile('video', 'hamilton_640x360.mp4'), loop: true, fps: 15, minFaceSize: 40 } });
    expect(r.statusCode).toBe(201);
    viewer = new TestClient(`${server.wsUrl}/api/v1/live?jpeg=true&fps=2&width=320`, { headers: server.readAuth });
    await viewer.opened();

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-prometheus-'));
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    const target = new URL(server.url).host;
    fs.writeFileSync(
      path.join(dir, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: facestream\n    static_configs:\n      - targets: ['${target}']\n`,
    );
    prometheus = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
    prometheus.stderr!.on('data', (d: Buffer) => promLog.push(d.toString()));
    await waitFor(async () => {
      try {
        const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent('up{job="facestream"}')}`);
        const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
        return body.data.result[0]?.value[1] === '1';
      } catch {
        return false;
      }
    }, 30_000, 'Prometheus to scrape the server');
  });
  afterAll(async () => {
    viewer?.close();
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((r) => prometheus!.once('exit', r));
      prometheus.kill('SIGTERM');
      await exited;
    }
    await server?.close();
    await analyzer?.runtime.close();
  });

  it('exposes metrics that follow the Prometheus conventions and carry no secrets', async () => {
    const text = (await server.app.inject({ url: '/metrics' })).body;
    for (const name of [
      'facestream_stage_seconds_bucket',
      'facestream_frames_received_total',
      'facestream_frames_processed_total',
      'facestream_frames_dropped_total',
      'facestream_stream_fps',
      'facestream_stream_state',
      'facestream_ffmpeg_restarts_total',
      'facestream_batch_size_bucket',
      'facestream_queue_depth',
      'facestream_ws_clients',
      'facestream_ws_messages_dropped_total',
      'facestream_gallery_identities',
      'facestream_gallery_templates',
      'facestream_inference_errors_total',
      'facestream_detection_runs_total',
      'facestream_detection_searched_frames_total',
      'facestream_cores_busy',
      'facestream_cores_available',
      'process_cpu_seconds_total',
      'nodejs_eventloop_lag_seconds',
      'nodejs_eventloop_lag_p99_seconds',
    ]) {
      expect(text, name).toMatch(new RegExp(`^${name}[{ ]`, 'm'));
    }
    expect(text).toMatch(/^facestream_frames_dropped_total\{stream="hamilton",reason="too-old"\} 0$/m);
    for (const kind of ['full', 'motion', 'refine']) expect(text).toMatch(new RegExp(`^facestream_detection_runs_total\\{stream="hamilton",kind="${kind}"\\} \\d+$`, 'm'));
    expect(text).not.toContain(dataFile('video'));
    // promtool (Prometheus's own linter) finds nothing to complain about in our metrics. (It does
    // flag prom-client's default nodejs_active_*_total gauges, which are not ours to rename.)
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    const complaints = `${lint.stdout}${lint.stderr}`.split('\n').filter((l) => l.trim());
    expect(complaints.filter((l) => !/^nodejs_active_\w+_total non-counter/.test(l))).toEqual([]);
    const config = spawnSync('promtool', ['check', 'config', path.join(REPO, 'grafana', 'prometheus.yml')], { encoding: 'utf8' });
    expect(config.status, config.stdout + config.stderr).toBe(0);
  });

  it('answers every PromQL expression of the Grafana dashboard with data', async () => {
    // A picture request (decode stage) and live frames to the WebSocket client (capture-to-push).
    const picture = fs.readFileSync(dataFile('faces', 'barack_obama', '5.jpg')).toString('base64');
    expect((await server.app.inject({ method: 'POST', url: '/api/v1/detect', headers: server.auth, payload: { image: picture } })).statusCode).toBe(200);
    await viewer.until(() => viewer.of('frame').length + viewer.binaries.length > 20, 20_000, 'frames at the client');
    // Enough scrapes for 15 s rate windows to hold several samples each.
    await new Promise((r) => setTimeout(r, 8000));

    const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[]; templating: { list: { name: string; definition?: string }[] } };
    const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
    const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
    expect(exprs.length).toBeGreaterThan(15);
    const empty: string[] = [];
    // Series that exist only in cluster mode (test/cluster.test.ts checks their node label); here they must parse.
    const clusterOnly = new Set(['Stream leases held per node', 'Cluster messages dropped per node']);
    for (const { panel, expr } of exprs) {
      const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(substitute(expr))}`);
      const body = (await res.json()) as { status: string; error?: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
      expect(body.status, `${panel}: ${expr}: ${body.error}`).toBe('success');
      const values = body.data.result.map((r) => Number(r.value[1]));
      if (!values.some((v) => Number.isFinite(v)) && !clusterOnly.has(panel)) empty.push(`${panel}: ${expr} -> ${JSON.stringify(body.data.result)}`);
    }
    expect(empty).toEqual([]);
    // The panels of issue 8 (detection by kind, share searched, cores busy, event-loop lag) are there and were among those queried.
    const titles = panels.map((p) => p.title);
    for (const title of ['Detection runs per second by kind', 'Share of each frame searched', 'Cores busy', 'Event-loop lag (p99 / p50 / max)']) expect(titles).toContain(title);
    // The per-node row (cluster mode, issue 13): every panel of it splits by the node label.
    const rowAt = dashboard.panels.findIndex((p) => p.title === 'Per node (cluster mode)');
    expect(rowAt).toBeGreaterThan(0);
    const nodePanels = dashboard.panels.slice(rowAt + 1).filter((p) => (p as { type?: string }).type !== 'row');
    expect(nodePanels.length).toBeGreaterThanOrEqual(6);
    for (const p of nodePanels) for (const t of p.targets ?? []) expect(t.expr, p.title).toMatch(/by \([^)]*\bnode\b/);
    const query = async (expr: string) => {
      const body = (await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`)).json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
      return body.data.result;
    };
    const kinds = await query('facestream_detection_runs_total{stream="hamilton"}');
    expect(kinds.map((r) => r.metric.kind).sort()).toEqual(['full', 'motion', 'refine']);
    // The pipeline reports its runs: at least the first keyframe's full run, and some share of the picture searched.
    expect(Number(kinds.find((r) => r.metric.kind === 'full')!.value[1])).toBeGreaterThanOrEqual(1);
    const [share] = await query('sum(rate(facestream_detection_searched_frames_total{stream="hamilton"}[15s])) / sum(rate(facestream_frames_processed_total{stream="hamilton"}[15s]))');
    expect(Number(share.value[1])).toBeGreaterThan(0);
    // A running stream keeps the process busy, within the cores it has.
    const [busy] = await query('facestream_cores_busy');
    expect(Number(busy.value[1])).toBeGreaterThan(0.05);
    expect(Number(busy.value[1])).toBeLessThanOrEqual(os.availableParallelism() + 0.5);
    const [p99] = await query('nodejs_eventloop_lag_p99_seconds');
    expect(Number(p99.value[1])).toBeGreaterThan(0);

    // The stream variable's query lists the running stream.
    const labels = (await (await fetch(`${promUrl}/api/v1/label/stream/values?match[]=facestream_frames_processed_total`)).json()) as { data: string[] };
    expect(labels.data).toContain('hamilton');
    const fps = (await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent('sum(rate(facestream_frames_processed_total{stream="hamilton"}[15s]))')}`)).json()) as { data: { result: { value: [number, string] }[] } };
    expect(Number(fps.data.result[0].value[1])).toBeGreaterThan(1);
    expect(promLog.join('')).not.toMatch(/level=error/);
  });
});
