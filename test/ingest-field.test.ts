import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconnectSchema } from '../src/config/sections/ingest.js';
import { attemptsAfterConnection, backoffDelay } from '../src/ingest/backoff.js';
import { FrameCadence } from '../src/ingest/cadence.js';
import type { Frame } from '../src/ingest/frame.js';
import { runCli } from './helpers/cli.js';
import { HttpTestServer } from './helpers/http-server.js';
import { ingestConfig, recordedSource, waitFor, type Recorded } from './helpers/ingest.js';
import { dataFile } from './helpers/paths.js';

/** Videos and cameras from the field: resolution changes, slow and flapping cameras, error codes that say what happened. */

const HAMILTON = dataFile('video', 'hamilton_640x360.mp4');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-ingest-field-'));
const open: Recorded[] = [];
const track = (r: Recorded) => (open.push(r), r);
const stateCodes = (r: Recorded) => r.states.map((s) => `${s.state}${s.error ? `:${s.error.code}` : ''}`);

afterAll(async () => {
  await Promise.all(open.map((r) => r.source.stop()));
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('timeouts follow the camera, backoff grows across short-lived connections (injected times)', () => {
  it('FrameCadence: a frame every 8 s stretches the 5 s timeout to 24 s; a connection that ended waiting counts as a lower bound', () => {
    const c = new FrameCadence();
    expect(c.timeoutMs(5000)).toBe(5000);
    c.frame(1_000, false);
    expect(c.intervalMs).toBeUndefined();
    c.endedWaiting(5_000); // the first connection died waiting 5 s for its second frame
    expect(c.timeoutMs(5000)).toBe(15_000);
    for (let t = 20_000; t <= 60_000; t += 8_000) c.frame(t, t > 20_000);
    expect(c.intervalMs).toBe(8_000);
    expect(c.timeoutMs(5000)).toBe(24_000);
    // A fast camera keeps the configured timeout; one late frame does not move the median.
    const fast = new FrameCadence();
    for (let i = 0; i < 20; i++) fast.frame(i * 40 + (i === 10 ? 900 : 0), i > 0);
    expect(fast.timeoutMs(5000)).toBe(5000);
    // A fast camera that dropped once (the connection ended 5 s after its last frame) is back to 5 s as soon as frames flow again.
    fast.endedWaiting(5_000);
    expect(fast.timeoutMs(5000)).toBe(15_000);
    fast.frame(100_000, false);
    fast.frame(100_040, true);
    expect(fast.timeoutMs(5000)).toBe(5000);
  });

  it('attemptsAfterConnection: connections of one frame count as failures, so the backoff grows; a stable one resets it', () => {
    const cfg = reconnectSchema.parse({});
    let attempts = 0;
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      attempts = attemptsAfterConnection(attempts, { frames: 1, firstFrameAt: 1000, endedAt: 1200 }, cfg.stableAfterMs);
      delays.push(backoffDelay(attempts, cfg, () => 0.5));
    }
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000]);
    expect(attemptsAfterConnection(attempts, { frames: 900, firstFrameAt: 0, endedAt: 31_000 }, cfg.stableAfterMs)).toBe(1);
    expect(attemptsAfterConnection(attempts, { frames: 0, endedAt: 31_000 }, cfg.stableAfterMs)).toBe(attempts + 1);
  });
});

describe('a resolution change mid-stream (a camera switching profile)', () => {
  it('reads every frame whole at its real size and marks the change on the first frame at the new size', async () => {
    const parts: [string, number, number][] = [
      ['small.ts', 320, 180],
      ['large.ts', 640, 360],
      ['small2.ts', 320, 180],
    ];
    for (const [name, w, h] of parts) execFileSync('ffmpeg', ['-v', 'error', '-ss', '4', '-t', '1', '-i', HAMILTON, '-an', '-vf', `scale=${w}:${h}`, '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10', '-f', 'mpegts', path.join(tmp, name)]);
    const joined = path.join(tmp, 'profiles.ts');
    fs.writeFileSync(joined, Buffer.concat(parts.map(([name]) => fs.readFileSync(path.join(tmp, name)))));
    // What each part decodes to on its own (rgb24 frames).
    const reference = parts.map(([name, w, h]) => {
      const raw = spawnSync('ffmpeg', ['-v', 'error', '-i', path.join(tmp, name), '-vf', `scale=${w}:${h}:flags=area`, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 1 << 28 }).stdout;
      return { w, h, frames: raw.length / (w * h * 3), raw };
    });
    const frames: Frame[] = [];
    const resizes: unknown[] = [];
    const rec = track(recordedSource({ id: 'profiles', url: joined, realtime: false }, ingestConfig(), (f) => frames.push(f)));
    rec.source.on('resize', (e) => resizes.push(e));
    rec.source.start();
    await waitFor('the end of the file', () => rec.ended > 0, 30_000);

    expect(frames.length).toBe(reference.reduce((n, r) => n + r.frames, 0));
    let k = 0;
    for (const [p, ref] of reference.entries()) {
      for (let i = 0; i < ref.frames; i++, k++) {
        const f = frames[k];
        expect(`${f.width}x${f.height}`).toBe(`${ref.w}x${ref.h}`);
        expect(f.data.length).toBe(ref.w * ref.h * 3);
        // The same picture as the part decoded alone (not a garbled cut of another size).
        const bytes = ref.w * ref.h * 3;
        let diff = 0;
        for (let b = 0; b < bytes; b += 97) diff += Math.abs(f.data[b] - ref.raw[i * bytes + b]);
        expect(diff / (bytes / 97), `part ${p} frame ${i}`).toBeLessThan(6);
        expect(f.sizeChangedFrom).toEqual(i === 0 && p > 0 ? { width: reference[p - 1].w, height: reference[p - 1].h } : undefined);
      }
    }
    expect(resizes).toEqual([
      { from: { width: 320, height: 180 }, to: { width: 640, height: 360 }, seq: reference[0].frames },
      { from: { width: 640, height: 360 }, to: { width: 320, height: 180 }, seq: reference[0].frames + reference[1].frames },
    ]);
  });
});

describe('cameras that are slow or flap (real ffmpeg)', () => {
  let server: HttpTestServer;
  beforeAll(async () => {
    execFileSync('ffmpeg', ['-v', 'error', '-ss', '4', '-i', HAMILTON, '-an', '-frames:v', '40', '-vf', 'scale=160:-2', '-c:v', 'mjpeg', '-q:v', '8', '-f', 'mpjpeg', path.join(tmp, 'slow.mjpeg')]);
    server = await HttpTestServer.start(tmp, 1 / 1.5); // one frame every 1.5 s
  });
  afterAll(() => server?.close());

  it('a camera sending a frame every 1.5 s is not stalled by a 600 ms watchdog once its cadence is known (ffmpeg I/O timeout 2.5 s)', async () => {
    const rec = track(recordedSource({ id: 'slow', url: server.url('slow.mjpeg') }, ingestConfig({ stallTimeoutMs: 600, ioTimeoutMs: 2500, reconnect: { initialDelayMs: 100, jitter: 0 } })));
    rec.source.start();
    // Bounds for a loaded machine: at most two restarts while it learns, then frames keep coming on one connection.
    await waitFor('7 frames', () => rec.frames.length >= 7, 40_000);
    expect(rec.source.stats.restarts).toBeLessThanOrEqual(2);
    expect(rec.source.stats.frameIntervalMs).toBeGreaterThan(900);
    const restartsNow = rec.source.stats.restarts;
    await waitFor('3 more frames', () => rec.frames.length >= 10, 20_000);
    expect(rec.source.stats.restarts, JSON.stringify(rec.states.map((s) => s.error?.message ?? s.state))).toBe(restartsNow);
    expect(stateCodes(rec)).not.toContain('reconnecting:STREAM_ENDED');
    await rec.source.stop();
  });
});

/** An RTSP server that answers OPTIONS and then refuses DESCRIBE with `status`, as a camera that locked the account does. */
async function refusingRtsp(status: string): Promise<{ url: string; close: () => Promise<void> }> {
  const server = net.createServer((socket) => {
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      let end;
      while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
        const request = buf.slice(0, end);
        buf = buf.slice(end + 4);
        const cseq = /CSeq:\s*(\d+)/i.exec(request)?.[1] ?? '1';
        if (request.startsWith('OPTIONS')) socket.write(`RTSP/1.0 200 OK\r\nCSeq: ${cseq}\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n`);
        else socket.write(`RTSP/1.0 ${status}\r\nCSeq: ${cseq}\r\n\r\n`);
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return { url: `rtsp://admin:wrong@127.0.0.1:${port}/stream1`, close: () => new Promise((r) => server.close(() => r())) };
}

describe('error codes say what happened (real ffmpeg)', () => {
  it('an RTSP or HTTP camera answering 423 Locked or 429 is REFUSED with the status, not "not a readable video", and not retried', async () => {
    const rtsp = await refusingRtsp('423 Locked');
    const web = http.createServer((_req, res) => {
      const [code, text] = _req.url?.includes('429') ? [429, 'Too Many Requests'] : [423, 'Locked'];
      res.writeHead(code, text, { 'content-type': 'text/plain' });
      res.end('account locked');
    });
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', () => r()));
    const port = (web.address() as net.AddressInfo).port;
    try {
      for (const [url, status] of [
        [rtsp.url, /423 Locked/],
        [`http://127.0.0.1:${port}/cam.mjpeg`, /HTTP error 423 Locked/],
        [`http://127.0.0.1:${port}/429/cam.mjpeg`, /HTTP error 429/],
      ] as const) {
        const rec = track(recordedSource({ id: 'locked', url }, ingestConfig({ reconnect: { initialDelayMs: 100 } })));
        rec.source.start();
        await waitFor('failed', () => rec.source.state === 'failed', 20_000);
        expect(rec.source.lastError?.code, rec.source.lastError?.message).toBe('REFUSED');
        expect(rec.source.lastError?.message).toMatch(status);
        expect(rec.source.lastError?.message).not.toMatch(/not a readable video/);
        expect(rec.source.stats.restarts).toBe(0);
      }
    } finally {
      await rtsp.close();
      await new Promise<void>((r) => web.close(() => r()));
    }
  });

  it('a file source that stops delivering fails without claiming to restart', async () => {
    const fifo = path.join(tmp, 'growing.ts');
    execFileSync('mkfifo', [fifo]);
    execFileSync('ffmpeg', ['-v', 'error', '-i', HAMILTON, '-an', '-vf', 'scale=320:-2', '-c:v', 'libx264', '-preset', 'ultrafast', '-f', 'mpegts', path.join(tmp, 'full.ts')]);
    const ts = fs.readFileSync(path.join(tmp, 'full.ts'));
    const rec = track(recordedSource({ id: 'fifo', url: fifo, realtime: false }, ingestConfig({ stallTimeoutMs: 800 })));
    rec.source.start();
    const writer = fs.createWriteStream(fifo);
    writer.write(ts.subarray(0, Math.floor(ts.length * 0.8))); // most of the file (past ffmpeg's probing), then nothing more (the writer stays open)
    try {
      await waitFor('failed', () => rec.source.state === 'failed', 20_000);
      expect(rec.frames.length).toBeGreaterThan(0);
      expect(rec.source.lastError?.code).toBe('STALLED');
      expect(rec.source.lastError?.message).not.toMatch(/restart/);
      expect(rec.states.some((s) => /restart|retry/.test(s.error?.message ?? ''))).toBe(false);
    } finally {
      writer.destroy();
    }
  });
});

describe('run --draw of a variable-frame-rate video', () => {
  const ptsOf = (file: string) =>
    execFileSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'frame=pts_time', '-of', 'csv=p=0', file])
      .toString()
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => Number.parseFloat(l));

  it('keeps the source timestamps: same length, same frame times (a phone clip that slows down and speeds up)', async () => {
    const clip = path.join(tmp, 'vfr.mp4');
    // 6 s: every frame for 2 s, every 6th frame for 2 s, every frame again: 30, 5, 30 fps.
    execFileSync('ffmpeg', ['-v', 'error', '-ss', '3', '-t', '6', '-i', HAMILTON, '-an', '-vf', "scale=320:-2,select='lt(t,2)+gte(t,4)+not(mod(n,6))'", '-fps_mode', 'vfr', '-c:v', 'libx264', '-preset', 'ultrafast', clip]);
    const source = ptsOf(clip);
    const drawn = path.join(tmp, 'vfr-drawn.mp4');
    const r = await runCli(['run', clip, '--draw', drawn, '--no-attributes'], { cwd: tmp });
    expect(r.code, r.stderr).toBe(0);
    const out = ptsOf(drawn);
    expect(out).toHaveLength(source.length);
    // Frame k of the drawing is at source time k minus the first (the drawing starts at 0).
    for (let k = 0; k < out.length; k++) expect(Math.abs(out[k] - (source[k] - source[0])), `frame ${k}`).toBeLessThan(0.002);
    expect(out[out.length - 1]).toBeGreaterThan(5.5);
  });
});
