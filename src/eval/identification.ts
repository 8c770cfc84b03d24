import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import { loadImageFile } from '../image/decode.js';
import { listIdentityFolders } from '../index/enroll-dir.js';
import { Enroller } from '../index/enroll.js';
import { Gallery, type IdentityMatch } from '../index/gallery.js';
import type { Logger } from '../log.js';
import type { ModelRuntime } from '../models/runtime.js';
import { FaceAnalyzer, largestFace } from '../pipeline/analyzer.js';

/**
 * The classic closed/open-set identification experiment on `<root>/<identity>/<pictures>`: in
 * each identity folder (pictures in natural order) every 10th picture, starting with the first,
 * is a test picture and the rest are enrolled. An identity with a single picture is then only a
 * test picture: a stranger the gallery must answer "unknown" for.
 */

export interface IdentitySplit {
  identity: string;
  enroll: string[];
  test: string[];
}

export function splitDataset(root: string, every = 10): IdentitySplit[] {
  return listIdentityFolders(root).map(({ identity, files }) => ({
    identity,
    enroll: files.filter((_, i) => i % every !== 0),
    test: files.filter((_, i) => i % every === 0),
  }));
}

export interface TestOutcome {
  file: string;
  identity: string;
  /** Whether the identity has templates in the gallery (else the right answer is "unknown"). */
  known: boolean;
  /** 1-based rank of the true identity among the candidates; null when not among them. */
  rank: number | null;
  match: IdentityMatch | null;
  candidates: IdentityMatch[];
}

export interface IdentityRow {
  identity: string;
  enrolled: number;
  tests: number;
  top1: number;
  top5: number;
  unknown: number;
}

export interface IdentificationResult {
  model: string;
  threshold: number;
  identities: number;
  enrolledIdentities: number;
  enrolledPictures: number;
  testPictures: number;
  knownTests: number;
  strangerTests: number;
  /** Over test pictures of enrolled identities: the true identity ranked first / within the top 5 (threshold ignored). */
  top1Accuracy: number;
  top5Accuracy: number;
  /** Share of all test pictures answered "unknown" at the threshold. */
  unknownRate: number;
  /** Enrolled people answered "unknown" (false rejects) and strangers answered "unknown" (right). */
  knownUnknownRate: number;
  strangerUnknownRate: number;
  /** Right answers at the threshold: the true identity for enrolled people, "unknown" for strangers. */
  openSetAccuracy: number;
  perIdentity: IdentityRow[];
  tests: TestOutcome[];
  failures: { file: string; stage: 'enroll' | 'test'; reason: string }[];
  seconds: number;
}

export interface IdentificationOptions {
  threshold?: number;
  topK?: number;
  logger?: Logger;
  onStart?: (pictures: number) => void;
  onProgress?: (done: number) => void;
}

const ratio = (a: number, b: number) => (b > 0 ? a / b : 0);

/** Runs the experiment for one embedding model in a temporary gallery (removed afterwards). */
export async function evaluateIdentification(
  deps: { runtime: ModelRuntime; config: Config },
  modelId: string,
  split: readonly IdentitySplit[],
  opts: IdentificationOptions = {},
): Promise<IdentificationResult> {
  const started = performance.now();
  const config: Config = { ...deps.config, embedding: { ...deps.config.embedding, model: modelId }, attributes: { ...deps.config.attributes, enabled: false } };
  const analyzer = await FaceAnalyzer.create(deps.runtime, config);
  const embedder = analyzer.embedder;
  const threshold = opts.threshold ?? config.gallery.minSimilarity ?? config.embedding.minSimilarity ?? embedder.defaultMinSimilarity ?? 0.5;
  const topK = opts.topK ?? 5;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-eval-'));
  const galleryConfig = { ...config.gallery, minSimilarity: threshold, enrollment: { ...config.gallery.enrollment, allowLargest: true } };
  const failures: IdentificationResult['failures'] = [];
  const tests: TestOutcome[] = [];
  const enrolledCount = new Map<string, number>();
  let done = 0;
  opts.onStart?.(split.reduce((n, s) => n + s.enroll.length + s.test.length, 0));
  const gallery = await Gallery.open(dir, { modelId: embedder.modelId, dimension: embedder.dimension, config: galleryConfig, logger: opts.logger });
  try {
    const enroller = new Enroller(gallery, analyzer, galleryConfig, { limits: config.limits });
    for (const s of split) {
      enrolledCount.set(s.identity, 0);
      if (s.enroll.length === 0) continue;
      const pictures = s.enroll.map((file) => ({ name: file, data: fs.readFileSync(file) }));
      const report = await enroller.enrollPictures({ id: `id-${enrolledCount.size}`, name: s.identity }, pictures);
      enrolledCount.set(s.identity, report.added.length);
      for (const r of report.rejected) failures.push({ file: r.picture, stage: 'enroll', reason: r.reason });
      done += pictures.length;
      opts.onProgress?.(done);
    }
    for (const s of split) {
      for (const file of s.test) {
        const known = (enrolledCount.get(s.identity) ?? 0) > 0;
        try {
          const image = await loadImageFile(file, config.limits);
          const [faces] = await analyzer.analyze([image], { embed: true, attributes: false, stillPictures: true });
          const face = largestFace(faces);
          if (!face?.embedding) {
            failures.push({ file, stage: 'test', reason: 'no face found' });
            continue;
          }
          const { match, candidates } = gallery.identify(face.embedding, topK);
          const at = candidates.findIndex((c) => c.name === s.identity);
          tests.push({ file, identity: s.identity, known, rank: at >= 0 ? at + 1 : null, match, candidates });
        } catch (err) {
          failures.push({ file, stage: 'test', reason: errorMessage(err) });
        } finally {
          opts.onProgress?.(++done);
        }
      }
    }
  } finally {
    await gallery.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const known = tests.filter((t) => t.known);
  const strangers = tests.filter((t) => !t.known);
  const right = (t: TestOutcome) => (t.known ? t.match?.name === t.identity : t.match === null);
  const perIdentity: IdentityRow[] = split.map((s) => {
    const mine = tests.filter((t) => t.identity === s.identity);
    return {
      identity: s.identity,
      enrolled: enrolledCount.get(s.identity) ?? 0,
      tests: mine.length,
      top1: mine.filter((t) => t.rank === 1).length,
      top5: mine.filter((t) => t.rank !== null && t.rank <= 5).length,
      unknown: mine.filter((t) => t.match === null).length,
    };
  });
  return {
    model: embedder.modelId,
    threshold,
    identities: split.length,
    enrolledIdentities: [...enrolledCount.values()].filter((n) => n > 0).length,
    enrolledPictures: [...enrolledCount.values()].reduce((a, b) => a + b, 0),
    testPictures: tests.length,
    knownTests: known.length,
    strangerTests: strangers.length,
    top1Accuracy: ratio(known.filter((t) => t.rank === 1).length, known.length),
    top5Accuracy: ratio(known.filter((t) => t.rank !== null && t.rank <= 5).length, known.length),
    unknownRate: ratio(tests.filter((t) => t.match === null).length, tests.length),
    knownUnknownRate: ratio(known.filter((t) => t.match === null).length, known.length),
    strangerUnknownRate: ratio(strangers.filter((t) => t.match === null).length, strangers.length),
    openSetAccuracy: ratio(tests.filter(right).length, tests.length),
    perIdentity,
    tests,
    failures,
    seconds: (performance.now() - started) / 1000,
  };
}
