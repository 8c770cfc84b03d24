import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { dataFile } from './helpers/paths.js';
import { READ_KEY, sharedAnalyzer, startTestServer, WRITE_KEY, type TestServer } from './helpers/server.js';

const OBAMA = (n: number) => dataFile('faces', 'barack_obama', `${n}.jpg`);
const BIDEN = (n: number) => dataFile('faces', 'joe_biden', `${n}.jpg`);
const KIT = dataFile('faces', 'kit_harington', '1.jpg');
const SCENE = dataFile('scenes', 'obama_and_biden.jpg');

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A multipart form as the clients build it (form-data, requests' files=, curl -F): files by field name, text fields. */
function form(files: Record<string, string | Buffer>, fields: Record<string, string> = {}): FormData {
  const fd = new FormData();
  for (const [field, file] of Object.entries(files)) {
    const data = typeof file === 'string' ? fs.readFileSync(file) : file;
    fd.append(field, new Blob([new Uint8Array(data)], { type: 'image/jpeg' }), typeof file === 'string' ? path.basename(file) : `${field}.jpg`);
  }
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  return fd;
}

/** Double Take's box from a DeepStack or CompreFace face (its normalize()): top/left/width/height from the corners. */
const doubleTakeBox = (b: Json) => ({ top: b.y_min, left: b.x_min, width: b.x_max - b.x_min, height: b.y_max - b.y_min });

function expectPixelBox(b: Json, width: number, height: number): void {
  for (const k of ['x_min', 'y_min', 'x_max', 'y_max']) expect(Number.isInteger(b[k]), k).toBe(true);
  expect(b.x_min).toBeGreaterThanOrEqual(0);
  expect(b.y_min).toBeGreaterThanOrEqual(0);
  expect(b.x_max).toBeLessThanOrEqual(width);
  expect(b.y_max).toBeLessThanOrEqual(height);
  const box = doubleTakeBox(b);
  expect(box.width).toBeGreaterThan(0);
  expect(box.height).toBeGreaterThan(0);
}

describe('DeepStack- and CompreFace-compatible APIs (real models and gallery, over HTTP)', () => {
  let analyzer: FaceAnalyzer;
  let server: TestServer;
  let blank: Buffer;
  const size = async (file: string) => {
    const m = await sharp(file).metadata();
    return { width: m.width!, height: m.height! };
  };
  const post = async (route: string, body: FormData | string | undefined, headers: Record<string, string> = {}, method = 'POST') => {
    const res = await fetch(`${server.url}${route}`, { method, body, headers });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type') ?? '', body: (text ? JSON.parse(text) : null) as Json };
  };

  /** Faces the native API finds in a picture: the compat APIs must find the same ones. */
  const nativeFaces = async (file: string): Promise<number> => ((await post('/api/v1/detect', form({ file }), { authorization: `Bearer ${READ_KEY}` })).body.faces as unknown[]).length;

  beforeAll(async () => {
    analyzer = await sharedAnalyzer();
    server = await startTestServer({ analyzer, configure: (c) => (c.server.rateLimit = { max: 0, windowMs: 60_000 }) });
    blank = await sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 120, g: 130, b: 140 } } }).jpeg().toBuffer();
  });
  afterAll(async () => {
    await server?.close();
    await analyzer?.runtime.close();
  });

  describe('DeepStack (/v1/vision/face)', () => {
    const ds = (endpoint: string, files: Record<string, string | Buffer>, fields: Record<string, string> = {}, key: string | null = WRITE_KEY) =>
      post(`/v1/vision/face${endpoint}`, form(files, key === null ? fields : { ...fields, api_key: key }));

    it('registers pictures under a userid as Double Take trains (image + userid + api_key) and as the DeepStack docs show (image1, image2)', async () => {
      const dt = await ds('/register', { image: OBAMA(1) }, { userid: 'barack' });
      expect(dt.status).toBe(200);
      expect(dt.body).toMatchObject({ success: true, message: 'face added' });
      const docs = await ds('/register', { image1: OBAMA(3), image2: OBAMA(4) }, { userid: 'barack' });
      expect(docs.body).toMatchObject({ success: true, message: 'face added' });
      expect((await ds('/register', { image: BIDEN(1) }, { userid: 'joe' })).body.success).toBe(true);
      // Double Take retrains with the same picture: still a success.
      expect((await ds('/register', { image: OBAMA(1) }, { userid: 'barack' })).body).toMatchObject({ success: true });
      expect(server.ctx.gallery.requireIdentity('barack').templates).toBe(3);
    });

    it('recognizes as Double Take and Home Assistant read it: success, predictions[].userid, confidence, corners', async () => {
      const { width, height } = await size(OBAMA(2));
      const r = await ds('/recognize', { image: OBAMA(2) });
      expect(r.status).toBe(200);
      expect(r.body.success).toBe(true);
      expect(r.body.predictions).toHaveLength(1);
      const p = r.body.predictions[0];
      expect(p.userid).toBe('barack');
      // Double Take's defaults: a match at 60 %, unknown under 40 %; DeepStack's min_confidence 0.67.
      expect(p.confidence * 100).toBeGreaterThanOrEqual(67);
      expect(p.confidence).toBeLessThanOrEqual(1);
      expectPixelBox(p, width, height);
      expect(doubleTakeBox(p).width).toBeGreaterThan(width / 5);

      const stranger = await ds('/recognize', { image: KIT });
      expect(stranger.body.predictions).toEqual([expect.objectContaining({ userid: 'unknown', confidence: 0 })]);
      const strict = await ds('/recognize', { image: OBAMA(2) }, { min_confidence: '0.999' });
      expect(strict.body.predictions[0]).toMatchObject({ userid: 'unknown', confidence: 0 });
      const loose = await ds('/recognize', { image: OBAMA(2) }, { min_confidence: '0.30' });
      expect(loose.body.predictions[0].userid).toBe('barack');

      // Two people in front, small faces behind them that nobody enrolled.
      const both = await ds('/recognize', { image: SCENE });
      const inScene = await nativeFaces(SCENE);
      expect(inScene).toBeGreaterThan(2);
      expect(both.body.predictions.map((x: Json) => x.userid).sort()).toEqual(['barack', 'joe', ...Array(inScene - 2).fill('unknown')]);
      expect((await ds('/recognize', { image: blank })).body).toMatchObject({ success: true, predictions: [] });
    });

    it('detects faces and matches two pictures', async () => {
      const { width, height } = await size(SCENE);
      const d = await ds('', { image: SCENE }, {}, READ_KEY);
      expect(d.body.success).toBe(true);
      const inScene = await nativeFaces(SCENE);
      expect(d.body.predictions).toHaveLength(inScene);
      for (const p of d.body.predictions) {
        expect(p.confidence).toBeGreaterThan(0.7);
        expect(p.confidence).toBeLessThanOrEqual(1);
        expectPixelBox(p, width, height);
      }
      const sure = await ds('', { image: SCENE }, { min_confidence: '0.999' }, READ_KEY);
      expect(sure.body.predictions.length).toBeLessThan(inScene);
      // A picture larger than the decode size is analysed shrunk; the corners are in its own pixels.
      const one = (await ds('', { image: OBAMA(2) }, {}, READ_KEY)).body.predictions[0];
      const original = await size(OBAMA(2));
      const factor = 4000 / original.width;
      const big = await sharp(OBAMA(2)).resize({ width: 4000 }).jpeg().toBuffer();
      const scaled = (await ds('', { image: big }, {}, READ_KEY)).body.predictions[0];
      const faceWidth = (one.x_max - one.x_min) * factor;
      for (const k of ['x_min', 'y_min', 'x_max', 'y_max']) expect(Math.abs(scaled[k] - one[k] * factor), k).toBeLessThan(0.1 * faceWidth);
      const same = await ds('/match', { image1: OBAMA(1), image2: OBAMA(2) });
      const other = await ds('/match', { image1: OBAMA(1), image2: BIDEN(2) });
      expect(same.body.success).toBe(true);
      expect(same.body.similarity).toBeGreaterThan(0.67);
      expect(other.body.similarity).toBeLessThan(0.67);
      const noFace = await ds('/match', { image1: OBAMA(1), image2: blank });
      expect(noFace.status).toBeGreaterThanOrEqual(400);
      expect(noFace.body).toMatchObject({ success: false, error: expect.stringMatching(/no face/i) });
    });

    it('lists and deletes userids (Python requests send data= urlencoded, Double Take multipart)', async () => {
      const list = await post('/v1/vision/face/list', undefined, { authorization: `Bearer ${READ_KEY}` });
      expect(list.body).toMatchObject({ success: true, faces: expect.arrayContaining(['barack', 'joe']) });
      const del = await post('/v1/vision/face/delete', new URLSearchParams({ userid: 'joe', api_key: WRITE_KEY }).toString(), { 'content-type': 'application/x-www-form-urlencoded' });
      expect(del.status).toBe(200);
      expect(del.body.success).toBe(true);
      expect(server.ctx.gallery.getIdentity('joe')).toBeUndefined();
      expect((await ds('/delete', {}, { userid: 'joe' })).body.success).toBe(true);
      expect((await post('/v1/vision/face/list', undefined, { authorization: `Bearer ${READ_KEY}` })).body.faces).not.toContain('joe');
    });

    it('answers errors as DeepStack does ({success: false, error}), with the same keys and roles as the native API', async () => {
      // deepstack-python sends api_key="" when none is configured.
      const none = await ds('/recognize', { image: OBAMA(2) }, {}, '');
      expect(none.status).toBe(401);
      expect(none.body).toMatchObject({ success: false, error: expect.any(String) });
      expect((await ds('/recognize', { image: OBAMA(2) }, {}, 'not-a-key-0123456789')).status).toBe(401);
      const readOnly = await ds('/register', { image: OBAMA(5) }, { userid: 'barack' }, READ_KEY);
      expect(readOnly.status).toBe(403);
      expect(readOnly.body.success).toBe(false);
      const bearer = await post('/v1/vision/face/recognize', form({ image: OBAMA(2) }), { authorization: `Bearer ${READ_KEY}` });
      expect(bearer.body.predictions[0].userid).toBe('barack');
      const noImage = await ds('/recognize', {});
      expect(noImage.status).toBe(400);
      expect(noImage.body).toEqual({ success: false, error: 'No valid image file found', code: 400, duration: 0 });
      expect((await ds('/register', { image: OBAMA(5) }, {})).body).toMatchObject({ success: false, error: 'user id not specified' });
      const notAPicture = await ds('/recognize', { image: Buffer.from('this is not a picture') });
      expect(notAPicture.status).toBe(422);
      expect(notAPicture.body.success).toBe(false);
      const faceless = await ds('/register', { image: blank }, { userid: 'nobody' });
      expect(faceless.body).toMatchObject({ success: false, error: expect.stringMatching(/no face/i) });
      expect(server.ctx.gallery.getIdentity('nobody')).toBeUndefined();
    });
  });

  describe('CompreFace (/api/v1/recognition, /detection, /verification)', () => {
    const headers = (key = WRITE_KEY) => ({ 'x-api-key': key });
    let obamaImageId = '';

    it('adds examples as Double Take trains (POST faces?subject=, multipart file, x-api-key) and in base64 JSON', async () => {
      // A gallery of its own: the DeepStack tests' identities go first.
      const before = server.ctx.gallery.counts().identities;
      expect(before).toBeGreaterThan(0);
      const cleared = await post('/api/v1/recognition/subjects', undefined, headers(), 'DELETE');
      expect(cleared.body).toEqual({ deleted: before });
      expect(server.ctx.gallery.counts()).toEqual({ identities: 0, templates: 0 });
      const r = await post('/api/v1/recognition/faces?subject=obama', form({ file: OBAMA(1) }), headers());
      expect(r.status).toBe(201);
      expect(r.body).toEqual({ image_id: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/), subject: 'obama' });
      obamaImageId = r.body.image_id;
      const b64 = await post('/api/v1/recognition/faces?subject=obama&det_prob_threshold=0.8', JSON.stringify({ file: fs.readFileSync(OBAMA(3)).toString('base64') }), { ...headers(), 'content-type': 'application/json' });
      expect(b64.status).toBe(201);
      expect(b64.body.subject).toBe('obama');
      expect((await post('/api/v1/recognition/faces?subject=biden', form({ file: BIDEN(1) }), headers())).status).toBe(201);
      const again = await post('/api/v1/recognition/faces?subject=obama', form({ file: OBAMA(1) }), headers());
      expect(again.body).toEqual({ image_id: obamaImageId, subject: 'obama' });
      const faceless = await post('/api/v1/recognition/faces?subject=nobody', form({ file: blank }), headers());
      expect(faceless.status).toBe(400);
      expect(faceless.body).toEqual({ message: 'No face is found in the given image', code: 28 });
    });

    it('recognizes with the request Double Take sends (?face_plugins=&det_prob_threshold=0.8) and every field it reads', async () => {
      const { width, height } = await size(OBAMA(2));
      const r = await post('/api/v1/recognition/recognize?face_plugins=&det_prob_threshold=0.8', form({ file: OBAMA(2) }), headers(READ_KEY));
      expect(r.status).toBe(200);
      expect(r.body.result).toHaveLength(1);
      const face = r.body.result[0];
      expect(face.subjects).toHaveLength(1);
      expect(face.subjects[0].subject).toBe('obama');
      expect(face.subjects[0].similarity * 100).toBeGreaterThanOrEqual(60);
      expect(face.box.probability).toBeGreaterThan(0.8);
      expectPixelBox(face.box, width, height);
      expect(face).not.toHaveProperty('age');
      expect(face).not.toHaveProperty('embedding');
      expect(r.body).not.toHaveProperty('plugins_versions');

      // No face: 400 with code 28, which Double Take reads as "nothing found".
      const none = await post('/api/v1/recognition/recognize?face_plugins=&det_prob_threshold=0.8', form({ file: blank }), headers());
      expect(none.status).toBe(400);
      expect(none.body).toEqual({ message: 'No face is found in the given image', code: 28 });
    });

    it('takes limit, prediction_count, face plugins, status and base64 JSON', async () => {
      const all = await post('/api/v1/recognition/recognize?limit=2&prediction_count=2&face_plugins=age,gender,landmarks,calculator,mask&status=true', form({ file: SCENE }), headers());
      expect(all.body.result).toHaveLength(2);
      const areas = all.body.result.map((f: Json) => (f.box.x_max - f.box.x_min) * (f.box.y_max - f.box.y_min));
      expect(areas[0]).toBeGreaterThanOrEqual(areas[1]);
      for (const f of all.body.result) {
        expect(f.subjects).toHaveLength(2);
        expect(f.subjects[0].similarity).toBeGreaterThanOrEqual(f.subjects[1].similarity);
        expect(f.age).toEqual({ probability: null, low: expect.any(Number), high: expect.any(Number) });
        expect(f.age.low).toBeGreaterThan(15);
        expect(f.gender).toEqual({ value: expect.stringMatching(/^(male|female)$/), probability: expect.any(Number) });
        expect(f.gender.probability).toBeGreaterThanOrEqual(0.5);
        expect(f.landmarks).toHaveLength(5);
        expect(f.embedding).toHaveLength(analyzer.embedder.dimension);
        expect(f).not.toHaveProperty('mask');
      }
      expect(all.body.result.map((f: Json) => f.subjects[0].subject).sort()).toEqual(['biden', 'obama']);
      expect(all.body.plugins_versions).toMatchObject({ detector: expect.any(String), calculator: expect.any(String), age: expect.any(String), gender: expect.any(String) });
      const one = await post('/api/v1/recognition/recognize?limit=1', JSON.stringify({ file: fs.readFileSync(SCENE).toString('base64') }), { ...headers(), 'content-type': 'application/json' });
      expect(one.body.result).toHaveLength(1);
      expect(one.body.result[0].box).toEqual(all.body.result[0].box);
      const bad = await post('/api/v1/recognition/recognize?limit=-1', form({ file: SCENE }), headers());
      expect(bad.status).toBe(400);
      expect(bad.body).toEqual({ message: expect.stringMatching(/limit/), code: 400 });
    });

    it('lists, serves, verifies against and deletes examples', async () => {
      const page = await post('/api/v1/recognition/faces?page=0&size=2', undefined, headers(READ_KEY), 'GET');
      expect(page.body).toMatchObject({ page_number: 0, page_size: 2, total_elements: 3, total_pages: 2 });
      expect(page.body.faces).toHaveLength(2);
      const second = await post('/api/v1/recognition/faces?page=1&size=2', undefined, headers(READ_KEY), 'GET');
      const ids = [...page.body.faces, ...second.body.faces].map((f: Json) => f.image_id);
      expect(new Set(ids).size).toBe(3);
      const obama = await post('/api/v1/recognition/faces?subject=obama', undefined, headers(READ_KEY), 'GET');
      expect(obama.body.faces).toEqual([expect.objectContaining({ subject: 'obama' }), expect.objectContaining({ subject: 'obama' })]);

      // Face crops are biometric data: a write key, as for the native crop route.
      expect((await fetch(`${server.url}/api/v1/recognition/faces/${obamaImageId}/img`, { headers: headers(READ_KEY) })).status).toBe(403);
      const img = await fetch(`${server.url}/api/v1/recognition/faces/${obamaImageId}/img`, { headers: headers() });
      expect(img.status).toBe(200);
      expect((await sharp(Buffer.from(await img.arrayBuffer())).metadata()).width).toBeGreaterThan(0);

      const same = await post(`/api/v1/recognition/faces/${obamaImageId}/verify`, form({ file: OBAMA(2) }), headers(READ_KEY));
      expect(same.body.result[0].similarity).toBeGreaterThan(0.67);
      const other = await post(`/api/v1/recognition/faces/${obamaImageId}/verify`, form({ file: BIDEN(2) }), headers(READ_KEY));
      expect(other.body.result[0].similarity).toBeLessThan(0.67);

      const missing = await post('/api/v1/recognition/faces/999999', undefined, headers(), 'DELETE');
      expect(missing.status).toBe(404);
      expect(missing.body.message).toMatch(/999999/);
      const del = await post(`/api/v1/recognition/faces/${obamaImageId}`, undefined, headers(), 'DELETE');
      expect(del.body).toEqual({ image_id: obamaImageId, subject: 'obama' });
      // Double Take's "remove": every example of the subject.
      const removed = await post('/api/v1/recognition/faces?subject=obama', undefined, headers(), 'DELETE');
      expect(removed.body).toEqual({ deleted: 1 });
      expect(server.ctx.gallery.requireIdentity('obama').templates).toBe(0);
    });

    it('manages subjects', async () => {
      const json = { ...headers(), 'content-type': 'application/json' };
      const created = await post('/api/v1/recognition/subjects', JSON.stringify({ subject: 'Ada' }), json);
      expect(created.status).toBe(201);
      expect(created.body).toEqual({ subject: 'Ada' });
      expect((await post('/api/v1/recognition/subjects', JSON.stringify({ subject: 'Ada' }), json)).status).toBe(409);
      expect((await post('/api/v1/recognition/subjects', undefined, headers(READ_KEY), 'GET')).body.subjects).toEqual(expect.arrayContaining(['Ada', 'obama', 'biden']));
      expect((await post('/api/v1/recognition/subjects/Ada', JSON.stringify({ subject: 'Ada Lovelace' }), json, 'PUT')).body).toEqual({ updated: true });
      expect((await post('/api/v1/recognition/subjects/Ada%20Lovelace', undefined, headers(), 'DELETE')).body).toEqual({ subject: 'Ada Lovelace' });
      expect((await post('/api/v1/recognition/subjects/Ada', undefined, headers(), 'DELETE')).status).toBe(404);
    });

    it('detects (detection service) and verifies two pictures (verification service)', async () => {
      const d = await post('/api/v1/detection/detect?face_plugins=landmarks', form({ file: SCENE }), headers(READ_KEY));
      const inScene = await nativeFaces(SCENE);
      expect(d.body.result).toHaveLength(inScene);
      expect((await post('/api/v1/detection/detect?limit=2', form({ file: SCENE }), headers(READ_KEY))).body.result).toHaveLength(2);
      expect(d.body.result[0]).toEqual({ box: expect.objectContaining({ probability: expect.any(Number) }), landmarks: expect.any(Array) });
      const v = await post('/api/v1/verification/verify', form({ source_image: OBAMA(1), target_image: SCENE }), headers(READ_KEY));
      expect(v.status).toBe(200);
      const [r] = v.body.result;
      expect(r.source_image_face.box).toMatchObject({ probability: expect.any(Number) });
      expect(r.face_matches).toHaveLength(inScene);
      const sims = r.face_matches.map((m: Json) => m.similarity).sort((a: number, b: number) => b - a);
      expect(sims[0]).toBeGreaterThan(0.67);
      for (const other of sims.slice(1)) expect(other).toBeLessThan(0.67);
      const b64 = await post(
        '/api/v1/verification/verify',
        JSON.stringify({ source_image: fs.readFileSync(OBAMA(1)).toString('base64'), target_image: fs.readFileSync(OBAMA(2)).toString('base64') }),
        { ...headers(READ_KEY), 'content-type': 'application/json' },
      );
      expect(b64.body.result[0].face_matches[0].similarity).toBeGreaterThan(0.67);
    });

    it('answers a CompreFace path asked with another method in its own shape (405, message and code)', async () => {
      const r = await post('/api/v1/recognition/recognize', undefined, headers(READ_KEY), 'GET');
      expect(r.status).toBe(405);
      expect(r.body).toEqual({ message: "Request method 'GET' is not supported", code: 405 });
    });

    it('needs the same keys and roles as the native API (x-api-key or Bearer)', async () => {
      const none = await post('/api/v1/recognition/recognize', form({ file: OBAMA(2) }));
      expect(none.status).toBe(401);
      expect(none.body).toEqual({ message: expect.any(String), code: 401 });
      expect((await post('/api/v1/recognition/faces?subject=x', form({ file: OBAMA(2) }), headers(READ_KEY))).status).toBe(403);
      expect((await post('/api/v1/recognition/subjects', undefined, { authorization: `Bearer ${READ_KEY}` }, 'GET')).status).toBe(200);
    });
  });

  it('finds a face that fills the whole picture on both APIs, as the native API does (padded second search)', async () => {
    const rudd = dataFile('faces', 'paul_rudd', '1.jpg');
    const found = await post('/api/v1/detect', form({ file: rudd }), { authorization: `Bearer ${READ_KEY}` });
    const [x1, y1, x2, y2] = found.body.faces[0].box as number[];
    const [w, h] = [x2 - x1, y2 - y1];
    const tight = await sharp(rudd).extract({ left: Math.round(x1 + 0.1 * w), top: Math.round(y1 + 0.1 * h), width: Math.round(0.8 * w), height: Math.round(0.8 * h) }).jpeg({ quality: 95 }).toBuffer();
    expect((await post('/api/v1/detect', form({ file: tight }), { authorization: `Bearer ${READ_KEY}` })).body.faces).toHaveLength(1);
    expect((await post('/v1/vision/face', form({ image: tight }, { api_key: READ_KEY }))).body.predictions).toHaveLength(1);
    expect((await post('/api/v1/detection/detect', form({ file: tight }), { 'x-api-key': READ_KEY })).body.result).toHaveLength(1);
  });

  it('serves neither API when server.compat says so', async () => {
    const off = await startTestServer({ analyzer, listen: false, configure: (c) => (c.server.compat = { ...c.server.compat, deepstack: false, compreface: false }) });
    try {
      expect((await off.app.inject({ method: 'POST', url: '/v1/vision/face/list' })).statusCode).toBe(404);
      expect((await off.app.inject({ method: 'GET', url: '/api/v1/recognition/subjects', headers: off.auth })).statusCode).toBe(404);
    } finally {
      await off.close();
    }
  });
});
