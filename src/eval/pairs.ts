import fs from 'node:fs';
import path from 'node:path';
import { FacestreamError } from '../errors.js';

export interface LabelledPair {
  a: string;
  b: string;
  same: boolean;
  /** 0-based fold. */
  fold: number;
}

/**
 * Reads verification pairs. Two layouts are understood:
 * - the original LFW pairs.txt: a "folds pairsPerHalfFold" header, then per fold that many
 *   same-person lines `name i j` followed by as many different-person lines `name1 i name2 j`;
 * - a list of `pathA pathB 1|0` lines ('#' starts a comment), split into `folds` folds by taking
 *   the same-person pairs in order and the different-person pairs in order, 1/folds of each per fold.
 * Paths are resolved against `imagesDir` (default: an `images` folder beside the file, else the file's folder).
 */
export function readPairs(file: string, folds = 10, imagesDir?: string): LabelledPair[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new FacestreamError('FILE_NOT_FOUND', `${file}: no such pairs file`, { file });
  }
  const base = path.dirname(path.resolve(file));
  const dir = imagesDir ?? (fs.existsSync(path.join(base, 'images')) ? path.join(base, 'images') : base);
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  if (lines.length === 0) throw new FacestreamError('BAD_REQUEST', `${file} holds no pairs`, { file });
  const header = lines[0].split(/\s+/);
  if (header.length === 2 && header.every((x) => /^\d+$/.test(x))) return readLfwOriginal(lines.slice(1), Number(header[0]), Number(header[1]), dir, file);
  const pairs = lines.map((line, i) => {
    const parts = line.split(/\s+/);
    if (parts.length !== 3 || !/^[01]$/.test(parts[2])) {
      throw new FacestreamError('BAD_REQUEST', `${file}:${i + 1}: expected "pathA pathB 1|0", got "${line}"`, { file, line: i + 1 });
    }
    return { a: path.resolve(dir, parts[0]), b: path.resolve(dir, parts[1]), same: parts[2] === '1', fold: 0 };
  });
  for (const same of [true, false]) {
    const group = pairs.filter((p) => p.same === same);
    group.forEach((p, i) => (p.fold = Math.min(folds - 1, Math.floor((i * folds) / group.length))));
  }
  return pairs;
}

function readLfwOriginal(lines: string[], folds: number, perHalf: number, dir: string, file: string): LabelledPair[] {
  const img = (name: string, n: string) => path.join(dir, name, `${name}_${n.padStart(4, '0')}.jpg`);
  if (lines.length < folds * perHalf * 2) throw new FacestreamError('BAD_REQUEST', `${file}: header promises ${folds * perHalf * 2} pairs, found ${lines.length}`, { file });
  return lines.slice(0, folds * perHalf * 2).map((line, i) => {
    const p = line.split(/\s+/);
    const fold = Math.floor(i / (2 * perHalf));
    if (p.length === 3) return { a: img(p[0], p[1]), b: img(p[0], p[2]), same: true, fold };
    if (p.length === 4) return { a: img(p[0], p[1]), b: img(p[2], p[3]), same: false, fold };
    throw new FacestreamError('BAD_REQUEST', `${file}: cannot read pair line "${line}"`, { file });
  });
}
