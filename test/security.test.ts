import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import zlib from 'node:zlib';
import type { InjectOptions } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import type { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { ServerStore } from '../src/server/store.js';
import { runCli } from './helpers/cli.js';
import { dataFile } from './helpers/paths.js';
import { sharedAnalyzer, startTestServer, TestClient, waitFor, type TestServer } from './helpers/server.js';

/** Credentials as people type them, in the places a URL can carry them. */
const SECRET_URLS: { url: string; secrets: string[] }[] = [
  { url: 'rtsp://alice:ab#c%zz@127.0.0.1:1/s', secrets: ['ab#c', 'c%zz', 'alice'] },
  { url: 'rtsp://bob:p/ss?w@rd@127.0.0.1:1/live', secrets: ['p/ss', 'w@rd', 'bob'] },
  { url: 'http://127.0.0.1:1/cgi?user=u&password=hunter2xyz&token=tk-998877', secrets: ['hunter2xyz', 'tk-998877'] },
];

const area = (f: { box: number[] }) => (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]);

describe('untrusted input never crashes, leaks or exhausts the server', () => {
  let analyzer: FaceAnalyzer;
  let server: TestServer;
  const logLines: string[] = [];
  let blank: Buffer;

  beforeAll(async () => {
    analyzer = await sharedAnalyzer();
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(chunk.toString('utf8'));
        done();
      },
    });
    server = await startTestServer({
      analyzer,
      // The server's own logger (with its redaction hook), at the most talkative level.
      logger: createLogger('trace', sink),
      configure: (c) => {
        c.server.auth = { ...c.server.auth, openRead: true };
        c.server.rateLimit = { max: 12, windowMs: 60_000 };
        c.server.cors = { origins: ['http://dashboard.example'] };
        c.server.sources = { ...c.server.sources, allowedHosts: ['127.0.0.1'] };
        c.ingest = { ...c.ingest, reconnect: { ...c.ingest.reconnect, initialDelayMs: 200, maxDelayMs: 1000 } };
      },
    });
    blank = await sharp({ create: { width: 96, height: 96, channels: 3, background: '#777' } }).jpeg().toBuffer();
  });
  afterAll(async () => {
    await server?.close();
    await analyzer?.runtime.close();
  });

  const inject = (opts: InjectOptions) => server.app.inject(opts);

  describe('crashes and crash loops', () => {
    it('refuses stream URLs with NUL, CR/LF or spaces (400), and a stored one is restored as a failed stream, not a crash', async () => {
      for (const url of ['rtsp://127.0.0.1/s\u0000x', 'rtsp://127.0.0.1/s\r\nX-Injected: 1', 'rtsp://127.0.0.1/a b', 'http://127.0.0.1/\u0007', 'lavfi:testsrc2\u0000']) {
        const res = await inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { id: 'bad', url } });
        expect(res.statusCode, JSON.stringify(url)).toBe(400);
        expect(res.json().code).toBe('BAD_REQUEST');
      }
      expect((await inject({ url: '/api/v1/streams/bad', headers: server.auth })).statusCode).toBe(404);

      // A definition stored before validation existed (or written by hand) is restored as a failed stream.
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-restore-'));
      const store = new ServerStore(path.join(dir, 'data'));
      const now = new Date().toISOString();
      store.insertStream({ id: 'poison', name: 'poison', url: 'rtsp://127.0.0.1/s\u0000x', enabled: true, createdAt: now, updatedAt: now });
      store.close();
      const restarted = await startTestServer({ analyzer, dir, listen: false });
      try {
        await new Promise((r) => setTimeout(r, 1500));
        const s = (await restarted.app.inject({ url: '/api/v1/streams/poison', headers: restarted.auth })).json();
        expect(s).toMatchObject({ id: 'poison', state: 'failed', error: { code: 'BAD_REQUEST' } });
        expect((await restarted.app.inject({ url: '/health' })).statusCode).toBe(200);
      } finally {
        await restarted.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('imports are streamed with a per-record limit, checked before anything is written, and say where they stopped', async () => {
      const { templates: before } = (await inject({ url: '/api/v1/gallery', headers: server.auth })).json();
      const header = { format: 'facestream-gallery', version: 1, modelId: analyzer.embedder.modelId, dimension: analyzer.embedder.dimension, identities: 2, templates: 2 };
      // A small gzip file that expands to one 64 MB line.
      const bomb = zlib.gzipSync(Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n{"type":"identity","id":"x","name":"`), Buffer.alloc(64 * 1024 * 1024, 'a')]));
      expect(bomb.length).toBeLessThan(200 * 1024);
      const rss0 = process.memoryUsage().rss;
      let peak = rss0;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
      const big = await inject({ method: 'POST', url: '/api/v1/gallery/import', headers: { ...server.auth, 'content-type': 'application/gzip' }, payload: bomb });
      clearInterval(sampler);
      expect(big.statusCode).toBe(413);
      expect(big.json()).toMatchObject({ code: 'BODY_TOO_LARGE', details: { line: 2 } });
      expect((peak - rss0) / 2 ** 20).toBeLessThan(48);

      const unit = () => {
        const v = Float32Array.from({ length: analyzer.embedder.dimension }, (_, i) => Math.cos(i));
        const n = Math.hypot(...v);
        return v.map((x) => x / n);
      };
      const b64 = (v: Float32Array) => Buffer.from(v.buffer).toString('base64');
      const template = (identityId: string, embedding: Float32Array, extra: Record<string, unknown> = {}) => ({ type: 'template', identityId, source: 'x.jpg', modelId: analyzer.embedder.modelId, embedding: b64(embedding), ...extra });
      const nan = unit();
      nan.fill(NaN);
      const scaled = unit().map((x) => x * 1000);
      // As text: JSON.stringify itself would overflow on it.
      const deep = `{"type":"identity","id":"c","name":"C","metadata":${'['.repeat(5000)}0${']'.repeat(5000)}}`;
      const lines = (...records: unknown[]) => `${[header, ...records].map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n')}\n`;
      // Good records first, the bad one after: nothing of the file may be committed.
      for (const [what, bad] of [
        ['all-NaN template', template('b', nan)],
        ['template scaled by 1000', template('b', scaled)],
        ['crop without landmarks', template('b', unit(), { crop: blank.toString('base64'), cropGeometry: { box: [1, 1, 50, 50], landmarks: [] } })],
        ['metadata 5000 levels deep', deep],
      ] as const) {
        const body = lines({ type: 'identity', id: 'a', name: 'A' }, template('a', unit()), { type: 'identity', id: 'b', name: 'B' }, bad);
        const res = await inject({ method: 'POST', url: '/api/v1/gallery/import', headers: { ...server.auth, 'content-type': 'application/x-ndjson' }, payload: body });
        expect(res.statusCode, what).toBe(400);
        expect(res.json().details.line, what).toBeGreaterThanOrEqual(4);
      }
      const after = (await inject({ url: '/api/v1/gallery', headers: server.auth })).json();
      expect(after.templates).toBe(before);
      expect((await inject({ url: '/api/v1/identities/a', headers: server.auth })).statusCode).toBe(404);
    });

    it('an import that fails while writing (a crop that cannot be re-embedded) says what was committed before it', async () => {
      const enrolled = await inject({ method: 'POST', url: '/api/v1/enroll', headers: server.auth, payload: { id: 'obama', name: 'Barack Obama', image: fs.readFileSync(dataFile('faces', 'barack_obama', '1.jpg')).toString('base64') } });
      expect(enrolled.statusCode).toBe(201);
      const exported = await inject({ url: '/api/v1/gallery/export', headers: server.auth });
      const records = zlib.gunzipSync(exported.rawPayload).toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      // As if made by another model: every template is re-embedded from its crop.
      const header = { ...records[0], modelId: 'some-other-model' };
      const obama = records.filter((r) => r.type !== undefined && (r.id === 'obama' || r.identityId === 'obama')).map((r) => (r.type === 'identity' ? { ...r, id: 'obama2' } : { ...r, identityId: 'obama2', modelId: 'some-other-model', contentHash: null }));
      const broken = [{ type: 'identity', id: 'broken', name: 'Broken' }, { ...obama[1], identityId: 'broken', crop: Buffer.from('not a picture').toString('base64') }];
      const body = `${[header, ...obama, ...broken].map((r) => JSON.stringify(r)).join('\n')}\n`;
      const res = await inject({ method: 'POST', url: '/api/v1/gallery/import', headers: { ...server.auth, 'content-type': 'application/x-ndjson' }, payload: body });
      expect(res.statusCode).toBe(422);
      expect(res.json().detail).toMatch(/import stopped at .*:5: .*committed before it: 1 identities created, 0 merged, 1 templates/);
      expect(res.json().details).toMatchObject({ line: 5, identitiesCreated: 1, templatesAdded: 1 });
      expect((await inject({ url: '/api/v1/identities/obama2', headers: server.auth })).json().templates).toBe(1);
      expect((await inject({ url: '/api/v1/identities/broken', headers: server.auth })).statusCode).toBe(404);
    });

    it('answers malformed bodies with 400 problems, never 500', async () => {
      // Written as text: JSON.stringify itself would overflow on such values.
      const deepObject = `${'{"a":'.repeat(8000)}"x"${'}'.repeat(8000)}`;
      const deepArray = `${'['.repeat(30_000)}${']'.repeat(30_000)}`;
      const json = { 'content-type': 'application/json' };
      const cases: InjectOptions[] = [
        { method: 'POST', url: '/api/v1/identities', headers: json, payload: `{"name":"Deep","metadata":${deepObject}}` },
        { method: 'POST', url: '/api/v1/identities', headers: json, payload: `{"name":"Deep","metadata":${deepArray}}` },
        { method: 'PATCH', url: '/api/v1/identities/obama', headers: json, payload: `{"metadata":${deepArray}}` },
        { method: 'POST', url: '/api/v1/enroll', headers: json, payload: `{"name":"Deep","image":"${blank.toString('base64')}","metadata":${deepObject}}` },
        { method: 'POST', url: '/api/v1/identities', headers: json, payload: '{"name":"N","metadata":{"n":1e400}}' },
        { method: 'POST', url: '/api/v1/streams', headers: { 'content-type': 'application/json' }, payload: `{"url":${deepArray}}` },
        { method: 'POST', url: '/api/v1/verify', headers: { 'content-type': 'application/json' }, payload: '{"image1":"!!","image2":"??"}' },
        { method: 'POST', url: '/api/v1/identities', headers: { 'content-type': 'application/json' }, payload: '{"name":"x","__proto__":{"admin":true}}' },
      ];
      for (const c of cases) {
        const res = await inject({ ...c, headers: { ...server.auth, ...c.headers } });
        expect(res.statusCode, `${c.method} ${c.url}`).toBeGreaterThanOrEqual(400);
        expect(res.statusCode, `${c.method} ${c.url}: ${res.body.slice(0, 200)}`).toBeLessThan(500);
        expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      }
      // DELETE with a JSON content type and no body is an ordinary DELETE.
      await inject({ method: 'POST', url: '/api/v1/identities', headers: server.auth, payload: { id: 'temp', name: 'Temp' } });
      const del = await inject({ method: 'DELETE', url: '/api/v1/identities/temp', headers: { ...server.auth, 'content-type': 'application/json' } });
      expect(del.statusCode).toBe(204);
    });
  });

  describe('resource exhaustion', () => {
    it('refuses SVG pictures (a 270-byte filter bomb) at once instead of decoding them for minutes', async () => {
      const bomb = Buffer.from(
        '<svg xmlns="http://www.w3.org/2000/svg" width="6000" height="6000"><filter id="f"><feGaussianBlur stdDeviation="900"/><feMorphology operator="dilate" radius="400"/></filter><rect width="6000" height="6000" fill="red" filter="url(#f)"/></svg>',
      );
      for (const [name, data] of [['plain', bomb], ['gzipped (svgz)', zlib.gzipSync(bomb)], ['with a BOM', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bomb])]] as const) {
        const started = Date.now();
        const res = await inject({ method: 'POST', url: '/api/v1/detect', headers: server.auth, payload: { image: data.toString('base64') } });
        expect(res.statusCode, name).toBe(415);
        expect(res.json().code).toBe('UNSUPPORTED_MEDIA_TYPE');
        expect(Date.now() - started).toBeLessThan(5000);
      }
    });

    it('a 5 KB 1-bit 6320x6320 PNG costs a bounded amount of memory, and faces come back in its own pixels', async () => {
      const side = 6320;
      // A face pasted at 4x into a nearly empty 40 MP 1-bit picture.
      const face = await sharp(dataFile('faces', 'barack_obama', '1.jpg')).resize(800).greyscale().threshold(128).png().toBuffer();
      const png = await sharp({ create: { width: side, height: side, channels: 3, background: '#fff' } })
        .composite([{ input: face, left: 3000, top: 3000 }])
        .greyscale()
        .png({ palette: true, colours: 2, compressionLevel: 9 })
        .toBuffer();
      expect(png.length).toBeLessThan(200 * 1024);
      global.gc?.();
      const rss0 = process.memoryUsage().rss;
      let peak = rss0;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
      const started = Date.now();
      const res = await inject({ method: 'POST', url: '/api/v1/detect', headers: server.auth, payload: { image: png.toString('base64') } });
      const firstMb = (peak - rss0) / 2 ** 20;
      // The smallest face the API lets a client ask for: the pyramid must not enlarge the shrunk picture again.
      const smallest = await inject({ method: 'POST', url: '/api/v1/detect?minFaceSize=12', headers: server.auth, payload: { image: png.toString('base64') } });
      clearInterval(sampler);
      expect(smallest.statusCode).toBe(200);
      const growthMb = (peak - rss0) / 2 ** 20;
      console.log(`6320x6320 1-bit PNG: ${png.length} bytes, two /detect calls ${Date.now() - started} ms, peak rss growth ${firstMb.toFixed(0)} MB (default smallest face), ${growthMb.toFixed(0)} MB (then minFaceSize=12)`);
      expect(res.statusCode).toBe(200);
      const body = res.json() as { width: number; height: number; faces: { box: number[] }[] };
      expect([body.width, body.height]).toEqual([side, side]);
      // Before: 3.4 GB kept and 15-18 s for one call. Decoded at limits.maxDecodeSide, SECURITY.md states the bound.
      expect(growthMb).toBeLessThan(1024);
      const biggest = [...body.faces].sort((a, b) => area(b) - area(a))[0];
      if (biggest) expect(biggest.box[0]).toBeGreaterThan(2900);
    });

    it('answers in the picture\'s own pixels when it was shrunk on load', async () => {
      const file = dataFile('faces', 'barack_obama', '1.jpg');
      const meta = await sharp(file).metadata();
      const detect = async (data: Buffer) => (await inject({ method: 'POST', url: '/api/v1/detect', headers: server.auth, payload: { image: data.toString('base64') } })).json() as { width: number; faces: { box: number[]; landmarks: number[][] }[] };
      const small = await detect(fs.readFileSync(file));
      const k = 4000 / meta.width!;
      const big = await detect(await sharp(file).resize(4000).jpeg({ quality: 92 }).toBuffer());
      expect(big.width).toBe(4000);
      const a = [...small.faces].sort((x, y) => area(y) - area(x))[0];
      const b = [...big.faces].sort((x, y) => area(y) - area(x))[0];
      const side = (a.box[2] - a.box[0]) * k;
      for (let i = 0; i < 4; i++) expect(Math.abs(b.box[i] - a.box[i] * k)).toBeLessThan(0.1 * side);
      expect(Math.abs(b.landmarks[0][0] - a.landmarks[0][0] * k)).toBeLessThan(0.1 * side);
    });

    it('stops reading a multipart body at the first file past what the route takes', async () => {
      const boundary = 'facestreamboundary42';
      const url = new URL('/api/v1/detect', server.url);
      const result = await new Promise<{ status: number; body: string; ended: boolean }>((resolve, reject) => {
        let ended = false;
        const req = http.request(url, { method: 'POST', headers: { ...server.auth, 'content-type': `multipart/form-data; boundary=${boundary}` } }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => {
            resolve({ status: res.statusCode!, body, ended });
            req.destroy();
          });
        });
        req.on('error', () => undefined);
        const timer = setTimeout(() => reject(new Error('no answer while the second file was still being sent')), 10_000);
        req.on('close', () => clearTimeout(timer));
        req.write(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`);
        req.write(blank);
        req.write(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="image2"; filename="b.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`);
        // The second file never ends: only a server that stops reading can answer.
        const chunk = Buffer.alloc(256 * 1024, 1);
        let sent = 0;
        const pump = () => {
          if (req.destroyed || sent > 8 * 1024 * 1024) {
            ended = true;
            return;
          }
          sent += chunk.length;
          req.write(chunk);
          setTimeout(pump, 50);
        };
        pump();
      });
      expect(result.ended).toBe(false);
      expect(result.status).toBe(413);
      expect(JSON.parse(result.body).code).toBe('TOO_MANY_FILES');
    });

    it('checks every vector entering or searching the gallery', async () => {
      const g = server.ctx.gallery;
      const v = new Float32Array(g.dimension).fill(1 / Math.sqrt(g.dimension));
      const bad = new Float32Array(g.dimension).fill(NaN);
      expect(() => g.addTemplates({ name: 'nan' }, [{ source: 'x', embedding: bad }])).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
      expect(() => g.addTemplates({ name: 'big' }, [{ source: 'x', embedding: v.map((x) => x * 1000) }])).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
      expect(() => g.search(bad)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
      expect(g.getIdentity('nan')).toBeUndefined();
    });
  });

  describe('secrets and access', () => {
    it('never shows camera credentials in the API, the WebSocket hello or the log, whatever the password holds', async () => {
      for (const [i, { url }] of SECRET_URLS.entries()) {
        const res = await inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { id: `cam${i}`, url } });
        expect(res.statusCode, url).toBe(201);
      }
      // ffmpeg has tried and failed (connection refused), so its messages are in the answers too.
      await waitFor(async () => {
        const list = (await inject({ url: '/api/v1/streams', headers: server.auth })).json().streams as { id: string; error: unknown }[];
        return list.filter((s) => s.id.startsWith('cam')).every((s) => s.error !== null);
      }, 20_000, 'stream errors');
      const client = new TestClient(`${server.wsUrl}/api/v1/live`, { headers: server.auth });
      await client.opened();
      await client.until(() => client.of('hello').length > 0, 10_000, 'hello');
      const texts = [(await inject({ url: '/api/v1/streams', headers: server.auth })).body, JSON.stringify(client.texts), logLines.join('\n')];
      for (const i of [0, 1, 2]) texts.push((await inject({ url: `/api/v1/streams/cam${i}`, headers: server.auth })).body);
      client.close();
      expect(logLines.join('\n')).toContain('127.0.0.1:1');
      for (const { url, secrets } of SECRET_URLS) {
        for (const t of texts) for (const s of secrets) expect(t, `${s} of ${url}`).not.toContain(s);
      }
      const listed = (await inject({ url: '/api/v1/streams/cam0', headers: server.auth })).json();
      expect(listed.url).toBe('rtsp://***@127.0.0.1:1/s');
      for (const i of [0, 1, 2]) await inject({ method: 'DELETE', url: `/api/v1/streams/cam${i}`, headers: server.auth });
    });

    it('never shows camera credentials on the CLI stderr, even at trace level', async () => {
      const { url, secrets } = SECRET_URLS[0];
      const run = await runCli(['--log-level', 'trace', 'run', url, '--duration', '3']);
      expect(run.stderr).toContain('127.0.0.1:1');
      for (const s of secrets) expect(run.stderr).not.toContain(s);
    });

    it('keeps v4l2 paths and hosts inside the source policy', async () => {
      for (const url of ['v4l2:/etc/passwd', 'v4l2:/dev/sda', 'rtsp://10.1.2.3/s', 'http://localhost:22/']) {
        const res = await inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { id: 'probe', url } });
        expect(res.statusCode, url).toBe(403);
        expect(res.json().code).toBe('SOURCE_NOT_ALLOWED');
      }
    });

    it('rate-limits made-up keys by address, and refuses WebSocket pages from other origins', async () => {
      const detect = (key: string) => inject({ method: 'POST', url: '/api/v1/detect', headers: { authorization: `Bearer ${key}` }, payload: { image: blank.toString('base64') } });
      const statuses: number[] = [];
      for (let i = 0; i < 14; i++) statuses.push((await detect(`made-up-key-${i}-0123456789abcdef`)).statusCode);
      expect(statuses.slice(0, 12).every((s) => s === 200)).toBe(true);
      expect(statuses.slice(12)).toEqual([429, 429]);

      const evil = new TestClient(`${server.wsUrl}/api/v1/live`, { headers: { ...server.auth, origin: 'https://evil.example' } });
      await expect(evil.opened()).rejects.toThrow(/403/);
      for (const origin of [server.url, 'http://dashboard.example']) {
        const ok = new TestClient(`${server.wsUrl}/api/v1/live`, { headers: { ...server.auth, origin } });
        await ok.opened();
        ok.close();
      }
    });

    it('keeps face crops to write keys, with template ids that cannot be guessed', async () => {
      const templates = (await inject({ url: '/api/v1/identities/obama/templates', headers: server.readAuth })).json().templates as { id: string }[];
      expect(templates.length).toBeGreaterThan(0);
      const id = templates[0].id;
      expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect((await inject({ url: `/api/v1/templates/${id}/crop`, headers: server.readAuth })).statusCode).toBe(403);
      expect((await inject({ url: `/api/v1/templates/${id}/crop` })).statusCode).toBe(401);
      expect((await inject({ url: `/api/v1/templates/${id}/crop`, headers: server.auth })).statusCode).toBe(200);
      // Neighbours of a known id are not ids.
      const flipped = `${id.slice(0, 7)}${id[7] === 'A' ? 'B' : 'A'}${id.slice(8)}`;
      expect((await inject({ url: `/api/v1/templates/${flipped}`, headers: server.readAuth })).statusCode).toBe(404);
      expect((await inject({ url: '/api/v1/templates/1', headers: server.readAuth })).statusCode).toBe(400);
    });

    it('creates the gallery and server data for its own user only (0700 / 0600), and tightens old ones', async () => {
      const mode = (p: string) => fs.statSync(p).mode & 0o777;
      const gallery = path.join(server.dir, 'gallery');
      expect(mode(gallery)).toBe(0o700);
      expect(mode(path.join(gallery, 'gallery.db'))).toBe(0o600);
      expect(mode(path.join(server.dir, 'data'))).toBe(0o700);
      expect(mode(path.join(server.dir, 'data', 'server.db'))).toBe(0o600);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-perm-'));
      const store = new ServerStore(path.join(dir, 'data'));
      store.close();
      fs.chmodSync(path.join(dir, 'data'), 0o755);
      fs.chmodSync(path.join(dir, 'data', 'server.db'), 0o644);
      new ServerStore(path.join(dir, 'data')).close();
      expect(mode(path.join(dir, 'data'))).toBe(0o700);
      expect(mode(path.join(dir, 'data', 'server.db'))).toBe(0o600);
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('sends a Content-Security-Policy, frame and sniffing headers with the viewer', async () => {
      for (const url of ['/', '/app.js', '/api/v1/streams']) {
        const res = await inject({ url, headers: server.readAuth });
        const csp = String(res.headers['content-security-policy']);
        expect(csp, url).toContain("frame-ancestors 'none'");
        expect(csp).toContain("script-src 'self'");
        expect(res.headers['x-frame-options']).toBe('DENY');
        expect(res.headers['x-content-type-options']).toBe('nosniff');
      }
    });
  });
});
