import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FrameResult } from '../src/pipeline/result.js';
import { runCli } from './helpers/cli.js';
import { dataFile, outputDir } from './helpers/paths.js';

/** `facestream run`: the command-line face recognition of video files and streams. */
describe('facestream run', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-run-'));
  const gallery = path.join(tmp, 'gallery');
  // A 3-second cut of the Hamilton clip from its close-up of Lin-Manuel Miranda keeps this test short.
  const clip = path.join(tmp, 'close-up.mp4');

  beforeAll(async () => {
    const cut = spawnSync('ffmpeg', ['-v', 'error', '-ss', '4.5', '-i', dataFile('video', 'hamilton_640x360.mp4'), '-t', '3', '-c:v', 'libx264', '-an', clip]);
    expect(cut.status).toBe(0);
    const enrolled = await runCli(['enroll-dir', dataFile('faces'), '--largest', '--gallery', gallery, '--json']);
    expect(enrolled.code, enrolled.stderr).toBe(0);
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('prints one JSON line per frame with track ids and names, and draws an annotated video', async () => {
    const drawn = path.join(outputDir('run'), 'close-up-annotated.mp4');
    const r = await runCli(['run', clip, '--gallery', gallery, '--draw', drawn]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as FrameResult);
    const frames = Number(spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', clip]).stdout.toString().trim());
    // Files run offline: every frame, in order, nothing dropped.
    expect(lines.map((l) => l.seq)).toEqual(Array.from({ length: frames }, (_, i) => i));
    for (const l of lines) expect(Object.keys(l).sort()).toEqual(['capturedAt', 'faces', 'height', 'processedAt', 'pts', 'seq', 'streamId', 'width'].sort());
    const named = lines.filter((l) => l.faces.some((f) => f.identity?.id === 'lin_manuel_miranda'));
    expect(named.length / lines.length).toBeGreaterThan(0.8);
    expect(lines.every((l) => l.faces.every((f) => Number.isInteger(f.trackId)))).toBe(true);
    const probe = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=width,height,nb_read_frames', '-of', 'json', drawn]);
    const stream = JSON.parse(probe.stdout.toString()).streams[0];
    expect([stream.width, stream.height]).toEqual([640, 360]);
    expect(Number(stream.nb_read_frames)).toBe(frames);
  });

  it('runs several sources at once, one stream id each, and fails clearly on a missing one', async () => {
    const r = await runCli(['run', clip, 'lavfi:testsrc2=size=320x240:rate=10:duration=1', '--no-attributes']);
    expect(r.code, r.stderr).toBe(0);
    const ids = new Set(r.stdout.trim().split('\n').map((l) => (JSON.parse(l) as FrameResult).streamId));
    expect(ids).toEqual(new Set(['close-up', 'lavfi']));
    const missing = await runCli(['run', path.join(tmp, 'nope.mp4')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nope\.mp4|NOT_FOUND|not found|No such file/i);
  });

  it('--draw into a place ffmpeg cannot write stops at once with the reason, exit 1', async () => {
    // The whole clip would take far longer than the few frames before ffmpeg gives up on its output.
    const looped = ['run', clip, '--loop', '--no-attributes', '--duration', '40'];
    for (const out of [path.join(tmp, 'no-such-dir', 'out.mp4'), path.join(tmp, 'a-folder.mp4')]) {
      if (out.endsWith('a-folder.mp4')) fs.mkdirSync(out, { recursive: true });
      const started = Date.now();
      const r = await runCli([...looped, '--draw', out]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain(`writing ${out} failed`);
      expect(r.stderr).not.toMatch(/written to|unexpected error/);
      expect(Date.now() - started).toBeLessThan(30_000);
    }
  });

  it('refuses a gallery directory that does not exist', async () => {
    const r = await runCli(['run', clip, '--gallery', path.join(tmp, 'no-gallery')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/does not exist/);
  });
});
