import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Appearance } from '../src/history/history.js';
import type { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { dataFile } from './helpers/paths.js';
import { sharedAnalyzer, startTestServer, TestClient, waitFor, type TestServer } from './helpers/server.js';

/**
 * The appearance history through the real server: the Hamilton clip runs as a stream, tracks
 * become stored appearances with crops, snapshots and embeddings, the REST filters and search by
 * face answer, an unknown person's cluster is named and the next run of the clip shows them
 * named; then retention (with an injected clock), size limits and "unknown off" on a restart of
 * the same data directory.
 */

const LIN_PICTURE = dataFile('faces', 'lin_manuel_miranda', '1.png');
const OBAMA = ['1.jpg', '2.jpg', '3.jpg'].map((f) => ({ name: f, data: fs.readFileSync(dataFile('faces', 'barack_obama', f)) }));

describe('appearance history through the server', () => {
  let analyzer: FaceAnalyzer;
  let server: TestServer;
  let ws: TestClient;

  const get = async (url: string) => {
    const r = await server.app.inject({ url, headers: server.readAuth });
    expect(r.statusCode, r.body).toBe(200);
    return r.json();
  };

  /** Runs the clip once as stream `id` and waits until its appearances are all stored. */
  const runClip = async (id: string) => {
    const r = await server.app.inject({
      method: 'POST',
      url: '/api/v1/streams',
      headers: server.auth,
      payload: { id, url: dataFile('video', 'hamilton_640x360.mp4'), loop: false, realtime: true, fps: 10, minFaceSize: 40 },
    });
    expect(r.statusCode, r.body).toBe(201);
    await waitFor(() => server.ctx.streams.get(id).state === 'stopped' || server.ctx.streams.get(id).state === 'failed', 90_000, `clip ${id} to end`);
    // Tracks end endAfterMs after their last frame; then the queue drains.
    await waitFor(() => server.ctx.history!['recorder'].open().length === 0, 10_000, 'open appearances to end');
    await server.ctx.history!.flush();
  };

  beforeAll(async () => {
    analyzer = await sharedAnalyzer();
    server = await startTestServer({
      analyzer,
      configure: (c) => {
        c.history = { ...c.history, endAfterMs: 1000, retentionIntervalSeconds: 3600 };
      },
    });
    // Obama is enrolled; Lin-Manuel Miranda is not (he will be an unknown cluster, then named).
    await server.ctx.enroller.enrollPictures({ id: 'obama', name: 'Barack Obama' }, OBAMA);
    ws = new TestClient(`${server.wsUrl}/api/v1/live`, { headers: server.auth, protocols: ['facestream.v1'] });
    await ws.opened();
    await runClip('hamilton');
  }, 150_000);

  afterAll(async () => {
    ws?.close();
    await server?.close();
    await analyzer?.runtime.close();
  });

  it('stores each track as an appearance with its best face crop, snapshot and embedding', async () => {
    const { appearances } = (await get('/api/v1/appearances?limit=500')) as { appearances: Appearance[] };
    console.log(`stored ${appearances.length} appearances: ${appearances.filter((a) => a.known).length} known, clusters ${(await get('/api/v1/clusters')).total}`);
    expect(appearances.length).toBeGreaterThan(2);
    for (let i = 1; i < appearances.length; i++) expect(appearances[i].id).toBeLessThan(appearances[i - 1].id);
    for (const a of appearances) {
      expect(a.streamId).toBe('hamilton');
      expect(a.frames).toBeGreaterThanOrEqual(3);
      expect(a.endedAt).toBeGreaterThanOrEqual(a.startedAt);
      expect(a.face.quality).toBeGreaterThan(0);
    }
    const best = appearances.reduce((x, y) => (y.face.size > x.face.size ? y : x));
    const crop = await server.app.inject({ url: best.cropUrl, headers: server.readAuth });
    expect(crop.statusCode).toBe(200);
    expect(crop.headers['content-type']).toBe('image/jpeg');
    expect(await sharp(crop.rawPayload).metadata()).toMatchObject({ format: 'jpeg', width: 160, height: 160 });
    const snap = await server.app.inject({ url: best.snapshotUrl!, headers: server.readAuth });
    expect(await sharp(snap.rawPayload).metadata()).toMatchObject({ format: 'jpeg', width: 640, height: 360 });
    expect(appearances.filter((a) => a.hasEmbedding).length).toBeGreaterThan(0);
    // Every unknown appearance with an embedding is in a cluster; known ones never are.
    for (const a of appearances) expect(a.clusterId !== null).toBe(!a.known && a.hasEmbedding);
    expect((await server.app.inject({ url: '/api/v1/appearances/999999', headers: server.readAuth })).json()).toMatchObject({ status: 404, code: 'APPEARANCE_NOT_FOUND' });
  });

  it('sent each stored appearance on the WebSocket with its id and crop URL', async () => {
    const ids = ((await get('/api/v1/appearances?limit=500')).appearances as Appearance[]).map((a) => a.id);
    const stored = await ws.until(() => {
      const s = ws.of('history').filter((m) => m.event === 'stored');
      return s.length >= ids.length && s;
    }, 5000, 'a history event per stored appearance');
    expect(stored.map((m) => (m.appearance as Appearance).id).sort()).toEqual([...ids].sort());
    const m = stored[0].appearance as Appearance;
    expect(m.cropUrl).toBe(`/api/v1/appearances/${m.id}/crop`);
    expect(ws.of('library').some((e) => e.event === 'created')).toBe(true);
  });

  it('finds the appearances of a person from an uploaded picture (search by face), unknown ones included', async () => {
    const r = await server.app.inject({ method: 'POST', url: '/api/v1/appearances/search?k=20', headers: server.readAuth, payload: { image: fs.readFileSync(LIN_PICTURE).toString('base64') } });
    expect(r.statusCode, r.body).toBe(200);
    const hits = r.json().appearances as (Appearance & { similarity: number })[];
    expect(hits.length).toBeGreaterThan(0);
    for (let i = 1; i < hits.length; i++) expect(hits[i].similarity).toBeLessThanOrEqual(hits[i - 1].similarity);
    expect(hits[0].similarity).toBeGreaterThanOrEqual(r.json().minSimilarity);
    expect(hits[0].known).toBe(false);
    const clusters = new Set(hits.map((h) => h.clusterId));
    console.log(`Lin-Manuel Miranda (not enrolled): ${hits.length} appearances found by face, in ${clusters.size} cluster(s)`);
    const none = await server.app.inject({ method: 'POST', url: '/api/v1/appearances/search', headers: server.readAuth, payload: { image: (await sharp({ create: { width: 200, height: 200, channels: 3, background: '#777' } }).png().toBuffer()).toString('base64') } });
    expect(none.json()).toMatchObject({ status: 422, code: 'NO_FACE' });
  });

  it('names an unknown cluster through enrollment, and the next appearance of that person comes back named', async () => {
    const r = await server.app.inject({ method: 'POST', url: '/api/v1/appearances/search?k=5&known=false', headers: server.readAuth, payload: { image: fs.readFileSync(LIN_PICTURE).toString('base64') } });
    const clusterId = (r.json().appearances as Appearance[])[0].clusterId!;
    const cluster = await get(`/api/v1/clusters/${clusterId}`);
    expect(cluster.samples.length).toBeGreaterThan(0);
    // An id alone must name an existing identity: a mistyped id is not a new person.
    const typo = await server.app.inject({ method: 'POST', url: `/api/v1/clusters/${clusterId}/name`, headers: server.auth, payload: { id: 'no-such-person' } });
    expect(typo.statusCode).toBe(404);
    expect(typo.json()).toMatchObject({ code: 'IDENTITY_NOT_FOUND' });
    expect((await server.app.inject({ url: '/api/v1/identities/no-such-person', headers: server.readAuth })).statusCode).toBe(404);
    const named = await server.app.inject({ method: 'POST', url: `/api/v1/clusters/${clusterId}/name`, headers: server.auth, payload: { name: 'Stage Star' } });
    expect(named.statusCode, named.body).toBe(201);
    const body = named.json();
    expect(body.identity.name).toBe('Stage Star');
    expect(body.added.length).toBeGreaterThan(0);
    expect(body.appearances).toBe(cluster.size);
    expect((await server.app.inject({ url: `/api/v1/clusters/${clusterId}`, headers: server.readAuth })).statusCode).toBe(404);
    const relabelled = (await get(`/api/v1/identities/${body.identity.id}/appearances`)).appearances as Appearance[];
    expect(relabelled.length).toBe(cluster.size);
    expect(relabelled.every((a) => a.known && a.identity?.name === 'Stage Star')).toBe(true);
    // Naming needs a write key.
    expect((await server.app.inject({ method: 'POST', url: '/api/v1/clusters/1/name', headers: server.readAuth, payload: { name: 'x' } })).statusCode).toBe(403);

    await runClip('hamilton2');
    const again = (await get('/api/v1/appearances?streamId=hamilton2&known=true&limit=500')).appearances as Appearance[];
    expect(again.some((a) => a.identity?.id === body.identity.id)).toBe(true);
    expect((await get(`/api/v1/identities/${body.identity.id}/appearances`)).appearances.length).toBeGreaterThan(cluster.size);
    // The live "appeared" / "left" events of the named person carry the ids of the appearances they belong to.
    const events = ws.of('appearance').filter((m) => m.streamId === 'hamilton2') as unknown as { event: string; appearances: { id: number; cropUrl: string }[] }[];
    expect(events.some((e) => e.event === 'appeared')).toBe(true);
    for (const e of events) {
      expect(e.appearances.length, e.event).toBeGreaterThan(0);
      for (const ref of e.appearances) {
        expect(ref.cropUrl).toBe(`/api/v1/appearances/${ref.id}/crop`);
        expect((await server.app.inject({ url: ref.cropUrl, headers: server.readAuth })).statusCode).toBe(200);
      }
    }
  }, 120_000);

  it('filters by known/unknown, stream, time range and pages newest first by cursor', async () => {
    const all = (await get('/api/v1/appearances?limit=500&count=true')) as { appearances: Appearance[]; total: number };
    expect(all.total).toBe(all.appearances.length);
    const unknown = (await get('/api/v1/appearances?known=false&limit=500')).appearances as Appearance[];
    const known = (await get('/api/v1/appearances?known=true&limit=500')).appearances as Appearance[];
    expect(unknown.length + known.length).toBe(all.total);
    expect(known.length).toBeGreaterThan(0);
    expect((await get('/api/v1/appearances?streamId=hamilton2&limit=500')).appearances.every((a: Appearance) => a.streamId === 'hamilton2')).toBe(true);
    expect(unknown.every((a) => !a.known && a.identity === null)).toBe(true);
    expect(known.every((a) => a.known && a.identity !== null)).toBe(true);
    expect((await get('/api/v1/appearances?streamId=elsewhere')).appearances).toEqual([]);
    const first = all.appearances[all.appearances.length - 1];
    expect((await get(`/api/v1/appearances?to=${first.startedAt}`)).appearances).toEqual([]);
    const last = all.appearances[0];
    const after = (await get(`/api/v1/appearances?from=${new Date(last.endedAt + 1).toISOString()}`)).appearances as Appearance[];
    expect(after.every((a) => a.endedAt > last.endedAt)).toBe(true);
    // Pages of 2 by cursor give the whole list in order, each id once.
    const seen: number[] = [];
    let cursor: number | null = null;
    do {
      const page: { appearances: Appearance[]; next: number | null } = await get(`/api/v1/appearances?limit=2${cursor ? `&before=${cursor}` : ''}`);
      seen.push(...page.appearances.map((a) => a.id));
      cursor = page.next;
    } while (cursor);
    expect(seen).toEqual(all.appearances.map((a) => a.id));
    const bad = await server.app.inject({ url: '/api/v1/appearances?from=yesterday', headers: server.readAuth });
    expect(bad.statusCode).toBe(400);
  });

  it('merges, splits and discards clusters', async () => {
    const { clusters } = await get('/api/v1/clusters?limit=500');
    expect(clusters.length).toBeGreaterThanOrEqual(2);
    const [a, b] = clusters as { id: number; size: number }[];
    const merged = await server.app.inject({ method: 'POST', url: `/api/v1/clusters/${a.id}/merge`, headers: server.auth, payload: { clusters: [b.id] } });
    expect(merged.statusCode, merged.body).toBe(200);
    expect(merged.json().size).toBe(a.size + b.size);
    const members = (await get(`/api/v1/clusters/${a.id}`)).appearances as Appearance[];
    expect(members.every((m) => m.clusterId === a.id)).toBe(true);
    const split = await server.app.inject({ method: 'POST', url: `/api/v1/clusters/${a.id}/split`, headers: server.auth, payload: { appearances: [members[0].id] } });
    expect(split.statusCode, split.body).toBe(200);
    expect(split.json().from.size).toBe(a.size + b.size - 1);
    expect(split.json().to.size).toBe(1);
    const moved = split.json().to.id as number;
    expect((await get(`/api/v1/appearances/${members[0].id}`)).clusterId).toBe(moved);
    const bad = await server.app.inject({ method: 'POST', url: `/api/v1/clusters/${a.id}/split`, headers: server.auth, payload: { appearances: [members[0].id] } });
    expect(bad.json()).toMatchObject({ status: 400, code: 'BAD_REQUEST' });
    const discarded = await server.app.inject({ method: 'DELETE', url: `/api/v1/clusters/${moved}`, headers: server.auth });
    expect(discarded.json()).toEqual({ deleted: 1 });
    expect((await server.app.inject({ url: `/api/v1/appearances/${members[0].id}`, headers: server.readAuth })).statusCode).toBe(404);
  });

  const historyDir = () => path.join(server.dir, 'data', 'history');
  const pictureFiles = () => fs.readdirSync(path.join(historyDir(), 'pictures')).flatMap((d) => fs.readdirSync(path.join(historyDir(), 'pictures', d)).map((f) => `${d}/${f}`)).sort();
  const rowFiles = (db: Database.Database, where = '1') =>
    (db.prepare(`SELECT crop_file, snapshot_file FROM appearances WHERE ${where}`).all() as { crop_file: string; snapshot_file: string | null }[]).flatMap((r) => [r.crop_file, r.snapshot_file ?? []].flat()).sort();

  it('deletes one appearance with its pictures', async () => {
    const one = ((await get('/api/v1/appearances?limit=1')).appearances as Appearance[])[0];
    const db = new Database(path.join(historyDir(), 'history.db'), { readonly: true });
    const files = rowFiles(db, `id = ${one.id}`);
    db.close();
    expect(files.length).toBe(2);
    expect(pictureFiles()).toEqual(expect.arrayContaining(files));
    expect((await server.app.inject({ method: 'DELETE', url: `/api/v1/appearances/${one.id}`, headers: server.auth })).statusCode).toBe(204);
    expect(pictureFiles().filter((f) => files.includes(f))).toEqual([]);
    expect((await server.app.inject({ method: 'DELETE', url: `/api/v1/appearances/${one.id}`, headers: server.auth })).statusCode).toBe(404);
  });

  it('retention deletes appearances past their age, per kind (injected clock)', async () => {
    const history = server.ctx.history!;
    const run1 = (await get('/api/v1/appearances?streamId=hamilton&known=false&limit=500')).appearances as Appearance[];
    const run2 = (await get('/api/v1/appearances?streamId=hamilton2&limit=500')).appearances as Appearance[];
    const known = history.store.usage().known.rows;
    expect(run1.length).toBeGreaterThan(0);
    expect(run2.some((a) => !a.known)).toBe(true);
    // Seven days (the unknown default) after the second run began: the first run's unknown people are due, nobody else.
    const now = Math.min(...run2.map((a) => a.startedAt)) + 7 * 86_400_000;
    await history.enforceRetention(now);
    expect((await get('/api/v1/appearances?streamId=hamilton&known=false&limit=500')).appearances).toEqual([]);
    expect((await get('/api/v1/appearances?streamId=hamilton2&limit=500')).appearances.length).toBe(run2.length);
    expect(history.store.usage().known.rows).toBe(known);
    expect(history.usage()).toEqual(history.store.usage());
    const db = new Database(path.join(historyDir(), 'history.db'), { readonly: true });
    expect(pictureFiles()).toEqual(rowFiles(db));
    db.close();
    const metrics = (await server.app.inject({ url: '/metrics' })).body;
    expect(Number(/^facestream_history_appearances_deleted_total\{reason="age"\} (\d+)/m.exec(metrics)?.[1])).toBe(run1.length);
  });

  it('with unknown storage off, keeps nothing about unknown people (database and files), and keeps within the size limit', async () => {
    const usage = server.ctx.history!.store.usage();
    expect(usage.unknown.rows).toBeGreaterThan(0);
    expect(usage.known.rows).toBeGreaterThan(1);
    const knownIds = ((await get('/api/v1/appearances?known=true&limit=500')).appearances as Appearance[]).map((a) => a.id);
    await server.close();
    const limit = usage.known.bytes - 1;
    server = await startTestServer({
      analyzer,
      dir: server.dir,
      configure: (c) => {
        c.history = { ...c.history, endAfterMs: 1000, unknown: { ...c.history.unknown, enabled: false }, known: { ...c.history.known, maxBytes: limit } };
      },
    });
    // At open: every unknown appearance and cluster is gone, and the oldest known one made room.
    const db = new Database(path.join(historyDir(), 'history.db'), { readonly: true });
    expect(db.prepare('SELECT COUNT(*) AS n FROM appearances WHERE known = 0 OR identity_id IS NULL OR cluster_id IS NOT NULL').get()).toEqual({ n: 0 });
    expect(db.prepare('SELECT COUNT(*) AS n FROM clusters').get()).toEqual({ n: 0 });
    const kept = (db.prepare('SELECT id FROM appearances ORDER BY id DESC').pluck().all() as number[]);
    expect(kept.length).toBeGreaterThan(0);
    expect(kept).toEqual(knownIds.filter((id) => kept.includes(id)));
    expect(Math.min(...knownIds)).toBeLessThan(Math.min(...kept));
    expect(server.ctx.history!.store.usage().known.bytes).toBeLessThanOrEqual(limit);
    expect(pictureFiles()).toEqual(rowFiles(db));
    db.close();
    expect((await get('/api/v1/clusters')).total).toBe(0);

    await runClip('hamilton3');
    expect(server.ctx.history!.counts.skipped).toBeGreaterThan(0);
    const db2 = new Database(path.join(historyDir(), 'history.db'), { readonly: true });
    expect(db2.prepare('SELECT COUNT(*) AS n FROM appearances WHERE known = 0 OR identity_id IS NULL OR embedding IS NULL AND 0').get()).toEqual({ n: 0 });
    expect(db2.prepare('SELECT COUNT(*) AS n FROM clusters').get()).toEqual({ n: 0 });
    expect(pictureFiles()).toEqual(rowFiles(db2));
    db2.close();
    expect(server.ctx.history!.store.usage().known.bytes).toBeLessThanOrEqual(limit);
    // The running totals the size limit uses agree with the database.
    expect(server.ctx.history!.usage()).toEqual(server.ctx.history!.store.usage());
  }, 120_000);

  it('removing an identity removes its history (the right to be forgotten)', async () => {
    // Whoever is still in the history after the size limit (Stage Star, or Barack Obama when the clip recognised him).
    const star = ((await get('/api/v1/appearances?known=true&limit=1')).appearances as Appearance[])[0].identity!.id;
    expect((await get(`/api/v1/appearances?identityId=${star}`)).appearances.length).toBeGreaterThan(0);
    expect((await server.app.inject({ method: 'DELETE', url: `/api/v1/identities/${star}`, headers: server.auth })).statusCode).toBe(204);
    await waitFor(async () => (await get(`/api/v1/appearances?identityId=${star}`)).appearances.length === 0, 5000, 'the removed identity\'s history to go');
    await server.ctx.history!.flush();
    const db = new Database(path.join(historyDir(), 'history.db'), { readonly: true });
    expect(db.prepare('SELECT COUNT(*) AS n FROM appearances WHERE identity_id = ?').get(star)).toEqual({ n: 0 });
    await waitFor(() => pictureFiles().join() === rowFiles(db).join(), 5000, 'the pictures to go');
    db.close();
  });
});
