import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { dataFile } from './helpers/paths.js';

/** The gallery commands as a user runs them: `node bin/facestream.js ...` on real pictures. */

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-enroll-cli-'));
const gallery = path.join(tmp, 'gallery');
const people = path.join(tmp, 'people');
const OBAMA = (n: number) => dataFile('faces', 'barack_obama', `${n}.jpg`);

async function json<T = Record<string, unknown>>(args: string[], env?: Record<string, string>): Promise<T> {
  const r = await runCli(args, { cwd: tmp, env });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
}

beforeAll(async () => {
  // A small enroll-dir tree: two people, one unreadable file, one picture without a face.
  for (const [who, files] of [
    ['joe_biden', ['1.jpg', '2.jpg']],
    ['kit_harington', ['1.jpg', '2.jpg', '3.jpg']],
  ] as const) {
    fs.mkdirSync(path.join(people, who), { recursive: true });
    for (const f of files) fs.copyFileSync(dataFile('faces', who, f), path.join(people, who, f));
  }
  fs.writeFileSync(path.join(people, 'kit_harington', '9.jpg'), 'not a jpeg');
  await sharp({ create: { width: 200, height: 200, channels: 3, background: { r: 10, g: 200, b: 90 } } })
    .jpeg()
    .toFile(path.join(people, 'joe_biden', '8.jpg'));
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('facestream enroll / enroll-dir / identify / verify / gallery', () => {
  it('enroll adds pictures of a person and reports rejected ones; nothing enrolled is an error', async () => {
    const r = await json<{ identity: { id: string; name: string; templates: number }; created: boolean; added: unknown[]; rejected: { picture: string; code: string }[] }>([
      'enroll',
      'Barack Obama',
      OBAMA(1),
      OBAMA(2),
      dataFile('scenes', 'two_people.jpg'),
      path.join(tmp, 'missing.jpg'),
      '--id',
      'obama',
      '--metadata',
      '{"team":"blue"}',
      '--gallery',
      gallery,
      '--json',
    ]);
    expect(r.identity).toMatchObject({ id: 'obama', name: 'Barack Obama', templates: 2 });
    expect(r.created).toBe(true);
    expect(r.rejected.map((x) => x.code).sort()).toEqual(['FILE_NOT_FOUND', 'MULTIPLE_FACES']);
    // Same pictures again: duplicates, nothing added -> exit code 1 with the reason.
    const again = await runCli(['enroll', 'Barack Obama', OBAMA(1), '--gallery', gallery], { cwd: tmp });
    expect(again.code).toBe(1);
    expect(again.stdout).toMatch(/rejected .*1\.jpg: DUPLICATE_TEMPLATE/);
    expect(again.stderr).toMatch(/nothing enrolled/);
    // The gallery directory can come from the environment; --largest picks the biggest face.
    const largest = await json<{ added: unknown[] }>(['enroll', 'obama', dataFile('scenes', 'obama_and_biden.jpg'), '--largest', '--json'], { FACESTREAM_GALLERY: gallery });
    expect(largest.added).toHaveLength(1);
  });

  it('enroll-dir reports per-file failures at the end without stopping, and resumes', async () => {
    const first = await runCli(['enroll-dir', people, '--gallery', gallery], { cwd: tmp });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/7 pictures in 2 folders: 5 added, 0 already enrolled, 2 rejected/);
    expect(first.stdout).toMatch(/9\.jpg: IMAGE_UNREADABLE/);
    expect(first.stdout).toMatch(/8\.jpg: NO_FACE/);
    fs.copyFileSync(dataFile('faces', 'kit_harington', '3.jpg'), path.join(people, 'kit_harington', '4.jpg')); // same content as 3.jpg: skipped
    await sharp(dataFile('faces', 'kit_harington', '3.jpg')).flop().resize({ width: 500 }).toFile(path.join(people, 'kit_harington', '5.jpg')); // new since the last run (mirrored: a resized copy alone is a duplicate)
    const lines = (await runCli(['enroll-dir', people, '--gallery', gallery, '--jsonl'], { cwd: tmp })).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { file: string; status: string });
    const status = Object.fromEntries(lines.map((l) => [path.relative(people, l.file), l.status]));
    expect(status).toEqual({
      'joe_biden/1.jpg': 'skipped',
      'joe_biden/2.jpg': 'skipped',
      'joe_biden/8.jpg': 'rejected',
      'kit_harington/1.jpg': 'skipped',
      'kit_harington/2.jpg': 'skipped',
      'kit_harington/3.jpg': 'skipped',
      'kit_harington/4.jpg': 'skipped',
      'kit_harington/5.jpg': 'added',
      'kit_harington/9.jpg': 'rejected',
    });
  });

  it('identify lists every face with its top identities, or unknown', async () => {
    const text = await runCli(['identify', dataFile('scenes', 'obama_and_biden.jpg'), '--gallery', gallery], { cwd: tmp });
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/face \d \[.*\]: Barack Obama \(\d\.\d+\)\n {2}1\. Barack Obama/);
    expect(text.stdout).toMatch(/: joe_biden \(0\.\d+\)/);
    expect(text.stdout).toMatch(/: unknown\n/);
    const annotated = path.join(tmp, 'annotated.png');
    const r = await json<{ faces: { identity: { name: string; similarity: number } | null; candidates: { name: string; similarity: number }[] }[]; threshold: number }>([
      'identify',
      dataFile('faces', 'kit_harington', '3.jpg'),
      '--gallery',
      gallery,
      '--top',
      '3',
      '--annotate',
      annotated,
      '--json',
    ]);
    expect(r.faces).toHaveLength(1);
    expect(r.faces[0].identity?.name).toBe('kit_harington');
    expect(r.faces[0].candidates).toHaveLength(3);
    expect(r.faces[0].candidates.map((c) => c.similarity)).toEqual([...r.faces[0].candidates.map((c) => c.similarity)].sort((a, b) => b - a));
    expect((await sharp(annotated).metadata()).format).toBe('png');
  });

  it('verify compares a picture with a gallery identity given by name', async () => {
    const same = await json<{ match: boolean; similarity: number; identity: { id: string } }>(['verify', OBAMA(4), 'Barack Obama', '--gallery', gallery]);
    expect(same.match).toBe(true);
    expect(same.identity.id).toBe('obama');
    const other = await json<{ match: boolean }>(['verify', OBAMA(4), 'joe_biden', '--gallery', gallery]);
    expect(other.match).toBe(false);
    const missing = await runCli(['verify', OBAMA(4), 'Nobody Here', '--gallery', gallery], { cwd: tmp });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no identity "Nobody Here"/);
    // A mistyped picture path is a missing file, not an identity lookup.
    const typo = await runCli(['verify', OBAMA(4), 'photos/obama_typo.jpg', '--gallery', gallery], { cwd: tmp });
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(/no such file/);
  });

  it('gallery list, show, rename, set-metadata, remove-template, remove, check', async () => {
    const list = await json<{ counts: { identities: number; templates: number }; identities: { id: string; name: string; templates: number }[] }>(['gallery', 'list', '--gallery', gallery, '--json']);
    expect(list.identities.map((i) => [i.id, i.templates])).toEqual([
      ['obama', 3],
      ['joe_biden', 2],
      ['kit_harington', 4],
    ]);
    const crops = path.join(tmp, 'crops');
    const show = await json<{ identity: { metadata: unknown }; templates: { id: string; source: string }[] }>(['gallery', 'show', 'Barack Obama', '--gallery', gallery, '--crops', crops, '--json']);
    expect(show.identity.metadata).toEqual({ team: 'blue' });
    expect(fs.readdirSync(crops)).toHaveLength(3);
    expect((await sharp(path.join(crops, fs.readdirSync(crops)[0])).metadata()).width).toBe(256);

    expect((await runCli(['gallery', 'rename', 'kit_harington', 'Kit Harington', '--gallery', gallery], { cwd: tmp })).stdout).toMatch(/renamed kit_harington to "Kit Harington"/);
    await json(['gallery', 'set-metadata', 'Kit Harington', '{"show":"GoT"}', '--gallery', gallery, '--json']);
    const removed = await json<{ id: string }>(['gallery', 'remove-template', show.templates[2].id, '--gallery', gallery, '--json']);
    expect(removed.id).toBe(show.templates[2].id);
    const gone = await runCli(['gallery', 'remove-template', show.templates[2].id, '--gallery', gallery], { cwd: tmp });
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/no template/);
    await json(['gallery', 'remove', 'joe_biden', '--gallery', gallery, '--json']);
    const after = await json<{ identities: { id: string; name: string; templates: number; metadata: unknown }[] }>(['gallery', 'list', '--gallery', gallery, '--json']);
    expect(after.identities.map((i) => [i.name, i.templates, i.metadata])).toEqual([
      ['Barack Obama', 2, { team: 'blue' }],
      ['Kit Harington', 4, { show: 'GoT' }],
    ]);
    const check = await runCli(['gallery', 'check', '--gallery', gallery], { cwd: tmp });
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toMatch(/2 identities, 6 templates.*\nok\n/);
    // A damaged index file: check (read-only) reports it (exit 1) although it rebuilt the index in memory; --repair saves a good one.
    const indexFile = fs.readdirSync(gallery).find((f) => f.endsWith('.hnsw'))!;
    fs.writeFileSync(path.join(gallery, indexFile), 'garbage');
    const damagedRun = await runCli(['gallery', 'check', '--gallery', gallery, '--json'], { cwd: tmp });
    expect(damagedRun.code).toBe(1);
    const damaged = JSON.parse(damagedRun.stdout) as { ok: boolean; problems: string[]; loaded: { source: string; reason: string } };
    expect(damaged.ok).toBe(false);
    expect(damaged.problems[0]).toMatch(/bytes.*check --repair/);
    expect(damaged.loaded).toMatchObject({ source: 'rebuilt', reason: expect.stringMatching(/bytes/) });
    await json(['gallery', 'check', '--repair', '--gallery', gallery, '--json']);
    expect((await json<{ loaded: { source: string } }>(['gallery', 'check', '--gallery', gallery, '--json'])).loaded.source).toBe('loaded');
  });

  it('gallery export, import into another gallery, and reindex with another model', async () => {
    const file = path.join(tmp, 'export.jsonl.gz');
    expect((await runCli(['gallery', 'export', file, '--gallery', gallery], { cwd: tmp })).stdout).toMatch(/exported 2 identities and 6 templates/);
    const copy = path.join(tmp, 'copy');
    // A malformed file changes nothing, and leaves no empty gallery behind where there was none.
    const broken = path.join(tmp, 'broken.jsonl');
    fs.writeFileSync(broken, '{"not": "an export"}\n');
    const refused = await runCli(['gallery', 'import', broken, '--gallery', copy], { cwd: tmp });
    expect(refused.code).toBe(1);
    expect(fs.existsSync(copy)).toBe(false);
    const imported = await json<{ identitiesCreated: number; templatesAdded: number; counts: { templates: number } }>(['gallery', 'import', file, '--gallery', copy, '--json']);
    expect(imported).toMatchObject({ identitiesCreated: 2, templatesAdded: 6, counts: { templates: 6 } });
    // A gallery belongs to one model; reindex converts it to the other real-weight model.
    const r = await runCli(['gallery', 'reindex', '--model', 'faceapi-resnet34-150', '--gallery', copy], { cwd: tmp });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/re-embedded 6 templates: arcface-mbf-112 -> faceapi-resnet34-150 \(128-d\)/);
    expect(r.stdout).toMatch(/set embedding.model to "faceapi-resnet34-150"/);
    // The configured model no longer matches the gallery: a clear error, then it works with the new model.
    const mismatch = await runCli(['identify', OBAMA(3), '--gallery', copy], { cwd: tmp });
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toMatch(/built with embedding model "faceapi-resnet34-150".*uses "arcface-mbf-112"/);
    // Configuration alone selects the model; its manifest threshold applies, and it still recognises the person.
    const ok = await json<{ model: string; threshold: number; faces: { identity: { name: string; similarity: number } | null }[] }>(['identify', OBAMA(3), '--gallery', copy, '--json'], {
      FACESTREAM_EMBEDDING_MODEL: 'faceapi-resnet34-150',
    });
    expect(ok.model).toBe('faceapi-resnet34-150');
    expect(ok.threshold).toBe(0.915);
    expect(ok.faces).toHaveLength(1);
    expect(ok.faces[0].identity?.name).toBe('Barack Obama');
    // The text output states the threshold as the similarities are printed (0.915, not rounded to 0.92).
    const text = await runCli(['identify', OBAMA(3), '--gallery', copy], { cwd: tmp, env: { FACESTREAM_EMBEDDING_MODEL: 'faceapi-resnet34-150' } });
    expect(text.stdout).toMatch(/threshold 0\.915\)\n/);
    // Importing the arcface export into the faceapi gallery re-embeds from the crops; all already present.
    const merged = await json<{ duplicates: number; templatesAdded: number }>(['gallery', 'import', file, '--gallery', copy, '--json'], { FACESTREAM_EMBEDDING_MODEL: 'faceapi-resnet34-150' });
    expect(merged).toMatchObject({ duplicates: 6, templatesAdded: 0 });
  });

  it('a gallery in use by another writer is refused with GALLERY_LOCKED; usage errors exit 2', async () => {
    fs.writeFileSync(path.join(gallery, 'gallery.lock'), `${process.pid} ${os.hostname()}\n`);
    try {
      const r = await runCli(['gallery', 'remove', 'obama', '--gallery', gallery], { cwd: tmp });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`in use by process ${process.pid}`));
      // Read-only commands still work beside the writer.
      expect((await runCli(['gallery', 'list', '--gallery', gallery], { cwd: tmp })).code).toBe(0);
    } finally {
      fs.rmSync(path.join(gallery, 'gallery.lock'));
    }
    expect((await runCli(['gallery', 'rename', 'obama'], { cwd: tmp })).code).toBe(2);
    const notAGallery = await runCli(['gallery', 'list', '--gallery', path.join(tmp, 'nothing-here')], { cwd: tmp });
    expect(notAGallery.code).toBe(1);
    expect(notAGallery.stderr).toMatch(/is not a gallery/);
  });
});
