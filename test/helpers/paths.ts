import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The shared test material: FACESTREAM_SHARED, else ../shared beside the checkout. */
export const SHARED = path.resolve(process.env.FACESTREAM_SHARED ?? path.join(REPO, '..', 'shared'));
export const DATA = path.join(SHARED, 'data');
export const MODELS_MIRROR = path.join(SHARED, 'models');
/** Models the tests load: the repository's models directory, filled by the global setup. */
export const MODELS_DIR = path.join(REPO, 'models');
export const CLI = path.join(REPO, 'bin', 'facestream.js');
/** Pictures, screenshots and logs a test leaves for people to look at. */
export const TEST_OUTPUT = path.join(REPO, 'test-output');

export function outputDir(name: string): string {
  const dir = path.join(TEST_OUTPUT, name);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export function dataFile(...parts: string[]): string {
  return path.join(DATA, ...parts);
}
