import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensurePrivateDir, makeDirectories } from '../src/private-files.js';

describe('creating the directories the server owns', () => {
  it('creates missing parents, 0700 for private data', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-dirs-'));
    const dir = path.join(root, 'a', 'b', 'c');
    ensurePrivateDir(dir);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    makeDirectories(dir); // exists: nothing to do
    fs.rmSync(root, { recursive: true, force: true });
  });

  it.runIf(process.platform === 'linux')('fails at once where a parent refuses every creation (/proc), instead of spinning like recursive mkdir', () => {
    const start = performance.now();
    expect(() => ensurePrivateDir('/proc/facestream-nope/data')).toThrow(/ENOENT/);
    expect(performance.now() - start).toBeLessThan(5000);
  });
});
