import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { galleryIndexSchema } from '../src/config/sections/gallery.js';
import { hnswFileProblem } from '../src/index/hnsw-file-check.js';
import { HnswIndex } from '../src/index/hnsw.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-hnsw-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function unit(dimension: number, hot: number): Float32Array {
  const v = new Float32Array(dimension);
  v[hot] = 1;
  return v;
}

describe('HnswIndex saved and loaded', () => {
  // A server stopped before it saw any face saves an empty appearance index; the next start loaded
  // it with a capacity of 0 and every later add failed ("resizeIndex failed to allocate base layer"),
  // then the process died of a corrupted heap.
  it.each([0, 1, 16, 17])('grows after loading an index saved with %i entries', async (saved) => {
    const cfg = galleryIndexSchema.parse({});
    const file = path.join(tmp, `saved-${saved}.hnsw`);
    const before = HnswIndex.create(8, cfg);
    for (let i = 0; i < saved; i++) before.add(i, unit(8, i % 8));
    await before.writeTo(file);
    // Embeddings are biometric data: the file is the owner's alone (the appearance index was 0644).
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    // A sound file passes the structural check that guards every load (it called an empty or
    // one-template index damaged: capacity 1024 "in 816 bytes", top level -1).
    expect(await hnswFileProblem(file, 8)).toBeUndefined();

    const index = await HnswIndex.load(file, 8, cfg);
    for (let i = saved; i < saved + 40; i++) index.add(i, unit(8, i % 8));
    expect(index.size).toBe(saved + 40);
    expect(index.search(unit(8, 3), 1)[0].similarity).toBeCloseTo(1, 5);
  });

  it('the structural check accepts a one-template 128-d index and still refuses an absurd capacity', async () => {
    const cfg = galleryIndexSchema.parse({});
    const file = path.join(tmp, 'one-128.hnsw');
    const one = HnswIndex.create(128, cfg);
    one.add(0, unit(128, 0));
    await one.writeTo(file);
    expect(fs.statSync(file).size).toBeLessThan(cfg.initialCapacity);
    expect(await hnswFileProblem(file, 128, cfg.initialCapacity)).toBeUndefined();
    const b = fs.readFileSync(file);
    b.writeBigUInt64LE(1n << 40n, 8); // max_elements: hnswlib would try to allocate it at load
    fs.writeFileSync(file, b);
    expect(await hnswFileProblem(file, 128, cfg.initialCapacity)).toMatch(/header is damaged \(1 of 1099511627776 elements/);
  });
});
