import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import Database from 'better-sqlite3';
import type { InjectOptions } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { loadConfig } from '../src/config/load.js';
import { startServer } from '../src/server/server.js';
import { testConfig } from './helpers/models.js';
import { DATA, dataFile } from './helpers/paths.js';
import { capturingLogger, READ_KEY, sharedAnalyzer, startTestServer, waitFor, WRITE_KEY, type TestServer } from './helpers/server.js';

type Part = { field: string; file: string } | { field: string; name: string; data: Buffer } | { field: string; value: string };

/** A real multipart/form-data body, as a browser or curl -F sends it. */
async function multipart(parts: Part[]): Promise<{ payload: Buffer; headers: Record<string, string> }> {
  const fd = new FormData();
  for (const p of parts) {
    if ('value' in p) fd.append(p.field, p.value);
    else if ('file' in p) fd.append(p.field, new Blob([fs.readFileSync(p.file)]), path.basename(p.file));
    else fd.append(p.field, new Blob([new Uint8Array(p.data)]), p.name);
  }
  const res = new Response(fd);
  return { payload: Buffer.from(await res.arrayBuffer()), headers: { 'content-type': res.headers.get('content-type')! } };
}

const b64 = (file: string) => fs.readFileSync(file).toString('base64');
const OBAMA = (n: number) => dataFile('faces', 'barack_obama', `${n}.jpg`);
const BIDEN = (n: number) => dataFile('faces', 'joe_biden', `${n}.jpg`);
const PROBLEM_TYPE = /^application\/problem\+json/;
const area = (f: { box: number[] }) => (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]);
const largest = <T extends { box: number[] }>(faces: T[], n: number): T[] => [...faces].sort((a, b) => area(b) - area(a)).slice(0, n);

describe('REST API (real models, gallery, ffmpeg)', () => {
  let analyzer: FaceAnalyzer;
  let server: TestServer;
  const logs = capturingLogger('debug');
  let blank: Buffer;

  beforeAll(async () => {
    analyzer = await sharedAnalyzer();
    server = await startTestServer({
      analyzer,
      logger: logs.logger,
      configure: (c) => {
        c.limits = { ...c.limits, maxImageBytes: 3 * 1024 * 1024, maxImagePixels: 10_000_000 };
        c.server.limits = { ...c.server.limits, jsonBodyBytes: 64 * 1024, pictureBodyBytes: 4 * 1024 * 1024, importBytes: 8 * 1024 * 1024 };
        c.server.rateLimit = { max: 0, windowMs: 60_000 };
      },
    });
    blank = await sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 120, g: 130, b: 140 } } }).jpeg().toBuffer();
  });
  afterAll(async () => {
    await server?.close();
    await analyzer?.runtime.close();
  });

  const inject = (opts: InjectOptions) => server.app.inject(opts);

  it('serves health, readiness, the OpenAPI document and the docs page without a key', async () => {
    expect((await inject({ url: '/health' })).json()).toMatchObject({ status: 'ok' });
    const ready = await inject({ url: '/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({ ready: true, checks: { models: true, gallery: true, streams: true } });
    const doc = (await inject({ url: '/openapi.json' })).json() as { openapi: string; paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { additionalProperties?: boolean } }> } }>>; components: { schemas: Record<string, unknown> } };
    expect(doc.openapi).toMatch(/^3\./);
    for (const p of ['/api/v1/streams', '/api/v1/streams/{id}', '/api/v1/identities/{id}/templates', '/api/v1/detect', '/api/v1/verify', '/api/v1/gallery/import', '/ready']) expect(Object.keys(doc.paths)).toContain(p);
    expect(doc.components.schemas.Problem).toBeDefined();
    // Every JSON request body refuses unknown fields.
    for (const [p, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const json = op.requestBody?.content['application/json'];
        if (json) expect(json.schema.additionalProperties, `${method} ${p}`).toBe(false);
      }
    }
    const docs = await inject({ url: '/docs/' });
    expect([200, 302]).toContain(docs.statusCode);
    const viewer = await inject({ url: '/' });
    expect(viewer.statusCode).toBe(200);
    expect(viewer.headers['content-type']).toMatch(/text\/html/);
  });

  it('refuses missing, wrong and read-only keys with 401/403 problems', async () => {
    const none = await inject({ url: '/api/v1/streams' });
    expect(none.statusCode).toBe(401);
    expect(none.headers['content-type']).toMatch(PROBLEM_TYPE);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(none.json()).toMatchObject({ status: 401, code: 'UNAUTHORIZED', type: expect.stringContaining('unauthorized') });
    const wrong = await inject({ url: '/api/v1/streams', headers: { authorization: `Bearer ${WRITE_KEY}x` } });
    expect(wrong.statusCode).toBe(401);
    expect((await inject({ url: '/api/v1/streams', headers: { authorization: WRITE_KEY } })).statusCode).toBe(401);
    expect((await inject({ url: '/api/v1/streams', headers: server.readAuth })).statusCode).toBe(200);
    const readWrite = await inject({ method: 'POST', url: '/api/v1/identities', headers: server.readAuth, payload: { name: 'Nobody' } });
    expect(readWrite.statusCode).toBe(403);
    expect(readWrite.json().code).toBe('FORBIDDEN');
    expect((await inject({ method: 'DELETE', url: '/api/v1/streams/x', headers: server.readAuth })).statusCode).toBe(403);
    expect((await inject({ method: 'DELETE', url: '/api/v1/streams/x' })).statusCode).toBe(401);
    // Picture analysis changes nothing: read keys may use it.
    const detect = await inject({ method: 'POST', url: '/api/v1/detect', headers: server.readAuth, payload: { image: blank.toString('base64') } });
    expect(detect.statusCode).toBe(200);
    expect((await inject({ method: 'POST', url: '/api/v1/detect', payload: { image: blank.toString('base64') } })).statusCode).toBe(401);
    expect((await inject({ url: '/metrics' })).statusCode).toBe(200);
  });

  it('validates requests: unknown fields, wrong types, bad ids, media types, unknown routes', async () => {
    const unknown = await inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { url: 'lavfi:testsrc2', bogus: 1 } });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.headers['content-type']).toMatch(PROBLEM_TYPE);
    expect(unknown.json()).toMatchObject({ code: 'BAD_REQUEST' });
    expect(unknown.json().errors[0].path).toContain('bogus');
    const wrongType = await inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { url: 'lavfi:testsrc2', enabled: 'maybe' } });
    expect(wrongType.statusCode).toBe(400);
    expect(wrongType.json().errors[0].path).toContain('enabled');
    expect((await inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { url: 'lavfi:testsrc2', fps: 1000 } })).statusCode).toBe(400);
    expect((await inject({ url: '/api/v1/streams/bad%20id', headers: server.auth })).json().code).toBe('BAD_REQUEST');
    expect((await inject({ method: 'PATCH', url: '/api/v1/identities/x', headers: server.auth, payload: {} })).statusCode).toBe(400);
    const text = await inject({ method: 'POST', url: '/api/v1/identities', headers: { ...server.auth, 'content-type': 'text/plain' }, payload: 'name=x' });
    expect(text.statusCode).toBe(415);
    expect(text.json().code).toBe('UNSUPPORTED_MEDIA_TYPE');
    const badJson = await inject({ method: 'POST', url: '/api/v1/identities', headers: { ...server.auth, 'content-type': 'application/json' }, payload: '{"name":' });
    expect(badJson.statusCode).toBe(400);
    const notBase64 = await inject({ method: 'POST', url: '/api/v1/detect', headers: server.auth, payload: { image: 'this is not base64 !!!' } });
    expect(notBase64.statusCode).toBe(400);
    const notImage = await inject({ method: 'POST', url: '/api/v1/detect', headers: server.auth, payload: { image: Buffer.from('hello world, no picture').toString('base64') } });
    expect(notImage.statusCode).toBe(422);
    expect(notImage.json().code).toBe('IMAGE_UNREADABLE');
    const missing = await inject({ url: '/api/v1/nothing-here', headers: server.auth });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe('ROUTE_NOT_FOUND');
  });

  it('creates, lists, updates, starts, stops and deletes streams, and never shows camera credentials', async () => {
    const secretUrl = 'rtsp://admin:s3cr3tP4ss@127.0.0.1:9/cam?token=abcdef123456';
    const created = await inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { id: 'door', name: 'Front door', url: secretUrl, enabled: false, minFaceSize: 40, detectionMode: 'full', keyframeIntervalMs: 500 } });
    expect(created.statusCode).toBe(201);
    expect(created.headers.location).toBe('/api/v1/streams/door');
    const body = created.json();
    expect(body).toMatchObject({ id: 'door', name: 'Front door', kind: 'rtsp', enabled: false, state: 'stopped', options: { minFaceSize: 40, detectionMode: 'full', keyframeIntervalMs: 500 } });
    const badMode = await inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { id: 'porch', url: 'lavfi:testsrc2', detectionMode: 'sometimes' } });
    expect(badMode.statusCode).toBe(400);
    expect(body.url).toBe('rtsp://***@127.0.0.1:9/cam?token=***');
    expect((await inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { id: 'door', url: 'lavfi:testsrc2' } })).json().code).toBe('STREAM_EXISTS');

    // Started, it fails to connect (nothing listens on port 9) and keeps retrying.
    const started = await inject({ method: 'POST', url: '/api/v1/streams/door/start', headers: server.auth });
    expect(started.statusCode).toBe(200);
    const failing = await waitFor(async () => {
      const s = (await inject({ url: '/api/v1/streams/door', headers: server.readAuth })).json();
      return s.state === 'reconnecting' ? s : undefined;
    }, 20_000, 'the stream to start reconnecting');
    expect(failing.error.code).toBe('CONNECTION_REFUSED');
    await waitFor(async () => (await inject({ url: '/api/v1/streams/door', headers: server.auth })).json().stats.restarts > 0, 20_000, 'a reconnect');
    const reconnecting = (await inject({ url: '/metrics' })).body;
    expect(Number(/^facestream_ffmpeg_restarts_total\{stream="door"\} (\d+)/m.exec(reconnecting)?.[1])).toBeGreaterThan(0);
    expect(reconnecting).toMatch(/^facestream_stream_state\{stream="door",state="(reconnecting|starting)"\} 1$/m);

    // Sending the redacted URL back keeps the real one.
    const patched = await inject({ method: 'PATCH', url: '/api/v1/streams/door', headers: server.auth, payload: { name: 'Back door', url: body.url, minFaceSize: null, detectionMode: null, keyframeIntervalMs: null } });
    expect(patched.statusCode).toBe(200);
    expect(patched.json()).toMatchObject({ name: 'Back door', options: {} });
    const stored = new Database(path.join(server.dir, 'data', 'server.db'), { readonly: true });
    expect((stored.prepare('SELECT url FROM streams WHERE id = ?').get('door') as { url: string }).url).toBe(secretUrl);
    stored.close();

    const stopped = await inject({ method: 'POST', url: '/api/v1/streams/door/stop', headers: server.auth });
    expect(stopped.json()).toMatchObject({ state: 'stopped', enabled: false });

    const everything = [
      (await inject({ url: '/api/v1/streams', headers: server.auth })).body,
      (await inject({ url: '/metrics' })).body,
      JSON.stringify((await inject({ url: '/openapi.json' })).json()),
      logs.lines.join('\n'),
    ].join('\n');
    expect(logs.lines.some((l) => l.includes('door'))).toBe(true);
    for (const secret of ['s3cr3tP4ss', 'abcdef123456', WRITE_KEY, READ_KEY]) expect(everything).not.toContain(secret);

    expect((await inject({ method: 'DELETE', url: '/api/v1/streams/door', headers: server.auth })).statusCode).toBe(204);
    const gone = await inject({ url: '/api/v1/streams/door', headers: server.auth });
    expect(gone.statusCode).toBe(404);
    expect(gone.json().code).toBe('STREAM_NOT_FOUND');
  });

  it('refuses file sources outside the allowed directories, however the path is written', async () => {
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-outside-'));
    fs.writeFileSync(path.join(outside, 'secret.mp4'), 'not for you');
    const allowed = path.join(DATA, 'video');
    const attempts = [
      '/etc/passwd',
      '../../../../../../etc/passwd',
      `${allowed}/../../../../../../etc/passwd`,
      `${allowed}/../faces/barack_obama/1.jpg`,
      'file:///etc/passwd',
      `file://${allowed}/%2e%2e/%2e%2e/%2e%2e/etc/passwd`,
      path.join(outside, 'secret.mp4'),
      'concat:/etc/passwd|/etc/hostname',
      'lavfi:movie=/etc/passwd',
      'lavfi:testsrc2=size=64x64,sendcmd=f=/etc/passwd',
      "lavfi:testsrc2='/etc/passwd'",
    ];
    for (const url of attempts) {
      const r = await inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { url, enabled: false } });
      expect(r.statusCode, url).toBe(403);
      expect(r.json().code, url).toBe('SOURCE_NOT_ALLOWED');
      expect(r.body).not.toContain('passwd');
    }
    // A symlink inside an allowed directory that points outside it is refused too.
    const linkDir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-links-'));
    fs.symlinkSync(path.join(outside, 'secret.mp4'), path.join(linkDir, 'camera.mp4'));
    server.ctx.config.server.sources.allowedDirs.push(linkDir);
    try {
      const r = await inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { url: path.join(linkDir, 'camera.mp4'), enabled: false } });
      expect(r.json().code).toBe('SOURCE_NOT_ALLOWED');
    } finally {
      server.ctx.config.server.sources.allowedDirs.pop();
    }
    const absent = await inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { url: path.join(allowed, 'nope.mp4'), enabled: false } });
    expect(absent.json().code).toBe('FILE_NOT_FOUND');
    const ok = await inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { id: 'clip', url: path.join(allowed, 'hamilton_640x360.mp4'), enabled: false } });
    expect(ok.statusCode).toBe(201);
    expect(ok.json().kind).toBe('file');
    await inject({ method: 'DELETE', url: '/api/v1/streams/clip', headers: server.auth });
  });

  it('enrolls pictures by multipart upload and by JSON, lists and deletes templates, serves crops', async () => {
    const created = await inject({ method: 'POST', url: '/api/v1/identities', headers: server.auth, payload: { id: 'obama', name: 'Barack Obama', metadata: { team: 'demo' } } });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({ id: 'obama', name: 'Barack Obama', templates: 0, metadata: { team: 'demo' } });

    const form = await multipart([{ field: 'file', file: OBAMA(4) }, { field: 'file', file: OBAMA(5) }]);
    const enrolled = await inject({ method: 'POST', url: '/api/v1/identities/obama/templates', headers: { ...server.auth, ...form.headers }, payload: form.payload });
    expect(enrolled.statusCode).toBe(201);
    expect(enrolled.json()).toMatchObject({ identity: { id: 'obama', templates: 2 }, created: false, rejected: [] });
    expect(enrolled.json().added).toHaveLength(2);
    expect(enrolled.body).not.toMatch(/embedding/i);

    const json = await inject({ method: 'POST', url: '/api/v1/enroll', headers: server.auth, payload: { id: 'biden', name: 'Joe Biden', images: [{ name: '2.jpg', data: b64(BIDEN(2)) }] } });
    expect(json.statusCode).toBe(201);
    expect(json.json()).toMatchObject({ identity: { id: 'biden', name: 'Joe Biden', templates: 1 }, created: true });

    const noFace = await inject({ method: 'POST', url: '/api/v1/identities/obama/templates', headers: server.auth, payload: { image: blank.toString('base64') } });
    expect(noFace.statusCode).toBe(422);
    expect(noFace.json()).toMatchObject({ code: 'NO_FACE' });
    expect(noFace.json().errors).toHaveLength(1);
    const again = await inject({ method: 'POST', url: '/api/v1/identities/obama/templates', headers: server.auth, payload: { image: b64(OBAMA(4)) } });
    expect(again.json().code).toBe('DUPLICATE_TEMPLATE');
    expect((await inject({ method: 'POST', url: '/api/v1/identities/nobody/templates', headers: server.auth, payload: { image: b64(OBAMA(1)) } })).json().code).toBe('IDENTITY_NOT_FOUND');

    const templates = (await inject({ url: '/api/v1/identities/obama/templates', headers: server.readAuth })).json().templates as { id: string }[];
    expect(templates).toHaveLength(2);
    // Face crops are biometric data, like the export: a read key may not download them.
    expect((await inject({ url: `/api/v1/templates/${templates[0].id}/crop`, headers: server.readAuth })).statusCode).toBe(403);
    const crop = await inject({ url: `/api/v1/templates/${templates[0].id}/crop`, headers: server.auth });
    expect(crop.headers['content-type']).toBe('image/jpeg');
    expect((await sharp(crop.rawPayload).metadata()).width).toBeGreaterThan(50);
    expect((await inject({ method: 'DELETE', url: `/api/v1/templates/${templates[1].id}`, headers: server.auth })).statusCode).toBe(204);
    expect((await inject({ url: '/api/v1/identities/obama', headers: server.readAuth })).json().templates).toBe(1);
    expect((await inject({ url: `/api/v1/templates/${templates[1].id}`, headers: server.readAuth })).json().code).toBe('TEMPLATE_NOT_FOUND');

    const list = (await inject({ url: '/api/v1/identities?search=Biden', headers: server.readAuth })).json();
    expect(list.identities.map((i: { id: string }) => i.id)).toEqual(['biden']);
    expect((await inject({ method: 'PATCH', url: '/api/v1/identities/biden', headers: server.auth, payload: { name: 'Joseph Biden' } })).json().name).toBe('Joseph Biden');
    expect((await inject({ url: '/api/v1/gallery', headers: server.readAuth })).json()).toMatchObject({ identities: 2, templates: 2 });
  });

  it('detects, analyzes, identifies and verifies single pictures', async () => {
    const scene = dataFile('scenes', 'obama_and_biden.jpg');
    const detect = (await inject({ method: 'POST', url: '/api/v1/detect?minFaceSize=80', headers: server.auth, payload: { image: b64(scene) } })).json();
    expect(detect).toMatchObject({ width: 2000, height: 1428 });
    // The two people, plus a smaller face in the background.
    expect(detect.faces.length).toBeGreaterThanOrEqual(2);
    expect(detect.faces[0].landmarks).toHaveLength(5);

    const form = await multipart([{ field: 'image', file: scene }]);
    const analyzed = (await inject({ method: 'POST', url: '/api/v1/analyze?minFaceSize=80', headers: { ...server.auth, ...form.headers }, payload: form.payload })).json();
    for (const f of largest(analyzed.faces as { box: number[]; age: number; gender: string }[], 2)) {
      expect(f.age).toBeGreaterThan(30);
      expect(f.gender).toBe('male');
    }

    const identified = await inject({ method: 'POST', url: '/api/v1/identify?k=2&minFaceSize=80', headers: server.auth, payload: { image: b64(scene) } });
    expect(identified.statusCode).toBe(200);
    const names = largest(identified.json().faces as { box: number[]; identity: { name: string } | null }[], 2).map((f) => f.identity?.name).sort();
    expect(names).toEqual(['Barack Obama', 'Joseph Biden']);
    expect(identified.body).not.toMatch(/embedding/i);

    const same = (await inject({ method: 'POST', url: '/api/v1/verify', headers: server.auth, payload: { image1: b64(OBAMA(1)), image2: b64(OBAMA(2)) } })).json();
    expect(same.match).toBe(true);
    const different = (await inject({ method: 'POST', url: '/api/v1/verify', headers: server.auth, payload: { image1: b64(OBAMA(1)), image2: b64(BIDEN(1)) } })).json();
    expect(different.match).toBe(false);
    expect(same.similarity).toBeGreaterThan(different.similarity);
    const vsIdentity = await multipart([{ field: 'image', file: BIDEN(1) }, { field: 'identityId', value: 'biden' }]);
    const byId = (await inject({ method: 'POST', url: '/api/v1/verify', headers: { ...server.auth, ...vsIdentity.headers }, payload: vsIdentity.payload })).json();
    expect(byId).toMatchObject({ match: true, identityId: 'biden' });
    const noFace = await inject({ method: 'POST', url: '/api/v1/verify', headers: server.auth, payload: { image1: blank.toString('base64'), image2: b64(OBAMA(1)) } });
    expect(noFace.json().code).toBe('NO_FACE');
    expect((await inject({ method: 'POST', url: '/api/v1/verify', headers: server.auth, payload: { image1: b64(OBAMA(1)) } })).statusCode).toBe(400);
  });

  it('exports the gallery and imports it into another server, idempotently', async () => {
    expect((await inject({ url: '/api/v1/gallery/export', headers: server.readAuth })).statusCode).toBe(403);
    const exported = await inject({ url: '/api/v1/gallery/export', headers: server.auth });
    expect(exported.statusCode).toBe(200);
    expect(exported.headers['content-type']).toBe('application/gzip');
    const lines = zlib.gunzipSync(exported.rawPayload).toString('utf8').trim().split('\n');
    expect(JSON.parse(lines[0])).toMatchObject({ format: 'facestream-gallery', identities: 2, templates: 2 });

    const other = await startTestServer({ analyzer, listen: false });
    try {
      const first = await other.app.inject({ method: 'POST', url: '/api/v1/gallery/import', headers: { ...other.auth, 'content-type': 'application/gzip' }, payload: exported.rawPayload });
      expect(first.statusCode).toBe(200);
      expect(first.json()).toMatchObject({ identitiesCreated: 2, templatesAdded: 2 });
      const second = await other.app.inject({ method: 'POST', url: '/api/v1/gallery/import', headers: { ...other.auth, 'content-type': 'application/x-ndjson' }, payload: zlib.gunzipSync(exported.rawPayload) });
      expect(second.json()).toMatchObject({ identitiesCreated: 0, templatesAdded: 0, duplicates: 2 });
      const junk = await other.app.inject({ method: 'POST', url: '/api/v1/gallery/import', headers: { ...other.auth, 'content-type': 'application/x-ndjson' }, payload: 'not json\n' });
      expect(junk.statusCode).toBe(400);
      expect((await other.app.inject({ url: '/api/v1/gallery', headers: other.auth })).json()).toMatchObject({ identities: 2, templates: 2 });
      expect(fs.readdirSync(path.join(other.dir, 'data', 'tmp'))).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it('refuses oversized bodies, uploads and pictures with 413, without buffering them', async () => {
    const big = await inject({ method: 'POST', url: '/api/v1/identities', headers: server.auth, payload: { name: 'x', metadata: { pad: 'x'.repeat(100_000) } } });
    expect(big.statusCode).toBe(413);
    expect(big.json().code).toBe('BODY_TOO_LARGE');
    const hugeFile = await multipart([{ field: 'image', name: 'huge.jpg', data: Buffer.alloc(4 * 1024 * 1024, 7) }]);
    const upload = await inject({ method: 'POST', url: '/api/v1/detect', headers: { ...server.auth, ...hugeFile.headers }, payload: hugeFile.payload });
    expect(upload.statusCode).toBe(413);
    const manyPixels = await sharp({ create: { width: 4000, height: 3000, channels: 3, background: '#808080' } }).png().toBuffer();
    const pixels = await inject({ method: 'POST', url: '/api/v1/detect', headers: server.auth, payload: { image: manyPixels.toString('base64') } });
    expect(pixels.statusCode).toBe(413);
    expect(pixels.json()).toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    expect(pixels.json().detail).toContain('maxImagePixels');

    // 256 MB sent for real, chunked (no Content-Length), to the picture and import routes:
    // refused at the limit while the server's memory stays flat.
    const sendOnce = (route: string, contentType: string, headerLength?: number) =>
      new Promise<{ status: number; sent: number } | { lost: string; sent: number }>((resolve, reject) => {
        const url = new URL(route, server.url);
        const chunk = Buffer.alloc(1024 * 1024, 'A');
        let sent = 0;
        let failure = '';
        const req = http.request(url, { method: 'POST', headers: { ...server.auth, 'content-type': contentType, ...(headerLength ? { 'content-length': headerLength } : {}) } }, (res) => {
          res.resume();
          resolve({ status: res.statusCode!, sent });
          req.destroy();
        });
        req.on('error', (err: NodeJS.ErrnoException) => {
          if (sent === 0) reject(err);
          else failure = err.code ?? err.message;
        });
        // Settles when the connection ends without an answer (it used to wait forever).
        req.on('close', () => resolve({ lost: failure || 'closed', sent }));
        const pump = () => {
          while (sent < 256 * 1024 * 1024) {
            sent += chunk.length;
            if (!req.write(chunk)) return req.once('drain', pump);
          }
          req.end();
        };
        pump();
      });
    // The server answers 413 and closes while the client is still writing. A write that meets the
    // closed connection (EPIPE, ECONNRESET) can fail the request in the client before its parser
    // reads the answer already received: a race of the client and the kernel, not the server, so
    // such a send is tried again (at most twice); an answer, when there is one, must be 413.
    const send = async (route: string, contentType: string, headerLength?: number) => {
      const lost: string[] = [];
      for (let attempt = 0; attempt < 3; attempt++) {
        const result = await sendOnce(route, contentType, headerLength);
        if ('status' in result) return result;
        lost.push(`${result.lost} after ${result.sent} bytes`);
      }
      throw new Error(`${route}: no answer in 3 tries (${lost.join('; ')})`);
    };
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const json = await send('/api/v1/detect', 'application/json');
      expect(json.status).toBe(413);
      const imported = await send('/api/v1/gallery/import', 'application/gzip');
      expect(imported.status).toBe(413);
      const declared = await send('/api/v1/enroll', 'application/json', 256 * 1024 * 1024);
      expect(declared.status).toBe(413);
      expect(declared.sent).toBeLessThan(256 * 1024 * 1024);
    } finally {
      clearInterval(sampler);
    }
    const growthMb = (peak - before) / 2 ** 20;
    console.log(`oversized bodies: rss growth ${growthMb.toFixed(1)} MB while refusing 3 x 256 MB`);
    expect(growthMb).toBeLessThan(64);
    expect(fs.readdirSync(path.join(server.dir, 'data', 'tmp'))).toEqual([]);
  });

  it('rate-limits the expensive routes per key, and sends CORS headers only to configured origins', async () => {
    expect((await inject({ method: 'OPTIONS', url: '/api/v1/streams', headers: { origin: 'http://evil.example', 'access-control-request-method': 'GET' } })).headers['access-control-allow-origin']).toBeUndefined();
    const limited = await startTestServer({
      analyzer,
      listen: false,
      configure: (c) => {
        c.server.rateLimit = { max: 3, windowMs: 60_000 };
        c.server.cors = { origins: ['http://dashboard.example'] };
      },
    });
    try {
      const detect = (auth: Record<string, string>) => limited.app.inject({ method: 'POST', url: '/api/v1/detect', headers: auth, payload: { image: blank.toString('base64') } });
      for (let i = 0; i < 3; i++) expect((await detect(limited.auth)).statusCode).toBe(200);
      const refused = await detect(limited.auth);
      expect(refused.statusCode).toBe(429);
      expect(refused.headers['content-type']).toMatch(PROBLEM_TYPE);
      expect(refused.json().code).toBe('RATE_LIMITED');
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
      // Another key has its own allowance; cheap routes are not limited.
      expect((await detect(limited.readAuth)).statusCode).toBe(200);
      expect((await limited.app.inject({ url: '/api/v1/streams', headers: limited.auth })).statusCode).toBe(200);
      const preflight = await limited.app.inject({ method: 'OPTIONS', url: '/api/v1/streams', headers: { origin: 'http://dashboard.example', 'access-control-request-method': 'POST' } });
      expect(preflight.headers['access-control-allow-origin']).toBe('http://dashboard.example');
      const other = await limited.app.inject({ method: 'OPTIONS', url: '/api/v1/streams', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' } });
      expect(other.headers['access-control-allow-origin']).toBeUndefined();
    } finally {
      await limited.close();
    }
  });

  it('keeps stream definitions across restarts and starts the enabled ones again', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-restart-'));
    const first = await startTestServer({ analyzer, dir, listen: false });
    await first.app.inject({ method: 'POST', url: '/api/v1/streams', headers: first.auth, payload: { id: 'pattern', url: 'lavfi:testsrc2=size=160x120:rate=5', minFaceSize: 40 } });
    await first.app.inject({ method: 'POST', url: '/api/v1/streams', headers: first.auth, payload: { id: 'parked', url: 'lavfi:testsrc2=size=160x120:rate=5', enabled: false } });
    await waitFor(async () => (await first.app.inject({ url: '/api/v1/streams/pattern', headers: first.auth })).json().state === 'live', 20_000, 'pattern live');
    await first.close();

    const second = await startTestServer({ analyzer, dir, listen: false });
    try {
      const list = (await second.app.inject({ url: '/api/v1/streams', headers: second.auth })).json().streams as { id: string; enabled: boolean; options: object }[];
      expect(list.map((s) => s.id)).toEqual(['pattern', 'parked']);
      expect(list[0].options).toEqual({ minFaceSize: 40 });
      const live = await waitFor(async () => {
        const s = (await second.app.inject({ url: '/api/v1/streams/pattern', headers: second.auth })).json();
        return s.state === 'live' && s.stats.processed > 0 ? s : undefined;
      }, 20_000, 'the restored stream to be processed');
      expect(live.enabled).toBe(true);
      expect((await second.app.inject({ url: '/api/v1/streams/parked', headers: second.auth })).json().state).toBe('stopped');
    } finally {
      await second.close();
    }
  });

  it('reads the server settings from the environment and refuses bad ones', () => {
    const env = { FACESTREAM_PORT: '9123', FACESTREAM_API_KEYS: 'first-key-0123456789,second-key-0123456789', FACESTREAM_SOURCE_DIRS: '/srv/videos,/media', FACESTREAM_CORS_ORIGINS: 'https://a.example' };
    const config = loadConfig({ env });
    expect(config.server).toMatchObject({ port: 9123, auth: { keys: ['first-key-0123456789', 'second-key-0123456789'] }, sources: { allowedDirs: ['/srv/videos', '/media'] }, cors: { origins: ['https://a.example'] } });
    expect(() => loadConfig({ env: { FACESTREAM_API_KEYS: 'short' } })).toThrow(/server\.auth\.keys\.0: an API key needs at least 16 characters/);
    expect(() => loadConfig({ env: { FACESTREAM_PORT: '70000' } })).toThrow(/server\.port/);
    expect(() => loadConfig({ overrides: { server: { websocket: { maxQueuedMessages: 0 } } } })).toThrow(/server\.websocket\.maxQueuedMessages/);
  });

  it('explains a port that cannot be used', async () => {
    const busy = await startTestServer({ analyzer, listen: false });
    try {
      const config = { ...busy.ctx.config, gallery: { ...busy.ctx.config.gallery, dir: path.join(busy.dir, 'gallery2') }, server: { ...busy.ctx.config.server, port: Number(new URL(server.url).port), dataDir: path.join(busy.dir, 'data2') } };
      await expect(startServer(config, { analyzer, logger: capturingLogger('warn').logger })).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+: the port is in use/);
    } finally {
      await busy.close();
    }
  });

  it('generates a key on first start, stores only its hash, and replaces it on request', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-keys-'));
    const config = testConfig();
    config.gallery = { ...config.gallery, dir: path.join(dir, 'gallery') };
    config.server = { ...config.server, port: 0, dataDir: path.join(dir, 'data') };
    const quiet = capturingLogger('debug');
    const first = await startServer(config, { analyzer, listen: false, logger: quiet.logger });
    const key = first.generatedKey!;
    expect(key).toMatch(/^fsk_[A-Za-z0-9_-]{40,}$/);
    expect(first.keySource).toBe('generated');
    expect((await first.app.inject({ url: '/api/v1/streams', headers: { authorization: `Bearer ${key}` } })).statusCode).toBe(200);
    await first.close();
    const dbBytes = fs
      .readdirSync(path.join(dir, 'data'), { withFileTypes: true })
      .filter((f) => f.isFile())
      .map((f) => fs.readFileSync(path.join(dir, 'data', f.name)).toString('latin1'))
      .join('');
    expect(dbBytes).not.toContain(key);
    expect(quiet.lines.join('\n')).not.toContain(key);

    const second = await startServer(config, { analyzer, listen: false, logger: quiet.logger });
    expect(second.generatedKey).toBeUndefined();
    expect(second.keySource).toBe('stored');
    expect((await second.app.inject({ url: '/api/v1/streams', headers: { authorization: `Bearer ${key}` } })).statusCode).toBe(200);
    await second.close();

    const third = await startServer(config, { analyzer, listen: false, logger: quiet.logger, resetKey: true });
    expect(third.generatedKey).not.toBe(key);
    expect((await third.app.inject({ url: '/api/v1/streams', headers: { authorization: `Bearer ${key}` } })).statusCode).toBe(401);
    expect((await third.app.inject({ url: '/api/v1/streams', headers: { authorization: `Bearer ${third.generatedKey}` } })).statusCode).toBe(200);
    await third.close();
  });
});
