import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The installed package's root (holding package.json), found from this module's location so it
 * works both from compiled dist/ and from the TypeScript sources under test.
 */
function findPackageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('facestream: cannot find the package root');
    dir = up;
  }
  return dir;
}

export const PACKAGE_ROOT = findPackageRoot();

/**
 * The default models directory: the installation's own `models/` (beside its manifest.json, where
 * `npm test` and `npm run demo` fill them), so the CLI finds its models from any working directory.
 * When the installation is not writable (a system-wide install) and holds no model files, a
 * per-user cache: `$XDG_CACHE_HOME/facestream/models` (default `~/.cache/facestream/models`).
 */
export function defaultModelsDir(env: NodeJS.ProcessEnv = process.env): string {
  const installed = path.join(PACKAGE_ROOT, 'models');
  if (writable(installed) || fs.readdirSync(installed, { withFileTypes: true }).some((e) => e.isDirectory())) return installed;
  const cache = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(env.HOME ?? '/tmp', '.cache');
  return path.join(cache, 'facestream', 'models');
}

function writable(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
