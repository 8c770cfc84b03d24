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
