import fs from 'node:fs';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { unpackJpegFrame } from '../src/server/live/protocol.js';
import { dataFile } from './helpers/paths.js';
import { READ_KEY, sharedAnalyzer, startTestServer, TestClient, waitFor, WRITE_KEY, type TestServer } from './helpers/server.js';

type Frame = { v: number; type: string; streamId: string; seq: number; capturedAt: number; processedAt: number; faces: { trackId: number; box: number[]; score: number; identity: { name: string } | null }[] };

const LIN = 'Lin-Manuel Miranda';

describe('live WebSocket (real stream through ffmpeg and the pipeline)', () => {
  let analyzer: FaceAnalyzer;
  let server: TestServer;
  const clients: TestClient[] = [];
  const client = (query = '', opts: ConstructorParameters<typeof TestClient>[1] = { headers: { authorization: `Bearer ${READ_KEY}` } }) => {
    const c = new TestClient(`${server.wsUrl}/api/v1/live${query}`, opts);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    analyzer = await sharedAnalyzer();
    server = await startTestServer({
      analyzer,
      configure: (c) => {
        c.server.websocket = { ...c.server.websocket, maxQueuedMessages: 8, maxBufferedBytes: 64 * 1024, heartbeatMs: 60_000, maxJpegFps: 30 };
      },
    });
    const picture = dataFile('faces', 'lin_manuel_miranda', '1.png');
    await server.ctx.enroller.enrollPictures({ id: 'lin', name: LIN }, [{ name: '1.png', data: fs.readFileSync(picture) }]);
    const r = await server.app.inject({
      method: 'POST',
      url: '/api/v1/streams',
      headers: server.auth,
      payload: { id: 'hamilton', name: 'Hamilton', url: dataFile('video', 'hamilton_640x360.mp4'), loop: true, realtime: true, fps: 15, minFaceSize: 40 },
    });
    expect(r.statusCode).toBe(201);
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await server?.close();
    await analyzer?.runtime.close();
  });

  it('sends the current state on connect, then every processed frame as a versioned JSON message', async () => {
    const c = client();
    await c.opened();
    const hello = await c.until(() => c.of('hello')[0], 5000, 'hello');
    expect(hello).toMatchObject({ v: 1, type: 'hello', role: 'read', subscription: { streams: null, jpeg: null }, gallery: { identities: 1, templates: 1 } });
    expect((hello.streams as { id: string }[]).map((s) => s.id)).toEqual(['hamilton']);

    const named = await c.until(() => (c.of('frame') as Frame[]).find((f) => f.faces.some((x) => x.identity?.name === LIN)), 30_000, `a frame naming ${LIN}`);
    await c.until(() => c.of('frame').length > 5, 10_000, 'more frames');
    const frames = c.of('frame') as Frame[];
    expect(frames.length).toBeGreaterThan(5);
    for (const f of frames) {
      expect(f).toMatchObject({ v: 1, type: 'frame', streamId: 'hamilton', width: 640, height: 360 });
      expect(f.processedAt).toBeGreaterThanOrEqual(f.capturedAt);
      expect(JSON.stringify(f)).not.toMatch(/embedding|data/);
    }
    for (let i = 1; i < frames.length; i++) expect(frames[i].seq).toBeGreaterThan(frames[i - 1].seq);
    const face = named.faces.find((x) => x.identity?.name === LIN)!;
    expect(face.box[2] - face.box[0]).toBeGreaterThan(40);
    const appeared = await c.until(() => c.of('appearance').find((a) => a.event === 'appeared'), 10_000, 'an appearance event');
    expect(appeared).toMatchObject({ v: 1, streamId: 'hamilton', identity: { id: 'lin', name: LIN } });
    const stats = await c.until(() => c.of('stats').find((m) => (m.streams as { state: string }[])[0]?.state === 'live'), 5000, 'stats of the live stream');
    expect(stats).toMatchObject({ v: 1, streams: [{ id: 'hamilton', state: 'live' }] });
  });

  it('sends JPEG pictures packed with their own results, at the rate and size the client asks for', async () => {
    const c = client('?jpeg=true&fps=4&width=320');
    await c.opened();
    await c.until(() => c.binaries.length >= 3, 15_000, 'three pictures');
    const started = Date.now();
    const before = c.binaries.length;
    await new Promise((r) => setTimeout(r, 3000));
    const rate = ((c.binaries.length - before) * 1000) / (Date.now() - started);
    expect(rate).toBeLessThanOrEqual(4.5);
    expect(rate).toBeGreaterThan(1);
    for (const b of c.binaries.slice(0, 3)) {
      const { header, jpeg } = unpackJpegFrame(b);
      expect(header).toMatchObject({ v: 1, type: 'frame', streamId: 'hamilton', width: 640, height: 360, jpeg: { width: 320, height: 180, bytes: jpeg.length } });
      const meta = await sharp(jpeg).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 320, 180]);
    }
    // Frames between pictures come as text; in arrival order, seqs only go up.
    expect(c.of('frame').length).toBeGreaterThan(0);

    c.send({ type: 'subscribe', streams: ['hamilton'], jpeg: { fps: 10, width: 160, quality: 50 } });
    const state = await c.until(() => c.of('state')[0], 5000, 'state after subscribe');
    expect(state.subscription).toEqual({ streams: ['hamilton'], jpeg: { fps: 10, width: 160, quality: 50 } });
    const n = c.binaries.length;
    await c.until(() => c.binaries.length >= n + 2, 10_000, 'pictures at the new size');
    expect(unpackJpegFrame(c.binaries[c.binaries.length - 1]).header.jpeg.width).toBe(160);

    c.send({ type: 'subscribe', streams: 'all of them' });
    const err = await c.until(() => c.of('error')[0], 5000, 'an error message');
    expect(err).toMatchObject({ v: 1, type: 'error', code: 'BAD_REQUEST' });
    c.ws.send('not json');
    await c.until(() => c.of('error').length >= 2, 5000, 'a second error');
    expect(c.ws.readyState).toBe(c.ws.OPEN);
  });

  it('drops the oldest frames of a client that stops reading, without slowing the pipeline or other clients', async () => {
    const fast = client();
    const slow = client('?jpeg=true&fps=30&width=640&quality=100');
    await Promise.all([fast.opened(), slow.opened()]);
    await fast.until(() => fast.of('frame').length >= 5, 15_000, 'frames');
    const processed = () => server.ctx.pipeline.streamStats('hamilton')!.processed;
    const window = async (ms: number) => {
      const f0 = fast.of('frame').length;
      const p0 = processed();
      const t0 = Date.now();
      await new Promise((r) => setTimeout(r, ms));
      const secs = (Date.now() - t0) / 1000;
      return { fastFps: (fast.of('frame').length - f0) / secs, pipelineFps: (processed() - p0) / secs };
    };
    const baseline = await window(3000);

    // The slow client stops reading: TCP fills up, then the server's per-client queue.
    (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
    const gapsFrom = fast.receivedAt.length;
    const during = await window(7000);
    const slowStats = server.ctx.hub.clientStats().find((s) => s.dropped > 0);
    const gaps = fast.receivedAt.slice(gapsFrom).map((t, i, a) => (i ? t - a[i - 1] : 0));
    console.log(`slow client: baseline ${JSON.stringify(baseline)}, while one client is stuck ${JSON.stringify(during)}, stuck client ${JSON.stringify(slowStats)}, longest gap ${Math.max(...gaps)} ms`);
    expect(slowStats).toBeDefined();
    expect(slowStats!.queued).toBeLessThanOrEqual(8);
    expect(during.fastFps).toBeGreaterThan(0.7 * baseline.fastFps);
    expect(during.pipelineFps).toBeGreaterThan(0.7 * baseline.pipelineFps);
    expect(Math.max(...gaps)).toBeLessThan(1500);
    const metrics = (await server.app.inject({ url: '/metrics' })).body;
    expect(Number(/^facestream_ws_messages_dropped_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);

    // Reading again, it is told how many messages it lost and gets frames again.
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const notice = await slow.until(() => slow.of('dropped').at(-1), 15_000, 'a dropped notice');
    expect(notice.count).toBeGreaterThan(0);
    const seen = slow.binaries.length;
    await slow.until(() => slow.binaries.length > seen + 2, 10_000, 'frames after catching up');
  });

  it('reports stream changes, appearances and enrollments (including a face enrolled from the live stream)', async () => {
    const c = client('', { headers: { authorization: `Bearer ${WRITE_KEY}` } });
    await c.opened();
    await c.until(() => c.of('hello')[0], 5000, 'hello');
    const created = await server.app.inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { id: 'pattern', url: 'lavfi:testsrc2=size=160x120:rate=5' } });
    expect(created.statusCode).toBe(201);
    await c.until(() => c.of('stream').find((m) => m.event === 'added'), 5000, 'stream added');
    await c.until(() => c.of('stream').find((m) => m.event === 'state' && (m.stream as { id: string; state: string }).state === 'live' && (m.stream as { id: string }).id === 'pattern'), 15_000, 'pattern live');
    await server.app.inject({ method: 'DELETE', url: '/api/v1/streams/pattern', headers: server.auth });
    await c.until(() => c.of('stream').find((m) => m.event === 'removed'), 5000, 'stream removed');

    // Enroll a face seen live, picked by track id from the stream's latest frame.
    const template = await waitFor(async () => {
      const latest = (await server.app.inject({ url: '/api/v1/streams/hamilton/faces', headers: server.auth })).json() as { faces: Frame['faces'] };
      const face = latest.faces.find((f) => f.box[2] - f.box[0] >= 60 && f.score >= 0.95);
      if (!face) return undefined;
      const r = await server.app.inject({ method: 'POST', url: '/api/v1/streams/hamilton/enroll', headers: server.auth, payload: { trackId: face.trackId, name: 'Someone on stage' } });
      if (r.statusCode === 201) return r.json();
      expect(['TRACK_NOT_FOUND', 'FACE_TOO_SMALL', 'LOW_QUALITY']).toContain(r.json().code);
      return undefined;
    }, 30_000, 'a face enrolled from the stream');
    expect(template).toMatchObject({ identity: { name: 'Someone on stage', templates: 1 }, template: { source: expect.stringMatching(/^stream:hamilton#\d+\/track:\d+$/) } });
    const added = await c.until(() => c.of('gallery').find((m) => m.event === 'template-added'), 5000, 'template-added event');
    expect(added).toMatchObject({ v: 1, counts: { identities: 2, templates: 2 } });
    expect(JSON.stringify(added)).not.toMatch(/embedding/);
    expect(c.of('gallery').some((m) => m.event === 'identity-created')).toBe(true);
    // A bulk change reaches clients as one summary, not as a flood.
    const before = c.of('gallery').length;
    for (let i = 0; i < 30; i++) server.ctx.gallery.createIdentity({ id: `bulk-${i}`, name: `Bulk ${i}` });
    const summary = await c.until(() => c.of('gallery').find((m) => m.event === 'changed'), 5000, 'a bulk summary');
    expect(summary).toMatchObject({ changes: 30, counts: { identities: 32 } });
    expect(c.of('gallery').length).toBe(before + 1);
    const missing = await server.app.inject({ method: 'POST', url: '/api/v1/streams/hamilton/enroll', headers: server.auth, payload: { trackId: 999_999, name: 'x' } });
    expect(missing.json().code).toBe('TRACK_NOT_FOUND');
    expect((await server.app.inject({ method: 'POST', url: '/api/v1/streams/hamilton/enroll', headers: server.readAuth, payload: { trackId: 1, name: 'x' } })).statusCode).toBe(403);
  });

  it('gives a reconnecting client the current state: streams, who is in view, the appearance log', async () => {
    await waitFor(() => server.ctx.pipeline.appearances('hamilton')!.current().some((p) => p.name === LIN), 30_000, `${LIN} in view`);
    const c = client();
    await c.opened();
    const hello = await c.until(() => c.of('hello')[0], 5000, 'hello');
    const present = (hello.appearances as Record<string, { name: string }[]>).hamilton;
    expect(present.map((p) => p.name)).toContain(LIN);
    expect((hello.log as { type: string; identity: { name: string } }[]).some((e) => e.type === 'appeared' && e.identity.name === LIN)).toBe(true);
    expect((hello.streams as { id: string; state: string }[])[0]).toMatchObject({ id: 'hamilton', state: 'live' });
  });

  it('serves the latest frame as a JPEG and the appearance log over REST', async () => {
    const snap = await server.app.inject({ url: '/api/v1/streams/hamilton/snapshot?width=320', headers: server.readAuth });
    expect(snap.statusCode).toBe(200);
    expect(snap.headers['content-type']).toBe('image/jpeg');
    expect(Number(snap.headers['x-frame-seq'])).toBeGreaterThan(0);
    const meta = await sharp(snap.rawPayload).metadata();
    expect([meta.width, meta.height]).toEqual([320, 180]);
    const appearances = (await server.app.inject({ url: '/api/v1/streams/hamilton/appearances', headers: server.readAuth })).json();
    expect(appearances.log.some((e: { type: string; identity: { name: string } }) => e.type === 'appeared' && e.identity.name === LIN)).toBe(true);
    expect(Array.isArray(appearances.current)).toBe(true);
  });

  it('authenticates WebSocket clients by header or, for browsers, by subprotocol', async () => {
    await expect(client('', {}).opened()).rejects.toThrow(/401/);
    await expect(client('', { headers: { authorization: 'Bearer not-a-key-at-all-000' } }).opened()).rejects.toThrow(/401/);
    await expect(client('?streams=../etc', { headers: { authorization: `Bearer ${READ_KEY}` } }).opened()).rejects.toThrow(/400/);
    const browser = client('', { protocols: ['facestream.v1', `facestream.key.${READ_KEY}`] });
    await browser.opened();
    expect(browser.ws.protocol).toBe('facestream.v1');
    await browser.until(() => browser.of('hello')[0], 5000, 'hello');
  });

  it('cuts off clients that stop answering pings, and closes the others cleanly on shutdown', async () => {
    const other = await startTestServer({ analyzer, configure: (c) => (c.server.websocket = { ...c.server.websocket, heartbeatMs: 300 }) });
    const url = `${other.wsUrl}/api/v1/live`;
    const dead = new TestClient(url, { headers: other.readAuth });
    const alive = new TestClient(url, { headers: other.readAuth });
    await Promise.all([dead.opened(), alive.opened()]);
    expect(other.ctx.hub.clientCount).toBe(2);
    (dead.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    await waitFor(() => other.ctx.hub.clientCount === 1, 5000, 'the unresponsive client to be cut off');
    expect((await other.app.inject({ url: '/metrics' })).body).toMatch(/^facestream_ws_clients 1$/m);
    await new Promise((r) => setTimeout(r, 1000));
    expect(alive.ws.readyState).toBe(alive.ws.OPEN);
    await other.close();
    await alive.until(() => alive.closeCode !== undefined, 5000, 'close');
    expect(alive.closeCode).toBe(1001);
    dead.ws.terminate();
  });
});
