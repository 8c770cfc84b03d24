import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pgClient from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openClusterStores, type ClusterStores, type StoreTimeouts } from '../src/cluster/stores.js';
import { gallerySchema } from '../src/config/sections/gallery.js';
import { isFacestreamError } from '../src/errors.js';
import { Gallery } from '../src/index/gallery.js';
import { createLogger } from '../src/log.js';
import { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import type { StreamDefinition } from '../src/server/store.js';
import { dataFile } from './helpers/paths.js';
import { freePort } from './helpers/mosquitto.js';
import { startPostgres, type PostgresServer } from './helpers/postgres.js';
import { capturingLogger, sharedAnalyzer, startTestServer, type TestServer } from './helpers/server.js';

/**
 * Two cluster "nodes" (two ClusterStores, two cache directories) on one real PostgreSQL: what
 * one writes, the other's replica has within a second, with the same ids; PostgreSQL restarted or
 * down; replicas missing or of another model. One PostgreSQL for the file.
 */

const MODEL = 'arcface-mbf-112';
const DIM = 512;
const galleryConfig = gallerySchema.parse({});

/** Log lines of a node, to check what it tells the operator. */
class LogLines extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    this.lines.push(chunk.toString());
    done();
  }
  text(): string {
    return this.lines.join('');
  }
}

function randomUnit(dim = DIM): Float32Array {
  const v = new Float32Array(dim);
  let s = 0;
  for (let i = 0; i < dim; i++) {
    v[i] = Math.random() - 0.5;
    s += v[i] * v[i];
  }
  for (let i = 0; i < dim; i++) v[i] /= Math.sqrt(s);
  return v;
}

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function expectCode(p: Promise<unknown>, code: string): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  expect(err, `expected ${code}`).toBeDefined();
  expect(isFacestreamError(err) ? err.code : (err as Error).message).toBe(code);
  return err!;
}

let pg: PostgresServer;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-cluster-store-'));
const opened: ClusterStores[] = [];

async function openNode(name: string, opts: { url?: string; modelId?: string; dimension?: number; log?: LogLines; timeouts?: Partial<StoreTimeouts> } = {}): Promise<ClusterStores> {
  const stores = await openClusterStores({
    postgresUrl: opts.url ?? pg.url,
    cacheDir: path.join(tmp, name),
    modelId: opts.modelId ?? MODEL,
    dimension: opts.dimension ?? DIM,
    galleryConfig,
    logger: createLogger('info', opts.log ?? new LogLines()),
    timeouts: opts.timeouts,
  });
  opened.push(stores);
  return stores;
}

async function closeNode(node: ClusterStores): Promise<void> {
  await node.close();
  opened.splice(opened.indexOf(node), 1);
}

function streamDef(id: string, over: Partial<StreamDefinition> = {}): StreamDefinition {
  const now = new Date().toISOString();
  return { id, name: id, url: `rtsp://user:secret@10.0.0.9/${id}`, enabled: true, fps: 5, loop: true, createdAt: now, updatedAt: now, ...over };
}

beforeAll(async () => {
  pg = await startPostgres();
}, 60_000);

afterAll(async () => {
  for (const node of [...opened]) await node.close().catch(() => undefined);
  await pg?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('two nodes on one PostgreSQL', () => {
  let a: ClusterStores;
  let b: ClusterStores;

  beforeAll(async () => {
    a = await openNode('a');
    b = await openNode('b');
  }, 30_000);

  it('an enrollment through one node is searchable on the other within 1 s, with the same ids', async () => {
    const delays: number[] = [];
    const afterAck: number[] = [];
    for (let i = 0; i < 20; i++) {
      const v = randomUnit();
      const t0 = performance.now();
      const added = await a.galleryWriter.addTemplates({ id: `person-${i}`, name: `Person ${i}`, metadata: { badge: i } }, [{ source: `p${i}.jpg`, contentHash: `hash-${i}`, embedding: v }]);
      // Read-your-writes: the writing node's replica has it when the write resolves.
      expect(a.gallery.identify(v).match?.identityId).toBe(`person-${i}`);
      const acked = performance.now();
      await until(() => b.gallery.identify(v).match?.identityId === `person-${i}`, 1000, 'the other node to find the enrollment');
      delays.push(performance.now() - t0);
      afterAck.push(performance.now() - acked);
      expect(added.created).toBe(true);
      const onB = b.gallery.getTemplate(added.templates[0].id);
      expect(onB).toEqual(added.templates[0]);
      expect(b.gallery.identify(v).match?.templateId).toBe(added.templates[0].id);
      expect(b.gallery.getIdentityById(`person-${i}`)).toEqual(a.gallery.getIdentityById(`person-${i}`));
    }
    const summary = (ms: number[]) => {
      const s = [...ms].sort((x, y) => x - y);
      return `min ${s[0].toFixed(1)} median ${s[10].toFixed(1)} max ${s[19].toFixed(1)}`;
    };
    console.log(`write call to searchable on the other node (ms): ${summary(delays)}; acknowledgement to searchable there: ${summary(afterAck)}`);
    expect(b.gallery.counts()).toEqual(a.gallery.counts());
    // Template ids stay unguessable: not row numbers, and the same on both nodes.
    const ids = a.gallery.listTemplates('person-0').map((t) => t.id);
    expect(ids[0]).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(b.gallery.listTemplates('person-0').map((t) => t.id)).toEqual(ids);
  });

  it('updates and removals reach the other node, with its gallery events', async () => {
    const events: string[] = [];
    for (const e of ['identity-updated', 'identity-removed', 'template-removed'] as const) b.gallery.on(e, () => events.push(e));
    const renamed = await a.galleryWriter.updateIdentity('person-1', { name: '  Person   One ', metadata: { badge: 'one' } });
    expect(renamed).toMatchObject({ id: 'person-1', name: 'Person One', metadata: { badge: 'one' } });
    await until(() => b.gallery.getIdentityById('person-1')?.name === 'Person One', 1000, 'the rename');
    expect(b.gallery.getIdentity('Person One')?.metadata).toEqual({ badge: 'one' });

    const t = a.gallery.listTemplates('person-2')[0];
    const removedT = await a.galleryWriter.removeTemplate(t.id);
    expect(removedT).toMatchObject({ id: t.id, identityId: 'person-2' });
    await until(() => b.gallery.getTemplate(t.id) === undefined, 1000, 'the template removal');

    const removed = await a.galleryWriter.removeIdentity('Person 3');
    expect(removed).toMatchObject({ id: 'person-3', templates: 1 });
    await until(() => b.gallery.getIdentityById('person-3') === undefined, 1000, 'the identity removal');
    expect(b.gallery.counts()).toEqual(a.gallery.counts());
    expect(events).toEqual(['identity-updated', 'template-removed', 'template-removed', 'identity-removed']);
  });

  it('refuses bad writes with the embedded gallery\'s errors, on any node', async () => {
    await expectCode(a.galleryWriter.createIdentity({ id: 'person-0', name: 'again' }), 'IDENTITY_EXISTS');
    await expectCode(b.galleryWriter.createIdentity({ id: 'bad id!', name: 'x' }), 'BAD_REQUEST');
    await expectCode(b.galleryWriter.createIdentity({ name: 'bad\u202ename' }), 'BAD_REQUEST');
    await expectCode(b.galleryWriter.addTemplates({ id: 'person-0' }, [{ source: 'again.jpg', contentHash: 'hash-0', embedding: randomUnit() }]), 'DUPLICATE_TEMPLATE');
    await expectCode(b.galleryWriter.addTemplates({ id: 'person-0' }, [{ source: 'short.jpg', embedding: randomUnit(128) }]), 'BAD_REQUEST');
    await expectCode(b.galleryWriter.addTemplates({ id: 'person-0' }, [{ source: 'zero.jpg', embedding: new Float32Array(DIM) }]), 'BAD_REQUEST');
    await expectCode(b.galleryWriter.removeTemplate('AAAAAAAAAAAAAAAAAAAAAA'), 'TEMPLATE_NOT_FOUND');
    await expectCode(b.galleryWriter.removeTemplate('42'), 'TEMPLATE_NOT_FOUND');
    await expectCode(b.galleryWriter.updateIdentity('nobody', { name: 'x' }), 'IDENTITY_NOT_FOUND');
    await expectCode(b.galleryWriter.createIdentity({ name: 'x', metadata: { deep: JSON.parse('['.repeat(40) + ']'.repeat(40)) } }), 'BAD_REQUEST');
    // The replica is not written directly: its ids come from PostgreSQL.
    expect(() => a.gallery.createIdentity({ name: 'local' })).toThrow(/replica/);
    // A failed batch writes nothing.
    const before = a.gallery.counts();
    await expectCode(
      a.galleryWriter.addTemplatesBatch([
        { identity: { id: 'batch-ok', name: 'Batch' }, templates: [{ source: 'b.jpg', embedding: randomUnit() }] },
        { identity: { id: 'person-0' }, templates: [{ source: 'dup.jpg', contentHash: 'hash-0', embedding: randomUnit() }] },
      ]),
      'DUPLICATE_TEMPLATE',
    );
    await b.caughtUp();
    expect(a.gallery.counts()).toEqual(before);
    expect(b.gallery.getIdentityById('batch-ok')).toBeUndefined();
  });

  it('stream definitions and API keys changed on one node fire onChange on the other', async () => {
    const seen: string[] = [];
    const keysChanged: number[] = [];
    const off = b.streams.onChange((id) => seen.push(id));
    b.apiKeys.onChange(() => keysChanged.push(Date.now()));
    await a.streams.insert(streamDef('door'));
    await until(() => seen.includes('door'), 1000, 'onChange for the new stream');
    expect(await b.streams.get('door')).toEqual(await a.streams.get('door'));
    expect((await b.streams.get('door'))?.url).toBe('rtsp://user:secret@10.0.0.9/door');
    await expectCode(b.streams.insert(streamDef('door')), 'STREAM_EXISTS');
    await a.streams.insert(streamDef('yard', { enabled: false, detectionMode: 'full' }));
    await b.streams.update({ ...(await b.streams.get('door'))!, name: 'Front door', fps: 2 });
    await until(() => seen.filter((id) => id === 'door').length === 2, 1000, 'onChange for the update');
    expect((await a.streams.get('door'))).toMatchObject({ name: 'Front door', fps: 2, loop: true });
    expect((await a.streams.list()).map((d) => d.id)).toEqual(['door', 'yard']);
    expect(await a.streams.delete('yard')).toBe(true);
    expect(await a.streams.delete('yard')).toBe(false);
    await until(() => seen.filter((id) => id === 'yard').length === 2, 1000, 'onChange for the removal');
    expect(await b.streams.get('yard')).toBeUndefined();
    off();

    await a.apiKeys.replace(Buffer.alloc(32, 7), 'write');
    await until(() => keysChanged.length === 1, 1000, 'onChange for the API keys');
    expect(await b.apiKeys.list()).toEqual([{ hash: Buffer.alloc(32, 7), role: 'write' }]);
  });

  it('PostgreSQL restarted: both nodes reconnect by themselves and a later write reaches both', async () => {
    const v = randomUnit();
    await pg.restart();
    // The first write may find the pool's connections cut: it fails cleanly or succeeds, never half.
    await until(() => a.connected() && b.connected(), 10_000, 'both nodes to reconnect');
    const added = await a.galleryWriter.addTemplates({ id: 'after-restart', name: 'After Restart' }, [{ source: 'r.jpg', embedding: v }]);
    await until(() => b.gallery.identify(v).match?.identityId === 'after-restart', 1000, 'the write after the restart on the other node');
    expect(b.gallery.getTemplate(added.templates[0].id)).toBeDefined();
    const seen: string[] = [];
    a.streams.onChange((id) => seen.push(id));
    await b.streams.insert(streamDef('after-restart'));
    await until(() => seen.includes('after-restart'), 1000, 'stream onChange after the restart');
  }, 30_000);

  it('PostgreSQL down: reads and search keep working, writes fail with STORE_UNAVAILABLE, nothing is lost after it returns', async () => {
    const known = randomUnit();
    await a.galleryWriter.addTemplates({ id: 'before-outage', name: 'Before Outage' }, [{ source: 'o.jpg', embedding: known }]);
    await b.caughtUp();
    const counts = b.gallery.counts();
    await pg.halt();
    try {
      const t0 = Date.now();
      const err = await expectCode(a.galleryWriter.createIdentity({ id: 'during-outage', name: 'During' }), 'STORE_UNAVAILABLE');
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect((err as { status?: number }).status).toBe(503);
      expect(err.message).toMatch(/cannot be reached.*Reads and searches keep working/s);
      expect(err.message).not.toMatch(/secret/);
      await expectCode(b.galleryWriter.addTemplates({ id: 'before-outage' }, [{ source: 'o2.jpg', embedding: randomUnit() }]), 'STORE_UNAVAILABLE');
      await expectCode(b.streams.list(), 'STORE_UNAVAILABLE');
      await expectCode(a.streams.insert(streamDef('during-outage')), 'STORE_UNAVAILABLE');
      expect(b.gallery.identify(known).match?.identityId).toBe('before-outage');
      expect(a.gallery.identify(known).match?.identityId).toBe('before-outage');
      expect(b.gallery.counts()).toEqual(counts);
      await until(() => !a.connected() && !b.connected(), 5000, 'the nodes to notice the outage');
    } finally {
      await pg.resume();
    }
    await until(() => a.connected() && b.connected(), 10_000, 'both nodes to reconnect');
    const v = randomUnit();
    await b.galleryWriter.addTemplates({ id: 'during-outage', name: 'Retried' }, [{ source: 'd.jpg', embedding: v }]);
    await until(() => a.gallery.identify(v).match?.identityId === 'during-outage', 1000, 'the retried write on the other node');
    expect(a.gallery.identify(known).match?.identityId).toBe('before-outage');
    await a.caughtUp();
    expect(a.gallery.counts()).toEqual(b.gallery.counts());
    expect(a.gallery.counts().identities).toBe(counts.identities + 1);
  }, 40_000);

  it('PostgreSQL unreachable without a reset (a partition): writes fail within the timeouts, the feed notices, both recover', async () => {
    const timeouts = { connectMs: 500, queryMs: 1000, heartbeatMs: 300 };
    const c = await openNode('partition-c', { timeouts });
    const d = await openNode('partition-d', { timeouts });
    const known = randomUnit();
    await c.galleryWriter.addTemplates({ id: 'before-partition', name: 'Before Partition' }, [{ source: 'p.jpg', embedding: known }]);
    await d.caughtUp();
    pg.freeze();
    try {
      const t0 = Date.now();
      await expectCode(c.galleryWriter.createIdentity({ id: 'during-partition', name: 'During' }), 'STORE_UNAVAILABLE');
      expect(Date.now() - t0).toBeLessThan(5000);
      await until(() => !c.connected() && !d.connected(), 5000, 'the nodes to notice the partition');
      expect(d.gallery.identify(known).match?.identityId).toBe('before-partition');
    } finally {
      pg.thaw();
    }
    await until(() => c.connected() && d.connected(), 10_000, 'both nodes to reconnect');
    const v = randomUnit();
    await d.galleryWriter.addTemplates({ id: 'during-partition', name: 'Retried' }, [{ source: 'q.jpg', embedding: v }]);
    await until(() => c.gallery.identify(v).match?.identityId === 'during-partition', 1000, 'the write after the partition on the other node');
    await closeNode(c);
    await closeNode(d);
  }, 30_000);

  it('a node that was closed catches up on start; a deleted replica is rebuilt with the same ids', async () => {
    await closeNode(b);
    const v = randomUnit();
    const added = await a.galleryWriter.addTemplates({ id: 'while-b-away', name: 'While Away' }, [{ source: 'w.jpg', embedding: v }]);
    b = await openNode('b');
    expect(b.gallery.identify(v).match?.templateId).toBe(added.templates[0].id);
    expect(b.gallery.loadReport.source).not.toBe('rebuilt'); // its saved index was reused, not rebuilt from scratch

    await closeNode(b);
    fs.rmSync(path.join(tmp, 'b'), { recursive: true, force: true });
    const log = new LogLines();
    b = await openNode('b', { log });
    expect(b.gallery.counts()).toEqual(a.gallery.counts());
    expect(b.gallery.identify(v).match?.templateId).toBe(added.templates[0].id);
    expect(b.gallery.listIdentities().map((i) => [i.id, i.name, i.templates])).toEqual(a.gallery.listIdentities().map((i) => [i.id, i.name, i.templates]));

    // An operator pruned the change log past what a closed node applied: it rebuilds instead of missing changes.
    await closeNode(b);
    await a.galleryWriter.removeIdentity('while-b-away');
    await a.galleryWriter.createIdentity({ id: 'after-prune', name: 'After Prune' });
    const sql = new pgClient.Client(pg.url);
    await sql.connect();
    await sql.query('DELETE FROM facestream.changes WHERE seq < (SELECT max(seq) FROM facestream.changes)');
    await sql.end();
    const pruneLog = new LogLines();
    b = await openNode('b', { log: pruneLog });
    expect(pruneLog.text()).toMatch(/change log now starts at \d+ \(pruned\)/);
    expect(b.gallery.getIdentityById('while-b-away')).toBeUndefined();
    expect(b.gallery.getIdentityById('after-prune')).toBeDefined();
    expect(b.gallery.counts()).toEqual(a.gallery.counts());
  }, 30_000);

  it('a replica of another model or another database is rebuilt, saying why; a node of another model is refused', async () => {
    await closeNode(b);
    const dir = path.join(tmp, 'b', 'gallery');
    fs.rmSync(dir, { recursive: true, force: true });
    const other = await Gallery.open(dir, { modelId: 'facenet-128', dimension: 128, config: galleryConfig });
    other.createIdentity({ id: 'stranger', name: 'Stranger' });
    await other.close();
    let log = new LogLines();
    b = await openNode('b', { log });
    expect(log.text()).toMatch(/rebuilding this node's gallery replica from PostgreSQL: it (copies another database|holds embeddings of "facenet-128")/);
    expect(b.gallery.getIdentityById('stranger')).toBeUndefined();
    expect(b.gallery.counts()).toEqual(a.gallery.counts());

    // The same cache directory pointed at another database.
    await closeNode(b);
    const url2 = await pg.createDatabase('other_cluster');
    log = new LogLines();
    const elsewhere = await openNode('b', { url: url2, log });
    expect(log.text()).toMatch(/copies another database/);
    expect(elsewhere.gallery.counts()).toEqual({ identities: 0, templates: 0 });
    await closeNode(elsewhere);

    const err = await expectCode(openNode('c', { modelId: 'facenet-128', dimension: 128 }), 'GALLERY_MODEL_MISMATCH');
    expect(err.message).toMatch(/holds embeddings of "arcface-mbf-112" \(512-d\) but this node uses "facenet-128"/);
    b = await openNode('b');
  }, 30_000);
});

describe('a node starting', () => {
  it('waits for a PostgreSQL that is still starting, then opens', async () => {
    await pg.halt();
    let resumed = false;
    try {
      const opening = openNode('late', { timeouts: { startMs: 30_000 } });
      await new Promise((r) => setTimeout(r, 1500));
      resumed = true;
      await pg.resume();
      const late = await opening;
      expect(late.gallery.counts()).toEqual(opened[0].gallery.counts());
      await closeNode(late);
    } finally {
      if (!resumed) await pg.resume();
    }
  }, 60_000);

  it('gives up after its start window, saying so; a database or role that does not exist is refused at once', async () => {
    const port = await freePort();
    const nobody = `postgres://facestream:secret@127.0.0.1:${port}/facestream`;
    const err = await expectCode(openNode('nobody', { url: nobody, timeouts: { startMs: 1000, connectMs: 500 } }), 'STORE_UNAVAILABLE');
    expect(err.message).toMatch(/cannot reach the cluster's PostgreSQL \(postgres:\/\/\*\*\*@127\.0\.0\.1:\d+\/facestream\) to start this node: .*ECONNREFUSED.*\(cluster\.postgres; tried \d+ times/);
    expect(err.message).not.toMatch(/replica|secret/);

    for (const [url, said] of [
      [pg.url.replace(/\/facestream$/, '/no_such_db'), /database "no_such_db" does not exist/],
      [pg.url.replace('facestream@', 'nobody@'), /role "nobody" does not exist/],
    ] as const) {
      const started = Date.now();
      const refused = await expectCode(openNode('refused', { url, timeouts: { startMs: 30_000 } }), 'CONFIG_INVALID');
      expect(refused.message).toMatch(said);
      expect(refused.message).toMatch(/refused the connection: .*\(cluster\.postgres\)/);
      expect(Date.now() - started).toBeLessThan(10_000);
    }
  }, 60_000);
});

describe('two servers in cluster mode (REST, real models)', () => {
  let analyzer: FaceAnalyzer;
  let serverA: TestServer;
  let serverB: TestServer;
  let a: ClusterStores;
  let b: ClusterStores;
  const b64 = (who: string, n: number) => fs.readFileSync(dataFile('faces', who, `${n}.jpg`)).toString('base64');

  beforeAll(async () => {
    analyzer = await sharedAnalyzer();
    const url = await pg.createDatabase('rest');
    const model = { url, modelId: analyzer.embedder.modelId, dimension: analyzer.embedder.dimension };
    a = await openNode('rest-a', model);
    b = await openNode('rest-b', model);
    serverA = await startTestServer({ analyzer, listen: false, stores: a, logger: capturingLogger('warn').logger });
    serverB = await startTestServer({ analyzer, listen: false, stores: b, logger: capturingLogger('warn').logger });
  }, 60_000);
  afterAll(async () => {
    await serverA?.close();
    await serverB?.close();
    await analyzer?.runtime.close();
  });

  it('a picture enrolled on one node identifies another picture of the person on the other', async () => {
    const enrolled = await serverA.app.inject({ method: 'POST', url: '/api/v1/enroll', headers: serverA.auth, payload: { id: 'obama', name: 'Barack Obama', images: [{ name: '1.jpg', data: b64('barack_obama', 1) }, { name: '2.jpg', data: b64('barack_obama', 2) }] } });
    expect(enrolled.statusCode).toBe(201);
    expect(enrolled.json()).toMatchObject({ identity: { id: 'obama', templates: 2 }, created: true, rejected: [] });
    const again = await serverB.app.inject({ method: 'POST', url: '/api/v1/identities/obama/templates', headers: serverB.auth, payload: { image: b64('barack_obama', 1) } });
    expect(again.json().code).toBe('DUPLICATE_TEMPLATE');
    await b.caughtUp();
    const identified = await serverB.app.inject({ method: 'POST', url: '/api/v1/identify', headers: serverB.auth, payload: { image: b64('barack_obama', 3) } });
    expect(identified.statusCode).toBe(200);
    expect(identified.json().faces.map((f: { identity: { id: string } | null }) => f.identity?.id)).toContain('obama');
    const templateId = enrolled.json().added[0].id as string;
    // The stored crop travels too (for re-embedding with another model).
    const crop = await serverB.app.inject({ method: 'GET', url: `/api/v1/templates/${templateId}/crop`, headers: serverB.auth });
    expect(crop.statusCode).toBe(200);
    expect(crop.rawPayload.equals(a.gallery.templateCrop(templateId)!.data)).toBe(true);
    expect((await serverB.app.inject({ method: 'DELETE', url: `/api/v1/templates/${templateId}`, headers: serverB.auth })).statusCode).toBe(204);
    await until(() => a.gallery.getTemplate(templateId) === undefined, 1000, 'the removal on the other node');
    // CompreFace's routes write through the cluster too.
    const subject = await serverA.app.inject({ method: 'POST', url: '/api/v1/recognition/subjects', headers: { ...serverA.auth, 'content-type': 'application/json' }, payload: { subject: 'Joe Biden' } });
    expect(subject.statusCode).toBe(201);
    await until(() => b.gallery.getIdentity('Joe Biden') !== undefined, 1000, 'the CompreFace subject on the other node');
  }, 60_000);

  it('stream definitions created on one node are listed by the other', async () => {
    const created = await serverA.app.inject({ method: 'POST', url: '/api/v1/streams', headers: serverA.auth, payload: { id: 'lobby', url: 'lavfi:testsrc=size=64x48:rate=5', enabled: false } });
    expect(created.statusCode).toBe(201);
    await until(() => serverB.ctx.streams.has('lobby'), 1000, 'the stream on the other node');
    const listed = await serverB.app.inject({ method: 'GET', url: '/api/v1/streams', headers: serverB.auth });
    expect(listed.json().streams.map((s: { id: string }) => s.id)).toContain('lobby');
    expect((await serverB.app.inject({ method: 'DELETE', url: '/api/v1/streams/lobby', headers: serverB.auth })).statusCode).toBe(204);
    await until(() => !serverA.ctx.streams.has('lobby'), 1000, 'the removal on the first node');
  });

  it('PostgreSQL down: writes answer 503 STORE_UNAVAILABLE, reads and identification keep working', async () => {
    await pg.halt();
    try {
      const create = await serverA.app.inject({ method: 'POST', url: '/api/v1/identities', headers: serverA.auth, payload: { id: 'kit', name: 'Kit Harington' } });
      expect(create.statusCode).toBe(503);
      expect(create.json()).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      const enroll = await serverB.app.inject({ method: 'POST', url: '/api/v1/enroll', headers: serverB.auth, payload: { id: 'kit', name: 'Kit', images: [{ name: '1.jpg', data: b64('kit_harington', 1) }] } });
      expect(enroll.statusCode).toBe(503);
      const stream = await serverB.app.inject({ method: 'POST', url: '/api/v1/streams', headers: serverB.auth, payload: { id: 'hall', url: 'lavfi:testsrc=size=64x48:rate=5', enabled: false } });
      expect(stream.statusCode).toBe(503);
      expect(serverB.ctx.streams.has('hall')).toBe(false);
      expect((await serverB.app.inject({ method: 'GET', url: '/api/v1/identities', headers: serverB.auth })).statusCode).toBe(200);
      const identified = await serverB.app.inject({ method: 'POST', url: '/api/v1/identify', headers: serverB.auth, payload: { image: b64('barack_obama', 4) } });
      expect(identified.json().faces.map((f: { identity: { id: string } | null }) => f.identity?.id)).toContain('obama');
    } finally {
      await pg.resume();
    }
    await until(() => a.connected() && b.connected(), 10_000, 'both nodes to reconnect');
    const retried = await serverB.app.inject({ method: 'POST', url: '/api/v1/enroll', headers: serverB.auth, payload: { id: 'kit', name: 'Kit', images: [{ name: '1.jpg', data: b64('kit_harington', 1) }] } });
    expect(retried.statusCode).toBe(201);
    await until(() => a.gallery.getIdentityById('kit')?.templates === 1, 1000, 'the retried enrollment on the other node');
  }, 60_000);
});
