import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dataFile } from './helpers/paths.js';
import { ffmpegProcesses, ingestConfig, isAlive, recordedSource, waitFor, waitForState, type Recorded } from './helpers/ingest.js';
import { RtspTestServer } from './helpers/rtsp-server.js';

const HAMILTON = dataFile('video', 'hamilton_640x360.mp4');

let server: RtspTestServer;
const open: Recorded[] = [];
function track(rec: Recorded): Recorded {
  open.push(rec);
  return rec;
}

beforeAll(async () => {
  server = await RtspTestServer.start(HAMILTON);
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.source.stop()));
  await server.restart();
});
afterAll(async () => {
  await server?.close();
});

describe('RTSP sources (GStreamer RTSP server on 127.0.0.1)', () => {
  it('reconnects after the server dies and comes back; stop leaves no ffmpeg behind', async () => {
    // Short timeouts so the test spends seconds, not the production defaults, on each phase.
    const config = ingestConfig({ stallTimeoutMs: 2000, ioTimeoutMs: 2000, reconnect: { initialDelayMs: 200, maxDelayMs: 1000 } });
    const rec = track(recordedSource({ id: 'cam1', url: server.url('clip') }, config));
    rec.source.start();
    await waitFor('30 frames', () => rec.frames.length >= 30, 20_000);
    expect(rec.source.state).toBe('live');
    expect(rec.frames[0]).toMatchObject({ streamId: 'cam1', width: 640, height: 360 });
    const firstPid = rec.source.stats.pid!;

    // Power cut: no RTSP teardown, the TCP connection just dies.
    await server.kill('SIGKILL');
    const statesBefore = rec.states.length;
    await waitForState(rec, 'reconnecting', 10_000, statesBefore);
    const reconnecting = rec.states.slice(statesBefore).find((s) => s.state === 'reconnecting')!;
    expect(['STREAM_ENDED', 'STALLED', 'FFMPEG_FAILED', 'TIMEOUT', 'CONNECTION_REFUSED']).toContain(reconnecting.error?.code);
    expect(isAlive(firstPid)).toBe(false);
    // While the server is down the attempts fail with "connection refused" and back off.
    await waitFor('a refused reconnect attempt', () => rec.states.some((s) => s.error?.code === 'CONNECTION_REFUSED'), 10_000);
    const framesWhileDown = rec.frames.length;

    await server.restart();
    const restartedAt = Date.now();
    await waitFor('frames after the restart', () => rec.frames.length > framesWhileDown + 10, 10_000);
    const firstNew = rec.frames[framesWhileDown];
    expect(firstNew.capturedAt - restartedAt).toBeLessThan(10_000);
    expect(rec.source.state).toBe('live');
    expect(rec.source.stats.restarts).toBeGreaterThanOrEqual(1);
    // Sequence numbers keep counting across the reconnect.
    expect(rec.frames.map((f) => f.seq)).toEqual([...Array(rec.frames.length).keys()]);

    const pid = rec.source.stats.pid!;
    await rec.source.stop();
    expect(rec.source.state).toBe('stopped');
    expect(isAlive(pid)).toBe(false);
    expect(ffmpegProcesses(`127.0.0.1:${server.port}/`)).toEqual([]);
  });

  it('restarts a stream that stalls (server frozen: connection open, no frames) and recovers when it thaws', async () => {
    const config = ingestConfig({ stallTimeoutMs: 1500, ioTimeoutMs: 1500, reconnect: { initialDelayMs: 200, maxDelayMs: 500 } });
    const rec = track(recordedSource({ id: 'cam-stall', url: server.url('clip'), maxWidth: 320 }, config));
    rec.source.start();
    await waitFor('10 frames', () => rec.frames.length >= 10, 20_000);
    const pid = rec.source.stats.pid!;
    server.freeze();
    const frozenAt = Date.now();
    try {
      await waitForState(rec, 'stalled', 5000);
      const stalled = rec.states.find((s) => s.state === 'stalled')!;
      expect(stalled.error?.code).toBe('STALLED');
      expect(Date.now() - frozenAt).toBeGreaterThanOrEqual(1400);
      await waitForState(rec, 'reconnecting', 5000);
      await waitFor('the stalled ffmpeg to be gone', () => !isAlive(pid), 5000);
    } finally {
      server.thaw();
    }
    const n = rec.frames.length;
    await waitFor('frames after the thaw', () => rec.frames.length > n + 5, 10_000);
    expect(rec.source.state).toBe('live');
  });

  it('reads over UDP when asked', async () => {
    const rec = track(recordedSource({ id: 'cam-udp', url: server.url('clip'), rtspTransport: 'udp' }));
    rec.source.start();
    await waitFor('10 frames over UDP', () => rec.frames.length >= 10, 20_000);
    expect(rec.frames[0]).toMatchObject({ width: 640, height: 360 });
    expect(rec.source.stats.pid && ffmpegProcesses(`127.0.0.1:${server.port}/`)).toEqual([rec.source.stats.pid]);
  });

  it('scales RTSP frames down to the configured size', async () => {
    const rec = track(recordedSource({ id: 'cam-small', url: server.url('clip'), maxWidth: 320, fps: 5 }));
    rec.source.start();
    await waitFor('6 frames', () => rec.frames.length >= 6, 20_000);
    expect(rec.frames[0]).toMatchObject({ width: 320, height: 180 });
  });

  it('authenticates with credentials from the URL and never shows them; a wrong password fails as UNAUTHORIZED', async () => {
    const good = track(recordedSource({ id: 'cam-auth', url: server.url('secure', { user: server.user, password: server.password }) }));
    good.source.start();
    await waitFor('frames from the protected mount', () => good.frames.length >= 5, 20_000);
    expect(good.source.source.label).toBe(`rtsp://***@127.0.0.1:${server.port}/secure`);

    const wrongPassword = 'not-the-password-42';
    const bad = track(recordedSource({ id: 'cam-badauth', url: server.url('secure', { user: server.user, password: wrongPassword }) }));
    bad.source.start();
    await waitForState(bad, 'failed', 20_000);
    expect(bad.source.lastError?.code).toBe('UNAUTHORIZED');
    expect(bad.source.lastError?.message).toMatch(/401/);
    const everything = JSON.stringify({ states: bad.states, error: bad.source.lastError, tail: bad.source.stderrTail, stats: bad.source.stats, label: bad.source.source.label });
    expect(everything).not.toContain(wrongPassword);
    expect(bad.source.stderrTail.join('\n')).toContain('rtsp://***@127.0.0.1');

    const none = track(recordedSource({ id: 'cam-noauth', url: server.url('secure') }));
    none.source.start();
    await waitForState(none, 'failed', 20_000);
    expect(none.source.lastError?.code).toBe('UNAUTHORIZED');
  });
});
