import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gallerySchema } from '../src/config/sections/gallery.js';
import { Gallery } from '../src/index/gallery.js';
import { createLogger } from '../src/log.js';
import { CLI, DATA, MODELS_DIR } from './helpers/paths.js';

/**
 * Crash safety: `facestream enroll-dir --jsonl` enrolls a stream of pictures and prints a line
 * per picture once its transaction committed; it is killed with SIGKILL at random moments
 * (while loading, enrolling, committing or saving the index). After every kill the gallery must
 * open, pass its integrity check and hold every enrollment acknowledged before the kill.
 */

const TRIALS = 20;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-crash-'));
const root = path.join(tmp, 'people');
const galleryDir = path.join(tmp, 'gallery');
const configFile = path.join(tmp, 'config.json');

interface Ack {
  file: string;
  identity: string;
  templateId: string;
}

/** Real pictures, scaled down (detection is then fast) to a different size per folder so every file is new content. */
async function makePictures(): Promise<number> {
  const people = fs.readdirSync(path.join(DATA, 'faces')).sort();
  let n = 0;
  // Enough pictures that 20 trials of up to ~1 s of enrolling never run out of work (a finished run is no kill).
  for (let i = 0; i < 160; i++) {
    const who = people[i % people.length];
    const dir = path.join(root, `p${String(i).padStart(2, '0')}_${who}`);
    fs.mkdirSync(dir, { recursive: true });
    const files = fs.readdirSync(path.join(DATA, 'faces', who)).filter((f) => !f.includes('partial'));
    for (const [j, f] of files.entries()) {
      await sharp(path.join(DATA, 'faces', who, f))
        .resize({ width: 300 + 2 * i + j })
        .jpeg({ quality: 90 })
        .toFile(path.join(dir, `${j}.jpg`));
      n++;
    }
  }
  return n;
}

beforeAll(async () => {
  await makePictures();
  // Small commits and an index save every few changes: kills land in every phase.
  fs.writeFileSync(configFile, JSON.stringify({ gallery: { index: { saveAfterChanges: 3, exactBelow: 0 }, enrollment: { batch: 2 } } }));
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Runs enroll-dir until killed at `killAfterMs` from its first new enrollment (or from spawn when `early`). */
function runAndKill(killAfterMs: number, early: boolean): Promise<{ acks: Ack[]; finished: boolean; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'enroll-dir', root, '--gallery', galleryDir, '--config', configFile, '--jsonl'], {
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FACESTREAM_'))), FACESTREAM_MODELS_DIR: MODELS_DIR },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acks: Ack[] = [];
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    const arm = () => (timer ??= setTimeout(() => child.kill('SIGKILL'), killAfterMs));
    if (early) arm();
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      let o: { status: string; file: string; identity: string; templateId?: string };
      try {
        o = JSON.parse(line) as typeof o;
      } catch {
        return; // a line cut by the kill is no acknowledgement
      }
      if (o.status === 'added') {
        acks.push({ file: o.file, identity: o.identity, templateId: o.templateId! });
        arm();
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ acks, finished: signal === null && code === 0, stderr });
    });
  });
}

describe('crash safety under SIGKILL', () => {
  it(`keeps every acknowledged enrollment through ${TRIALS} kills at random moments`, async () => {
    const acknowledged: Ack[] = [];
    const logger = createLogger('silent');
    let kills = 0;
    let rebuilt = 0;
    const timeline: string[] = [];
    for (let trial = 0; trial < TRIALS; trial++) {
      const early = trial % 5 === 4; // some kills land while the process loads models or opens the gallery
      const started = performance.now();
      const { acks, finished, stderr } = await runAndKill(early ? 200 + Math.random() * 900 : Math.random() * 1000, early);
      if (!finished) kills++;
      else expect(stderr).toBe('');
      acknowledged.push(...acks);
      timeline.push(`${Math.round(performance.now() - started)}ms:${acks.length}`);

      const gallery = await Gallery.open(galleryDir, { modelId: 'arcface-mbf-112', dimension: 512, config: gallerySchema.parse({ index: { exactBelow: 0 } }), logger });
      try {
        if (gallery.loadReport.source === 'rebuilt') rebuilt++;
        const check = await gallery.check();
        expect(check.problems, `trial ${trial}`).toEqual([]);
        for (const ack of acknowledged) {
          const t = gallery.getTemplate(ack.templateId);
          expect(t, `trial ${trial}: acknowledged template ${ack.templateId} (${ack.file})`).toMatchObject({ identityId: ack.identity, source: ack.file });
        }
        // Every acknowledged template is searchable through the index, not only stored.
        for (const ack of acknowledged.slice(-20)) {
          const found = gallery.search(gallery.templateEmbedding(ack.templateId), 5).find((m) => m.identityId === ack.identity);
          expect(found?.similarity, `trial ${trial}: ${ack.file}`).toBeGreaterThan(0.999);
        }
        expect(gallery.counts().templates).toBeGreaterThanOrEqual(acknowledged.length);
      } finally {
        await gallery.close();
      }
    }
    expect(kills).toBeGreaterThanOrEqual(TRIALS - 2);
    expect(acknowledged.length).toBeGreaterThan(20);
    // Nothing acknowledged twice (resume skips what is already enrolled), and nothing lost.
    expect(new Set(acknowledged.map((a) => a.templateId)).size).toBe(acknowledged.length);
    console.log(`crash test: ${kills} kills, ${acknowledged.length} acknowledged enrollments kept, ${rebuilt} index rebuilds on open; per trial ms:acks ${timeline.join(' ')}`);
  }, 120_000);
});
