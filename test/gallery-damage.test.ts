import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config/schema.js';
import { Gallery } from '../src/index/gallery.js';
import { hnswFileProblem } from '../src/index/hnsw-file-check.js';
import { runCli, type CliRun } from './helpers/cli.js';
import { dataFile } from './helpers/paths.js';

/**
 * Damage to a gallery on disk: every kind is detected, reported in words (no stack trace, no
 * crash), and repaired where possible by `gallery check --repair`.
 */

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-damage-'));
const CONFIG = path.join(tmp, 'no-checksum.yaml');
const TEMPLATES = 400; // over index.exactBelow (50 in CONFIG): searches go through the saved HNSW index

function unit(seed: number): Float32Array {
  const v = new Float32Array(512);
  let x = seed * 2654435761;
  for (let i = 0; i < 512; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    v[i] = x / 2 ** 32 - 0.5;
  }
  const n = Math.hypot(...v);
  return v.map((a) => a / n);
}

/** A gallery of the arcface model's shape (random embeddings), with its index saved. */
async function makeGallery(name: string): Promise<string> {
  const dir = path.join(tmp, name);
  const config = defaultConfig().gallery;
  config.index.exactBelow = 50;
  const g = await Gallery.open(dir, { modelId: 'arcface-mbf-112', dimension: 512, config });
  g.addTemplatesBatch(Array.from({ length: TEMPLATES / 2 }, (_, i) => ({ identity: { id: `p${i}`, name: `Person ${i}` }, templates: [{ source: 'a', embedding: unit(2 * i + 1) }, { source: 'b', embedding: unit(2 * i + 2) }] })));
  await g.close();
  return dir;
}

const indexFile = (dir: string) => path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.hnsw'))!);
const cli = (args: string[]) => runCli([...args, '--config', CONFIG]);

function expectWords(r: CliRun, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(1); // an exit code, not a signal (a crash gives null/139)
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/unexpected error|\n\s+at /);
}

beforeAll(() => fs.writeFileSync(CONFIG, 'gallery:\n  index:\n    verifyChecksum: false\n    exactBelow: 50\n'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('a damaged saved index', () => {
  it('is found by the structural check whatever the checksum setting: neighbour ids, counts, header, truncation', async () => {
    const dir = await makeGallery('structure');
    const file = indexFile(dir);
    expect(await hnswFileProblem(file, 512)).toBeUndefined();
    const good = fs.readFileSync(file);
    const recordBytes = Number(good.readBigUInt64LE(24));
    const damages: [string, (b: Buffer) => Buffer, RegExp][] = [
      ['neighbour id', (b) => (b.writeUInt32LE(0xfffffff0, 96 + 10 * recordBytes + 4), b), /links to element/],
      ['neighbour count', (b) => (b.writeUInt16LE(60000, 96 + 20 * recordBytes), b), /level-0 neighbours/],
      ['header', (b) => (b.fill(0xab, 0, 40), b), /header is damaged/],
      ['truncation', (b) => b.subarray(0, b.length - 1000), /truncated|upper-level|after its last/],
    ];
    for (const [what, damage, message] of damages) {
      fs.writeFileSync(file, damage(Buffer.from(good)));
      expect(await hnswFileProblem(file, 512), what).toMatch(message);
    }
  });

  it('with the checksum off, never crashes: check reports it (exit 1), identify still answers, --repair rebuilds it, check is ok again', async () => {
    const dir = await makeGallery('links');
    const file = indexFile(dir);
    const b = fs.readFileSync(file);
    const recordBytes = Number(b.readBigUInt64LE(24));
    for (let e = 0; e < TEMPLATES; e += 7) b.writeUInt32LE(0x7fffffff, 96 + e * recordBytes + 4); // neighbour ids far out of range
    fs.writeFileSync(file, b);

    const check = await cli(['gallery', 'check', '--gallery', dir]);
    expect(check.code, check.stderr).toBe(1);
    expect(check.stdout).toMatch(/saved index .* is damaged: index element \d+ links to element/);
    expect(check.stdout).toMatch(/check --repair/);
    expect(check.stdout).not.toMatch(/^ok$/m);

    const identify = await cli(['identify', dataFile('faces', 'paul_rudd', '1.jpg'), '--gallery', dir, '--json']);
    expect(identify.code, identify.stderr).toBe(0);

    const repair = await cli(['gallery', 'check', '--repair', '--gallery', dir]);
    expect(repair.code, repair.stderr).toBe(0);
    expect(repair.stdout).toMatch(/repaired: .*damaged/);
    const again = await cli(['gallery', 'check', '--gallery', dir]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^ok$/m);
  });
});

describe('a damaged database', () => {
  it('gives a clear error in list, identify and check, and --repair keeps every readable row', async () => {
    const dir = await makeGallery('pages');
    const db = path.join(dir, 'gallery.db');
    const bytes = fs.readFileSync(db);
    const pageSize = bytes.readUInt16BE(16);
    // Every 9th page from the 20th gets a garbage b-tree header.
    for (let p = 20; p * pageSize < bytes.length; p += 9) bytes.fill(0xee, p * pageSize, p * pageSize + 16);
    fs.writeFileSync(db, bytes);

    for (const args of [
      ['gallery', 'list', '--gallery', dir],
      ['identify', dataFile('faces', 'paul_rudd', '1.jpg'), '--gallery', dir],
      ['gallery', 'check', '--gallery', dir],
    ]) {
      expectWords(await cli(args), /gallery database .*is damaged|damaged \(sqlite/);
    }

    const repair = await cli(['gallery', 'check', '--repair', '--gallery', dir, '--json']);
    expect(repair.code, repair.stderr).toBe(0);
    const report = JSON.parse(repair.stdout) as { ok: boolean; repaired: string[]; templates: number };
    expect(report.ok).toBe(true);
    expect(report.repaired[0]).toMatch(/^database: .*kept \d+ identities and \d+ templates, lost \d+ and \d+; the damaged file is .*gallery\.db\.damaged-/);
    expect(report.templates).toBeGreaterThan(TEMPLATES / 2);
    expect(report.templates).toBeLessThan(TEMPLATES);
    expect(fs.readdirSync(dir).some((f) => f.startsWith('gallery.db.damaged-'))).toBe(true);
    const list = await cli(['gallery', 'list', '--gallery', dir, '--json']);
    expect(list.code, list.stderr).toBe(0);
  });

  it('a file that is no database any more is reported as such, and --repair says it cannot be repaired', async () => {
    const dir = await makeGallery('notadb');
    const db = path.join(dir, 'gallery.db');
    const bytes = fs.readFileSync(db);
    bytes.fill(0x42, 0, 100);
    fs.writeFileSync(db, bytes);
    expectWords(await cli(['gallery', 'list', '--gallery', dir]), /is damaged \(sqlite: file is not a database\)/);
    expectWords(await cli(['gallery', 'check', '--repair', '--gallery', dir]), /damaged beyond repair.*restore it from a backup/);
  });
});
