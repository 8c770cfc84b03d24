import { Readable } from 'node:stream';
import { FacestreamError } from '../../errors.js';
import { installModelFile, type FillResult } from '../install.js';
import { modelSpec } from '../manifest.js';
import type { ModelStore } from '../store.js';
import { buildFaceapiRecognition } from './faceapi-recognition.js';

/**
 * Model files that project code builds from weights published in another format, named by the
 * manifest's `build.recipe`. A recipe is deterministic: its output must match the manifest's
 * sha256, or nothing is installed.
 */
export const BUILD_RECIPES: Record<string, () => Uint8Array> = {
  'faceapi-recognition': buildFaceapiRecognition,
};

/** Builds one model by its manifest recipe and installs it (verified, atomic) in the store. */
export async function buildModel(store: ModelStore, id: string): Promise<FillResult> {
  const spec = modelSpec(store.manifest, id);
  if (!spec.build) throw new FacestreamError('BAD_REQUEST', `model "${id}" has no build recipe in the manifest; it is fetched with \`facestream models fill\``, { model: id });
  const recipe = BUILD_RECIPES[spec.build.recipe];
  if (!recipe) throw new FacestreamError('CONFIG_INVALID', `model "${id}": unknown build recipe "${spec.build.recipe}" (known: ${Object.keys(BUILD_RECIPES).join(', ')})`, { model: id });
  const result = await installModelFile(store, id, `build recipe ${spec.build.recipe} (${spec.build.from})`, async () => Readable.from([Buffer.from(recipe())]));
  return { ...result, action: 'built' };
}
