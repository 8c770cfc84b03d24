import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gallerySchema, type GalleryConfig } from '../src/config/sections/gallery.js';
import { isFacestreamError } from '../src/errors.js';
import { decodeCrop } from '../src/index/crop.js';
import { Enroller, faceSize } from '../src/index/enroll.js';
import { Gallery, type IdentityMatch } from '../src/index/gallery.js';
import { reindexGallery } from '../src/index/reindex.js';
import { exportGallery, importGallery } from '../src/index/transfer.js';
import { createLogger } from '../src/log.js';
import type { ModelRuntime } from '../src/models/runtime.js';
import { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { Embedder } from '../src/pipeline/embed/embedder.js';
import { cosineSimilarity } from '../src/pipeline/embed/vector.js';
import { testConfig, testRuntime } from './helpers/models.js';
import { dataFile } from './helpers/paths.js';

const logger = createLogger('silent');
const face = (who: string, file: string) => ({ name: `${who}/${file}`, data: fs.readFileSync(dataFile('faces', who, file)) });

function galleryConfig(over: Record<string, unknown> = {}): GalleryConfig {
  return gallerySchema.parse(over);
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-gallery-'));
}

/** A random unit vector (seeded by the caller through Math.random is fine: assertions do not depend on values). */
function randomUnit(dim: number): Float32Array {
  const v = new Float32Array(dim);
  let s = 0;
  for (let i = 0; i < dim; i++) {
    v[i] = Math.random() - 0.5;
    s += v[i] * v[i];
  }
  s = 1 / Math.sqrt(s);
  for (let i = 0; i < dim; i++) v[i] *= s;
  return v;
}

function near(centre: Float32Array, spread: number): Float32Array {
  const v = new Float32Array(centre.length);
  let s = 0;
  for (let i = 0; i < v.length; i++) {
    v[i] = centre[i] + (Math.random() - 0.5) * spread;
    s += v[i] * v[i];
  }
  s = 1 / Math.sqrt(s);
  for (let i = 0; i < v.length; i++) v[i] *= s;
  return v;
}

let runtime: ModelRuntime;
let analyzer: FaceAnalyzer;
const dirs: string[] = [];

async function openGallery(dir: string, over: Record<string, unknown> = {}, readOnly = false): Promise<Gallery> {
  return Gallery.open(dir, {
    modelId: analyzer.embedder.modelId,
    dimension: analyzer.embedder.dimension,
    config: galleryConfig(over),
    logger,
    defaultMinSimilarity: analyzer.embedder.defaultMinSimilarity,
    readOnly,
  });
}

beforeAll(async () => {
  const config = testConfig();
  runtime = testRuntime(config);
  analyzer = await FaceAnalyzer.create(runtime, { ...config, attributes: { ...config.attributes, enabled: false } });
});

afterAll(async () => {
  await runtime.close();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('enrollment and identification with real pictures', () => {
  let dir: string;
  let gallery: Gallery;
  let enroller: Enroller;

  beforeAll(async () => {
    dir = tmpDir();
    dirs.push(dir);
    gallery = await openGallery(dir);
    enroller = new Enroller(gallery, analyzer, gallery.config);
  });
  afterAll(() => gallery.close());

  it('enrolls several pictures of a person in one call and identifies a new picture of them', async () => {
    const events: string[] = [];
    for (const e of ['identity-created', 'template-added'] as const) gallery.on(e, () => events.push(e));
    const report = await enroller.enrollPictures({ name: 'Barack Obama' }, [face('barack_obama', '1.jpg'), face('barack_obama', '2.jpg'), face('barack_obama', '3.jpg')]);
    expect(report.rejected).toEqual([]);
    expect(report.added).toHaveLength(3);
    expect(report.created).toBe(true);
    expect(report.identity).toMatchObject({ name: 'Barack Obama', templates: 3 });
    expect(events).toEqual(['identity-created', 'template-added', 'template-added', 'template-added']);
    await enroller.enrollPictures({ id: 'joe_biden', name: 'Joe Biden' }, [face('joe_biden', '1.jpg')]);
    await enroller.enrollPictures({ id: 'kit', name: 'Kit Harington' }, [face('kit_harington', '1.jpg'), face('kit_harington', '2.jpg')]);
    expect(gallery.counts()).toEqual({ identities: 3, templates: 6 });

    const probe = async (who: string, file: string) => {
      const [faces] = await analyzer.analyze([await sharp(dataFile('faces', who, file)).raw().toBuffer({ resolveWithObject: true }).then(({ data, info }) => ({ width: info.width, height: info.height, data: new Uint8Array(data) }))], { attributes: false });
      return gallery.identify(faces.sort((a, b) => b.box[2] - b.box[0] - (a.box[2] - a.box[0]))[0].embedding!);
    };
    const obama = await probe('barack_obama', '4.jpg');
    expect(obama.match?.name).toBe('Barack Obama');
    expect(obama.match!.similarity).toBeGreaterThan(gallery.minSimilarity);
    expect(obama.candidates.map((c) => c.name)).toEqual(['Barack Obama', ...obama.candidates.slice(1).map((c) => c.name)]);
    expect(obama.candidates.length).toBe(3); // aggregated per identity: 3 identities, not 6 templates
    const biden = await probe('joe_biden', '2.jpg');
    expect(biden.match?.identityId).toBe('joe_biden');
    const kit = await probe('kit_harington', '3.jpg');
    expect(kit.match?.identityId).toBe('kit');
    // A person never enrolled is unknown: best candidate under the threshold.
    const stranger = await probe('paul_rudd', '1.jpg');
    expect(stranger.match).toBeNull();
    expect(stranger.candidates[0].similarity).toBeLessThan(gallery.minSimilarity);
  });

  it('rejects unusable pictures with a reason code and keeps the usable ones of the same call', async () => {
    const tiny = await sharp(dataFile('faces', 'kit_harington', '3.jpg')).resize({ width: 90 }).jpeg().toBuffer();
    const blank = await sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 120, g: 130, b: 140 } } }).jpeg().toBuffer();
    const report = await enroller.enrollPictures({ id: 'kit' }, [
      { name: 'notes.txt', data: Buffer.from('this is not a picture') },
      { name: 'blank.jpg', data: blank },
      { name: 'two_people.jpg', data: fs.readFileSync(dataFile('scenes', 'two_people.jpg')) },
      { name: 'tiny.jpg', data: tiny },
      face('kit_harington', '1.jpg'), // already enrolled for kit
      face('kit_harington', '3.jpg'),
      face('kit_harington', '3.jpg'), // twice in one call
    ]);
    const codes = Object.fromEntries(report.results.map((r) => [r.picture, r.status === 'added' ? 'added' : r.code]));
    expect(codes).toEqual({
      'notes.txt': 'IMAGE_UNREADABLE',
      'blank.jpg': 'NO_FACE',
      'two_people.jpg': 'MULTIPLE_FACES',
      'tiny.jpg': 'FACE_TOO_SMALL',
      'kit_harington/1.jpg': 'DUPLICATE_TEMPLATE',
      'kit_harington/3.jpg': 'DUPLICATE_TEMPLATE',
    });
    expect(report.results.filter((r) => r.status === 'added')).toHaveLength(1);
    expect(report.rejected.every((r) => r.reason.length > 10)).toBe(true);
    expect(gallery.requireIdentity('kit').templates).toBe(3);
  });

  it('rejects a blurred face when the blur check is on', async () => {
    const blurred = await sharp(dataFile('faces', 'kit_harington', '1.jpg')).blur(5).jpeg().toBuffer();
    const strict = new Enroller(gallery, analyzer, galleryConfig({ enrollment: { minSharpness: 50 } }));
    const r = await strict.enrollPictures({ id: 'blur-check', name: 'blur check' }, [{ name: 'blurred.jpg', data: blurred }, face('kit_harington', '2.jpg')]);
    expect(r.rejected).toEqual([{ picture: 'blurred.jpg', code: 'LOW_QUALITY', reason: expect.stringMatching(/blurred \(sharpness \d+/) }]);
    expect(r.added).toHaveLength(1);
    gallery.removeIdentity('blur-check');
  });

  it('enrolls the largest face when allowed, or the face in a given box', async () => {
    // Scaled down: the faces stay well above the size gate and detection is 4x cheaper.
    const scene = { name: 'obama_and_biden.jpg', data: await sharp(dataFile('scenes', 'obama_and_biden.jpg')).resize({ width: 1000 }).jpeg().toBuffer() };
    const refused = await enroller.enrollPictures({ name: 'Someone' }, [scene]);
    expect(refused.rejected[0].code).toBe('MULTIPLE_FACES');
    expect(refused.identity).toBeNull(); // nothing added: no empty identity left behind
    const img = await sharp(scene.data).raw().toBuffer({ resolveWithObject: true });
    const [faces] = await analyzer.detect([{ width: img.info.width, height: img.info.height, data: new Uint8Array(img.data) }]);
    const boxes = faces.filter((f) => faceSize(f) >= 40 && f.score >= 0.9).map((f) => f.box);
    expect(boxes.length).toBeGreaterThanOrEqual(2);
    for (const box of boxes) {
      const r = await enroller.enrollPictures({ id: `scene-${boxes.indexOf(box)}`, name: 'scene face' }, [scene], { box });
      expect(r.added).toHaveLength(1);
      const t = r.results[0];
      expect(t.status === 'added' && Math.abs(t.face.box[0] - box[0])).toBeLessThan(1);
    }
    const largest = await enroller.enrollPictures({ id: 'largest', name: 'largest' }, [scene], { allowLargest: true });
    expect(largest.added).toHaveLength(1);
    for (const id of [...boxes.map((_, i) => `scene-${i}`), 'largest']) gallery.removeIdentity(id);
  });

  it('enrolls a face already detected in a frame (the live path), once', async () => {
    const img = await sharp(dataFile('faces', 'rose_leslie', '1.jpg')).raw().toBuffer({ resolveWithObject: true });
    const frame = { width: img.info.width, height: img.info.height, data: new Uint8Array(img.data) };
    const [faces] = await analyzer.detect([frame]);
    const t = await enroller.enrollFace({ id: 'rose', name: 'Rose Leslie' }, frame, faces[0], 'stream cam-1 frame 42');
    expect(t).toMatchObject({ identityId: 'rose', source: 'stream cam-1 frame 42', modelId: 'arcface-mbf-112' });
    await expect(enroller.enrollFace({ id: 'rose' }, frame, faces[0], 'again')).rejects.toMatchObject({ code: 'DUPLICATE_TEMPLATE' });
    const small = { ...faces[0], box: [0, 0, 20, 20] as [number, number, number, number] };
    await expect(enroller.enrollFace({ id: 'rose' }, frame, small, 'tiny')).rejects.toMatchObject({ code: 'FACE_TOO_SMALL' });
    gallery.removeIdentity('rose');
  });

  it('manages identities and templates, with events', async () => {
    const seen: { event: string; payload: unknown }[] = [];
    for (const e of ['identity-updated', 'identity-removed', 'template-removed'] as const) gallery.on(e, (payload) => seen.push({ event: e, payload }));
    const renamed = gallery.renameIdentity('Barack Obama', 'Barack H. Obama');
    expect(renamed.name).toBe('Barack H. Obama');
    const updated = gallery.updateIdentity(renamed.id, { metadata: { role: 'president', since: 2009 } });
    expect(updated.metadata).toEqual({ role: 'president', since: 2009 });
    expect(gallery.getIdentity('Barack H. Obama')?.id).toBe(renamed.id);
    expect(gallery.listIdentities().map((i) => i.name)).toEqual(['Barack H. Obama', 'Joe Biden', 'Kit Harington']);

    const templates = gallery.listTemplates(renamed.id);
    expect(templates).toHaveLength(3);
    expect(templates[0]).toMatchObject({ identityId: renamed.id, source: 'barack_obama/1.jpg', modelId: 'arcface-mbf-112' });
    expect(templates[0].faceSize).toBeGreaterThan(100);
    const crop = gallery.templateCrop(templates[0].id)!;
    expect((await sharp(crop.data).metadata()).width).toBe(256);
    const removed = gallery.removeTemplate(templates[0].id);
    expect(removed.id).toBe(templates[0].id);
    expect(gallery.listTemplates(renamed.id)).toHaveLength(2);
    // A removed template is no longer found by search, even by its own embedding.
    const emb = gallery.listTemplates(renamed.id).map((t) => gallery.templateEmbedding(t.id));
    expect(gallery.search(emb[0]).map((m) => m.templateId)).not.toContain(removed.id);
    expect(() => gallery.removeTemplate(templates[0].id)).toThrow(expect.objectContaining({ code: 'TEMPLATE_NOT_FOUND' }));
    expect(() => gallery.renameIdentity('nobody', 'x')).toThrow(expect.objectContaining({ code: 'IDENTITY_NOT_FOUND' }));
    expect(() => gallery.createIdentity({ id: 'kit', name: 'other' })).toThrow(expect.objectContaining({ code: 'IDENTITY_EXISTS' }));
    expect(() => gallery.createIdentity({ id: 'bad id!', name: 'x' })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));

    const tmp = gallery.createIdentity({ name: 'Temporary' });
    expect(tmp.id).toMatch(/^[0-9a-f-]{36}$/);
    gallery.removeIdentity(tmp.id);
    expect(gallery.getIdentity(tmp.id)).toBeUndefined();
    expect(seen.map((s) => s.event)).toEqual(['identity-updated', 'identity-updated', 'template-removed', 'identity-removed']);
    expect(JSON.parse(JSON.stringify(seen))).toEqual(seen); // plain JSON payloads
    expect(gallery.counts()).toEqual({ identities: 3, templates: 6 });
    expect((await gallery.check()).ok).toBe(true);
  });

  it('persists across close and open: the saved index is loaded, not rebuilt', async () => {
    const before = gallery.counts();
    const probe = gallery.templateEmbedding(gallery.listTemplates('joe_biden')[0].id);
    const expected = gallery.search(probe);
    await gallery.close();
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.hnsw'))).toHaveLength(1);
    gallery = await openGallery(dir);
    enroller = new Enroller(gallery, analyzer, gallery.config);
    expect(gallery.loadReport.source).toBe('loaded');
    expect(gallery.counts()).toEqual(before);
    expect(gallery.search(probe)).toEqual(expected);
    expect(gallery.getIdentity('Barack H. Obama')?.metadata).toEqual({ role: 'president', since: 2009 });
  });

  it('refuses a second writer and a different embedding model, with clear errors', async () => {
    await expect(openGallery(dir)).rejects.toMatchObject({ code: 'GALLERY_LOCKED' });
    const err = await Gallery.open(dir, { modelId: 'vggface2-resnet50-arch', dimension: 2048, config: galleryConfig(), logger, readOnly: true }).catch((e: unknown) => e);
    expect(isFacestreamError(err, 'GALLERY_MODEL_MISMATCH')).toBe(true);
    expect((err as Error).message).toMatch(/arcface-mbf-112.*vggface2-resnet50-arch.*gallery reindex --model/);
    // A read-only view works beside the writer.
    const view = await openGallery(dir, {}, true);
    expect(view.counts()).toEqual(gallery.counts());
    expect(() => view.createIdentity({ name: 'x' })).toThrow(expect.objectContaining({ code: 'GALLERY_LOCKED' }));
    await view.close();
  });

  it('takes over the lock of a writer that died (or whose pid was reused)', async () => {
    const other = tmpDir();
    dirs.push(other);
    const dead = spawnSync(process.execPath, ['-e', 'process.pid']).pid!;
    fs.writeFileSync(path.join(other, 'gallery.lock'), `${dead} ${os.hostname()}\n`);
    let g = await openGallery(other);
    await g.close();
    // A live pid with another start time is a reused pid, not the owner.
    fs.writeFileSync(path.join(other, 'gallery.lock'), `${process.pid} ${os.hostname()} 1\n`);
    g = await openGallery(other);
    expect(fs.readFileSync(path.join(other, 'gallery.lock'), 'utf8')).toMatch(new RegExp(`^${process.pid} `));
    await g.close();
    expect(fs.existsSync(path.join(other, 'gallery.lock'))).toBe(false);
  });

  it('verifies a face against one identity (1:1 with the gallery)', () => {
    const kitTemplate = gallery.templateEmbedding(gallery.listTemplates('kit')[0].id);
    expect(gallery.identitySimilarity('Kit Harington', kitTemplate).similarity).toBeCloseTo(1, 4);
    expect(gallery.identitySimilarity('joe_biden', kitTemplate).similarity).toBeLessThan(gallery.minSimilarity);
  });

  it('exports and imports a gallery, idempotently', async () => {
    const file = path.join(dir, '..', `${path.basename(dir)}-export.jsonl.gz`);
    dirs.push(file);
    const summary = await exportGallery(gallery, file);
    expect(summary).toMatchObject({ identities: 3, templates: 6 });
    const other = tmpDir();
    dirs.push(other);
    const copy = await openGallery(other);
    const first = await importGallery(copy, file);
    expect(first).toMatchObject({ identitiesCreated: 3, templatesAdded: 6, duplicates: 0 });
    const again = await importGallery(copy, file);
    expect(again).toMatchObject({ identitiesCreated: 0, identitiesMerged: 3, templatesAdded: 0, duplicates: 6 });
    expect(copy.counts()).toEqual(gallery.counts());
    expect(copy.getIdentity('joe_biden')?.name).toBe('Joe Biden');
    const probe = gallery.templateEmbedding(gallery.listTemplates('kit')[1].id);
    expect(copy.search(probe)[0]).toMatchObject({ identityId: 'kit', name: 'Kit Harington' });
    expect(copy.search(probe)[0].similarity).toBeCloseTo(1, 5);
    await copy.close();
    fs.writeFileSync(`${file}.bad`, '{"format":"something else"}\n');
    dirs.push(`${file}.bad`);
    await expect(importGallery(gallery, `${file}.bad`)).rejects.toMatchObject({ code: 'BAD_REQUEST' });
  });
});

describe('the saved index is a cache', () => {
  it('is rebuilt from SQLite when missing, truncated or corrupt, and replays changes made after its save', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    const dim = analyzer.embedder.dimension;
    let g = await openGallery(dir, { index: { exactBelow: 0 } });
    const centres = Array.from({ length: 20 }, () => randomUnit(dim));
    centres.forEach((c, i) => g.addTemplates({ id: `p${i}`, name: `person ${i}` }, [0, 1, 2].map((k) => ({ source: `synthetic ${i}/${k}`, embedding: near(c, 0.05) }))));
    await g.close();
    const queries = centres.map((c) => near(c, 0.05));
    const expected = (gg: Gallery) => queries.map((q) => gg.search(q, 1)[0]?.identityId);
    const truth = centres.map((_, i) => `p${i}`);

    // Changes after the last save are replayed from the change log.
    g = await openGallery(dir, { index: { exactBelow: 0, saveAfterChanges: 1_000_000, saveIntervalSeconds: 0 } });
    expect(g.loadReport).toMatchObject({ source: 'loaded', replayedChanges: 0 });
    g.removeIdentity('p0');
    g.addTemplates({ id: 'p0b', name: 'person 0 again' }, [{ source: 'x', embedding: near(centres[0], 0.05) }]);
    // Simulate a crash: the process dies without saving the index (close the database under it).
    (g as unknown as { store: { close(): void } }).store.close();
    fs.rmSync(path.join(dir, 'gallery.lock'));
    g = await openGallery(dir, { index: { exactBelow: 0 } });
    expect(g.loadReport).toMatchObject({ source: 'loaded', replayedChanges: 4 });
    expect(expected(g)).toEqual(['p0b', ...truth.slice(1)]);
    expect((await g.check()).ok).toBe(true);
    await g.close();

    const indexFile = () => path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.hnsw'))!);
    const damage: [string, () => void][] = [
      ['missing', () => fs.rmSync(indexFile())],
      ['truncated', () => fs.truncateSync(indexFile(), Math.floor(fs.statSync(indexFile()).size / 2))],
      [
        'corrupt',
        () => {
          const f = indexFile();
          const buf = fs.readFileSync(f);
          for (let i = 100; i < buf.length; i += 97) buf[i] ^= 0xff;
          fs.writeFileSync(f, buf);
        },
      ],
    ];
    for (const [what, hurt] of damage) {
      hurt();
      g = await openGallery(dir, { index: { exactBelow: 0 } });
      expect(g.loadReport.source, what).toBe('rebuilt');
      expect(expected(g), what).toEqual(['p0b', ...truth.slice(1)]);
      expect((await g.check()).ok, what).toBe(true);
      await g.close();
      g = await openGallery(dir, { index: { exactBelow: 0 } });
      expect(g.loadReport, `${what}, next open`).toMatchObject({ source: 'loaded', replayedChanges: 0 });
      await g.close();
    }
  });

  it('grows without a preset size, compacts deleted entries, and agrees with exact search', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    const dim = 64;
    const g = await Gallery.open(dir, {
      modelId: 'synthetic-64',
      dimension: dim,
      config: galleryConfig({ index: { exactBelow: 100, initialCapacity: 16, compactDeletedRatio: 0.3 } }),
      logger,
    });
    const centres = Array.from({ length: 400 }, () => randomUnit(dim));
    for (let i = 0; i < centres.length; i++) g.addTemplates({ id: `p${i}`, name: `p${i}` }, [0, 1, 2, 3, 4].map((k) => ({ source: `${i}/${k}`, embedding: near(centres[i], 0.15) })));
    expect(g.counts().templates).toBe(2000);
    expect(g.indexStats().capacity).toBeGreaterThanOrEqual(2000);
    const queries = centres.map((c) => near(c, 0.15));
    const agree = (gg: Gallery) => {
      const exact = gg.searchExactBatch(queries, 1);
      expect(gg.searchExact(queries[0], 1)).toEqual(exact[0]);
      return queries.filter((q, i) => gg.search(q, 1)[0]?.identityId === exact[i][0]?.identityId).length / queries.length;
    };
    expect(agree(g)).toBeGreaterThanOrEqual(0.99);
    // Remove 40% of identities: deleted entries pass the ratio and the index is compacted in the background.
    for (let i = 0; i < 160; i++) g.removeIdentity(`p${i}`);
    await g.save();
    await new Promise((r) => setTimeout(r, 50));
    const stats = g.indexStats();
    expect(stats.entries).toBe(1200);
    expect(stats.deleted).toBeLessThan(1200 * 0.3);
    expect(agree(g)).toBeGreaterThanOrEqual(0.99);
    for (const q of queries.slice(0, 160)) expect(g.search(q, 5).every((m: IdentityMatch) => Number(m.identityId.slice(1)) >= 160)).toBe(true);
    const check = await g.check();
    expect(check.problems).toEqual([]);
    await g.close();
  });
});

describe('concurrent enrollments and searches', () => {
  it('serialises writers, keeps searching during index saves, and loses nothing', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    // Save after every change: searches run while the index is frozen for saving.
    const g = await openGallery(dir, { index: { exactBelow: 0, saveAfterChanges: 1 } });
    const enroller = new Enroller(g, analyzer, g.config);
    const people: [string, string][] = [
      ['barack_obama', '1.jpg'],
      ['barack_obama', '2.jpg'],
      ['joe_biden', '1.jpg'],
      ['kit_harington', '1.jpg'],
      ['rose_leslie', '1.jpg'],
      ['alex_lacamoire', '2.jpg'],
      ['shea_whigham', '1.jpg'],
      ['kate_siegel', '1.jpg'],
    ];
    // Synthetic identities go in at the same time as real enrollments, from "other callers".
    const dim = g.dimension;
    const synthetic = Array.from({ length: 50 }, () => randomUnit(dim));
    const searches: Promise<void>[] = [];
    let searchCount = 0;
    const searcher = async () => {
      for (let i = 0; i < 40; i++) {
        const k = i % synthetic.length;
        const found = g.search(synthetic[k], 3);
        if (g.getIdentity(`s${k}`)) expect(found[0]?.identityId).toBe(`s${k}`);
        searchCount++;
        await new Promise((r) => setImmediate(r));
      }
    };
    const writers = [
      ...people.map(([who, file]) => enroller.enrollPictures({ id: who, name: who }, [face(who, file)])),
      // The same picture for the same identity from two callers at once: exactly one wins.
      enroller.enrollPictures({ id: 'barack_obama', name: 'barack_obama' }, [face('barack_obama', '1.jpg')]),
      (async () => {
        for (let k = 0; k < synthetic.length; k++) {
          g.addTemplates({ id: `s${k}`, name: `s${k}` }, [{ source: `s${k}`, embedding: synthetic[k] }]);
          await new Promise((r) => setImmediate(r));
        }
      })(),
    ];
    for (let s = 0; s < 4; s++) searches.push(searcher());
    const reports = await Promise.all(writers);
    await Promise.all(searches);
    expect(searchCount).toBe(160);
    const obamaCalls = [reports[0], reports[1], reports[people.length]] as { results: { status: string }[] }[];
    expect(obamaCalls.flatMap((r) => r.results).filter((r) => r.status === 'added')).toHaveLength(2);
    expect(g.listTemplates('barack_obama')).toHaveLength(2);
    expect(g.counts()).toEqual({ identities: people.length - 1 + synthetic.length, templates: people.length + synthetic.length });
    for (let k = 0; k < synthetic.length; k++) expect(g.search(synthetic[k], 1)[0].identityId).toBe(`s${k}`);
    expect((await g.check()).ok).toBe(true);
    await g.close();
    const again = await openGallery(dir);
    expect(again.counts()).toEqual({ identities: people.length - 1 + synthetic.length, templates: people.length + synthetic.length });
    await again.close();
  });
});

describe('gallery reindex', () => {
  it('re-embeds from stored crops with another model: arcface (close to the originals) and vggface2 (interface)', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    const g = await openGallery(dir);
    const enroller = new Enroller(g, analyzer, g.config);
    await enroller.enrollPictures({ id: 'obama', name: 'Obama' }, [face('barack_obama', '1.jpg'), face('barack_obama', '3.jpg')]);
    await enroller.enrollPictures({ id: 'rose', name: 'Rose' }, [face('rose_leslie', '1.jpg')]);
    const before = new Map(g.listTemplates('obama').concat(g.listTemplates('rose')).map((t) => [t.id, g.templateEmbedding(t.id)]));
    // The stored crop reproduces the face: embedding it gives nearly the original embedding.
    const crop = await decodeCrop(g.templateCrop(g.listTemplates('rose')[0].id)!);
    const [fromCrop] = await analyzer.embedder.embedFaces([crop]);
    expect(cosineSimilarity(fromCrop, before.get(g.listTemplates('rose')[0].id)!)).toBeGreaterThan(0.95);
    await g.close();

    const arcface = await Embedder.load(runtime, 'arcface-mbf-112');
    const same = await reindexGallery(dir, arcface);
    expect(same).toMatchObject({ fromModel: 'arcface-mbf-112', toModel: 'arcface-mbf-112', templates: 3 });
    let again = await openGallery(dir);
    expect(again.loadReport.source).toBe('rebuilt'); // reindex drops the saved index
    for (const [id, v] of before) expect(cosineSimilarity(again.templateEmbedding(id), v)).toBeGreaterThan(0.95);
    await again.close();

    const vgg = await Embedder.load(runtime, 'vggface2-resnet50-arch');
    const summary = await reindexGallery(dir, vgg);
    expect(summary).toMatchObject({ fromModel: 'arcface-mbf-112', toModel: 'vggface2-resnet50-arch', dimension: 2048, templates: 3 });
    await expect(openGallery(dir)).rejects.toMatchObject({ code: 'GALLERY_MODEL_MISMATCH' });
    again = await Gallery.open(dir, { modelId: 'vggface2-resnet50-arch', dimension: 2048, config: galleryConfig(), logger });
    expect(again.counts()).toEqual({ identities: 2, templates: 3 });
    const t = again.listTemplates('rose')[0];
    expect(t.modelId).toBe('vggface2-resnet50-arch');
    const v = again.templateEmbedding(t.id);
    expect(v.length).toBe(2048);
    expect(again.search(v, 1)[0]).toMatchObject({ identityId: 'rose' });
    expect((await again.check()).ok).toBe(true);
    await again.close();
  });
});
