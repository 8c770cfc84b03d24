import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { loadManifest } from '../src/models/manifest.js';
import { fillModels } from '../src/models/fetch.js';
import { ModelStore } from '../src/models/store.js';
import { MODELS_DIR, MODELS_MIRROR, REPO, SHARED, TEST_OUTPUT } from './helpers/paths.js';

/**
 * The CLI and the inference worker thread run compiled code from dist/: compile when any source
 * is newer than the last build (npm test builds first anyway; this covers `npx vitest`).
 */
function buildIfStale(): void {
  const marker = path.join(REPO, 'dist', 'src', 'models', 'inference-worker.js');
  const sources = ['src', 'bench'].flatMap((dir) =>
    fs.readdirSync(path.join(REPO, dir), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => path.join(REPO, dir, f)),
  );
  const newest = Math.max(...sources.map((f) => fs.statSync(f).mtimeMs));
  if (fs.existsSync(marker) && fs.statSync(marker).mtimeMs >= newest) return;
  const r = spawnSync(process.execPath, [path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', REPO], { stdio: 'inherit' });
  if (!fs.existsSync(marker)) throw new Error(`build failed (tsc exit ${r.status}): ${marker} missing`);
  // tsc leaves unchanged outputs alone; touch the marker so the next run sees a fresh build.
  const now = new Date();
  fs.utimesSync(marker, now, now);
}

/** Builds when stale, fills ./models from ../shared/models (a no-op when already there) and clears old test output. */
export default async function setup(): Promise<void> {
  buildIfStale();
  if (!fs.existsSync(SHARED)) throw new Error(`test data not found at ${SHARED}; put the shared folder beside the checkout or set FACESTREAM_SHARED`);
  fs.rmSync(TEST_OUTPUT, { recursive: true, force: true });
  fs.mkdirSync(TEST_OUTPUT, { recursive: true });
  const results = await fillModels(new ModelStore(loadManifest(), MODELS_DIR), { mirror: MODELS_MIRROR });
  const failed = results.filter((r) => r.action === 'failed');
  if (failed.length) throw new Error(`could not fill models: ${failed.map((f) => `${f.id}: ${f.error}`).join('; ')}`);
}
