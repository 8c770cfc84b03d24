import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SourceSpec } from '../src/ingest/source.js';
import type { StreamState } from '../src/ingest/stream.js';
import { dataFile, outputDir } from './helpers/paths.js';
import { HttpTestServer } from './helpers/http-server.js';
import { ffmpegProcesses, ingestConfig, recordedSource, waitFor, type Recorded } from './helpers/ingest.js';
import { freePort, RtspTestServer } from './helpers/rtsp-server.js';

const HAMILTON = dataFile('video', 'hamilton_640x360.mp4');

let dir: string;
let rtsp: RtspTestServer;
let http: HttpTestServer;
let silent: net.Server;
const silentSockets = new Set<net.Socket>();

/** A copy of the clip with two stretches of its video data overwritten by noise (deterministic). */
function corruptCopy(to: string): void {
  const bytes = fs.readFileSync(HAMILTON);
  let x = 12345;
  for (const start of [Math.floor(bytes.length * 0.3), Math.floor(bytes.length * 0.6)]) {
    for (let i = start; i < start + 20_000; i++) {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      bytes[i] = (x >> 16) & 0xff;
    }
  }
  fs.writeFileSync(to, bytes);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-bad-'));
  fs.writeFileSync(path.join(dir, 'truncated.mp4'), fs.readFileSync(HAMILTON).subarray(0, 100_000));
  corruptCopy(path.join(dir, 'corrupt-middle.mp4'));
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=1', '-c:a', 'aac', path.join(dir, 'audio-only.m4a')]);
  rtsp = await RtspTestServer.start(HAMILTON);
  http = await HttpTestServer.start(dir);
  // Accepts connections and never says a word: a hung camera or a wrong service behind the port.
  silent = net.createServer((s) => {
    silentSockets.add(s);
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  for (const s of silentSockets) s.destroy();
  await new Promise<void>((resolve) => silent?.close(() => resolve()));
  await rtsp?.close();
  await http?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

interface Case {
  spec: SourceSpec;
  state: StreamState;
  code?: string;
  /** A state the stream must pass through first. */
  via?: StreamState;
}

describe('bad sources', () => {
  it('each bad source gets a clear state and error code while good streams beside it keep running', async () => {
    const closedPort = await freePort();
    const silentPort = (silent.address() as net.AddressInfo).port;
    expect(fs.existsSync('/dev/video9')).toBe(false);
    const cases: Case[] = [
      { spec: { id: 'missing-file', url: path.join(dir, 'no-such-file.mp4') }, state: 'failed', code: 'NOT_FOUND' },
      { spec: { id: 'text-file', url: dataFile('README.md') }, state: 'failed', code: 'INVALID_DATA' },
      { spec: { id: 'audio-only', url: path.join(dir, 'audio-only.m4a') }, state: 'failed', code: 'NO_VIDEO' },
      { spec: { id: 'truncated', url: path.join(dir, 'truncated.mp4') }, state: 'failed', code: 'INVALID_DATA' },
      { spec: { id: 'bad-lavfi', url: 'lavfi:nosuchsource=size=64x48' }, state: 'failed', code: 'INVALID_SOURCE' },
      { spec: { id: 'no-device', url: '/dev/video9' }, state: 'failed', code: 'NOT_FOUND' },
      { spec: { id: 'rtsp-404', url: rtsp.url('no/such/path') }, state: 'failed', code: 'NOT_FOUND' },
      { spec: { id: 'http-404', url: http.url('no-such-playlist.m3u8') }, state: 'failed', code: 'NOT_FOUND' },
      // Transient-looking network errors are retried with backoff; maxAttempts ends the test's wait.
      { spec: { id: 'refused', url: `rtsp://127.0.0.1:${closedPort}/cam` }, via: 'reconnecting', state: 'failed', code: 'CONNECTION_REFUSED' },
      { spec: { id: 'silent-host', url: `rtsp://127.0.0.1:${silentPort}/cam` }, via: 'reconnecting', state: 'failed', code: 'TIMEOUT' },
      // A stream that ends is over, not an error: no reconnect loop.
      { spec: { id: 'ends', url: 'lavfi:testsrc2=size=160x120:rate=25:duration=1' }, state: 'stopped' },
      // Corrupt data inside a file: the decoder conceals it and the stream goes on to its end.
      { spec: { id: 'corrupt-middle', url: path.join(dir, 'corrupt-middle.mp4'), realtime: false }, state: 'stopped' },
    ];
    const config = ingestConfig({ ioTimeoutMs: 1500, reconnect: { initialDelayMs: 100, maxDelayMs: 400, maxAttempts: 2 } });
    const healthy = [
      recordedSource({ id: 'good-lavfi', url: 'lavfi:testsrc2=size=320x240:rate=25' }),
      recordedSource({ id: 'good-rtsp', url: rtsp.url('clip'), maxWidth: 320 }),
    ];
    const bad = new Map<string, Recorded>();
    for (const c of cases) bad.set(c.spec.id, recordedSource(c.spec, config, (f) => expect(f.data.length).toBe(f.width * f.height * 3)));
    const all = [...healthy, ...bad.values()];
    try {
      for (const r of healthy) r.source.start();
      await waitFor('the healthy streams to go live', () => healthy.every((r) => r.source.state === 'live'), 20_000);
      const t0 = Date.now();
      for (const r of bad.values()) r.source.start();
      await waitFor(
        'every bad source to settle',
        () => cases.every((c) => bad.get(c.spec.id)!.source.state === c.state),
        30_000,
      );
      const settledMs = Date.now() - t0;
      // What a person sees for each source: left in test-output for review.
      const report = [...bad.values()].map((r) => ({ id: r.source.id, source: r.source.source.label, states: r.states.map((s) => s.state), error: r.source.lastError, stderrTail: r.source.stderrTail.slice(-4) }));
      fs.writeFileSync(path.join(outputDir('ingest'), 'bad-sources.json'), JSON.stringify(report, null, 2));

      const outcome = (c: Case) => {
        const r = bad.get(c.spec.id)!;
        return { id: c.spec.id, state: r.source.state, code: r.source.lastError?.code, via: c.via && r.states.some((s) => s.state === c.via) ? c.via : undefined };
      };
      expect(cases.map(outcome)).toEqual(cases.map((c) => ({ id: c.spec.id, state: c.state, code: c.code, via: c.via })));
      for (const c of cases.filter((c) => c.code)) {
        const r = bad.get(c.spec.id)!;
        expect(r.source.lastError!.message.length, `${c.spec.id} has a readable message`).toBeGreaterThan(10);
        expect(r.frames, `${c.spec.id} delivered no frame`).toHaveLength(0);
      }
      // The refused source retried with backoff before giving up.
      expect(bad.get('refused')!.states.filter((s) => s.state === 'starting')).toHaveLength(2);

      const ends = bad.get('ends')!;
      expect(ends.frames).toHaveLength(25);
      expect(ends.ended).toBe(1);
      expect(ends.source.lastError).toBeUndefined();

      const corrupt = bad.get('corrupt-middle')!;
      expect(corrupt.ended).toBe(1);
      expect(corrupt.frames.length).toBeGreaterThan(200);
      expect(corrupt.source.stats.decodeErrors).toBeGreaterThan(0);

      // The good streams never noticed: still live, never restarted, frames all along.
      for (const r of healthy) {
        expect(r.source.state, r.source.id).toBe('live');
        expect(r.source.stats.restarts, r.source.id).toBe(0);
        const during = r.frames.filter((f) => f.capturedAt >= t0);
        expect(during.length, `${r.source.id} frames while the bad ones ran`).toBeGreaterThan((settledMs / 1000) * 25 * 0.6);
      }
    } finally {
      await Promise.all(all.map((r) => r.source.stop()));
    }
    expect(ffmpegProcesses(dir)).toEqual([]);
    expect(ffmpegProcesses(`127.0.0.1:${rtsp.port}`)).toEqual([]);
  });
});
