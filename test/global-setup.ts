import fs from 'node:fs';
import { loadManifest } from '../src/models/manifest.js';
import { fillModels } from '../src/models/fetch.js';
import { ModelStore } from '../src/models/store.js';
import { MODELS_DIR, MODELS_MIRROR, SHARED, TEST_OUTPUT } from './helpers/paths.js';

/** Fills ./models from ../shared/models (a no-op when already there) and clears old test output. */
export default async function setup(): Promise<void> {
  if (!fs.existsSync(SHARED)) throw new Error(`test data not found at ${SHARED}; put the shared folder beside the checkout or set FACESTREAM_SHARED`);
  fs.rmSync(TEST_OUTPUT, { recursive: true, force: true });
  fs.mkdirSync(TEST_OUTPUT, { recursive: true });
  const results = await fillModels(new ModelStore(loadManifest(), MODELS_DIR), { mirror: MODELS_MIRROR });
  const failed = results.filter((r) => r.action === 'failed');
  if (failed.length) throw new Error(`could not fill models: ${failed.map((f) => `${f.id}: ${f.error}`).join('; ')}`);
}
