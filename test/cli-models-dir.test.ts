import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { dataFile, MODELS_DIR } from './helpers/paths.js';

describe('the CLI finds its models from any working directory', () => {
  it('defaults to the installation models directory, not ./models of the current directory; --models-dir and the env still win', async () => {
    const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-elsewhere-'));
    try {
      // No FACESTREAM_MODELS_DIR (runCli sets it; an empty value means unset).
      const list = await runCli(['models', 'list', '--json'], { cwd: elsewhere, env: { FACESTREAM_MODELS_DIR: '' } });
      expect(list.code, list.stderr).toBe(0);
      const listed = JSON.parse(list.stdout) as { dir: string; models: { state: string }[] };
      expect(fs.realpathSync(listed.dir)).toBe(fs.realpathSync(MODELS_DIR));
      expect(listed.models.every((m) => m.state === 'ok')).toBe(true);
      // A real command that loads models, run from elsewhere.
      const detect = await runCli(['detect', dataFile('faces', 'paul_rudd', '1.jpg'), '--json'], { cwd: elsewhere, env: { FACESTREAM_MODELS_DIR: '' } });
      expect(detect.code, detect.stderr).toBe(0);
      expect((JSON.parse(detect.stdout) as { faces: unknown[] }).faces.length).toBeGreaterThan(0);
      // Explicit choices are kept.
      const empty = path.join(elsewhere, 'empty-models');
      const flag = await runCli(['--models-dir', empty, 'models', 'list', '--json'], { cwd: elsewhere, env: { FACESTREAM_MODELS_DIR: '' } });
      expect((JSON.parse(flag.stdout) as { dir: string }).dir).toBe(empty);
      const env = await runCli(['models', 'list', '--json'], { cwd: elsewhere, env: { FACESTREAM_MODELS_DIR: empty } });
      expect((JSON.parse(env.stdout) as { dir: string }).dir).toBe(empty);
    } finally {
      fs.rmSync(elsewhere, { recursive: true, force: true });
    }
  });
});
