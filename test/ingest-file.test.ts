import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Frame } from '../src/ingest/frame.js';
import { FrameSource } from '../src/ingest/stream.js';
import { createLogger } from '../src/log.js';
import { dataFile } from './helpers/paths.js';
import { ingestConfig, isAlive, recordedSource, waitFor, waitForState, type Recorded } from './helpers/ingest.js';

const HAMILTON = dataFile('video', 'hamilton_640x360.mp4');
const md5 = (b: Uint8Array) => crypto.createHash('md5').update(b).digest('hex');
/** This process's frame pipe directories (src/ingest/frame-pipe.ts). */
const pipeDirs = () => fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(`facestream-frames-${process.pid}-`));

const open: Recorded[] = [];
function track(rec: Recorded): Recorded {
  open.push(rec);
  return rec;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.source.stop()));
});

describe('file sources', () => {
  it('delivers every frame of a file byte-identical to ffmpeg’s own decode, then ends as stopped', async () => {
    // The reference decode (`ffmpeg -i FILE -f rawvideo -pix_fmt rgb24 -`, as in shared/data)
    // pads the start to a constant rate with 25 copies of the first frame (the video starts at
    // 0.844 s); ingest passes frames through as they are, so its frame k is the reference's k + 25.
    const ref = spawnSync('ffmpeg', ['-v', 'error', '-i', HAMILTON, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 2 ** 30 });
    const frameBytes = 640 * 360 * 3;
    const refHashes: string[] = [];
    for (let off = 0; off + frameBytes <= ref.stdout.length; off += frameBytes) refHashes.push(md5(ref.stdout.subarray(off, off + frameBytes)));
    expect(refHashes).toHaveLength(300);

    // The sole receiver releases each frame once read: the source reuses its memory for later
    // frames (a few buffers for the whole file), and no frame's bytes are overwritten before that.
    const hashes: string[] = [];
    const memory = new Set<ArrayBufferLike>();
    let releasable = 0;
    const rec = track(
      recordedSource({ id: 'hamilton', url: HAMILTON, realtime: false }, ingestConfig(), (f) => {
        hashes.push(md5(f.data));
        memory.add(f.data.buffer);
        if (f.release) releasable++;
        f.release?.();
        f.release?.(); // a second call must not give the buffer back twice
      }),
    );
    rec.source.start();
    await waitFor('the end of the file', () => rec.ended > 0, 30_000);

    expect(rec.frames).toHaveLength(275);
    expect(hashes).toEqual(refHashes.slice(25));
    expect(releasable).toBe(275);
    expect(memory.size).toBeLessThanOrEqual(3);
    expect(rec.frames.map((f) => f.seq)).toEqual([...Array(275).keys()]);
    for (let i = 1; i < rec.frames.length; i++) expect(rec.frames[i].pts).toBeGreaterThan(rec.frames[i - 1].pts);
    expect(rec.frames[0].pts).toBeCloseTo(0.844, 2);
    expect(rec.frames.every((f) => f.width === 640 && f.height === 360)).toBe(true);
    expect(rec.states.map((s) => s.state)).toEqual(['starting', 'live', 'stopped']);
    expect(rec.source.state).toBe('stopped');
    expect(rec.source.lastError).toBeUndefined();
    expect(rec.source.stats).toMatchObject({ framesRead: 275, bytesRead: 275 * frameBytes, restarts: 0, truncatedBytes: 0, decodeErrors: 0 });
    // The run's named pipe and its directory went with it.
    await waitFor('the pipe directory to go', () => pipeDirs().length === 0, 2000);
  });

  it('reads the frames from ffmpeg’s stdout when asked (platforms without named pipes), byte-identical too', async () => {
    const ref = spawnSync('ffmpeg', ['-v', 'error', '-i', HAMILTON, '-frames:v', '60', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 2 ** 30 });
    const frameBytes = 640 * 360 * 3;
    const refHashes: string[] = [];
    for (let off = 0; off + frameBytes <= ref.stdout.length; off += frameBytes) refHashes.push(md5(ref.stdout.subarray(off, off + frameBytes)));
    const hashes: string[] = [];
    const rec = track(recordedSource({ id: 'stdout', url: HAMILTON, realtime: false }, ingestConfig({ framePipe: 'stdout' }), (f) => hashes.push(md5(f.data))));
    rec.source.start();
    await waitFor('the end of the file', () => rec.ended > 0, 30_000);
    expect(rec.frames).toHaveLength(275);
    expect(hashes.slice(0, 35)).toEqual(refHashes.slice(25, 60));
    expect(pipeDirs()).toEqual([]);
  });

  it('reads a run from stdout when its named pipe cannot be made (the temporary directory gone), and the next run from a named pipe', async () => {
    const savedTmp = process.env.TMPDIR;
    const warnings: string[] = [];
    const source = new FrameSource({ id: 'tmp-gone', url: HAMILTON, realtime: false, maxWidth: 64 }, { config: ingestConfig(), logger: createLogger('warn', { write: (line: string) => warnings.push(JSON.parse(line).msg) }) });
    let frames = 0;
    let sawPipe = false;
    source.on('frame', (f) => {
      frames++;
      if (frames === 10) sawPipe = fs.existsSync(os.tmpdir()) && pipeDirs().length > 0;
      f.release?.();
    });
    const run = async () => {
      frames = 0;
      const ended = new Promise<void>((r) => source.once('ended', () => r()));
      source.start();
      await ended;
      return { frames, sawPipe };
    };
    // os.tmpdir() follows TMPDIR: a directory that does not exist fails the pipe, not ffmpeg.
    process.env.TMPDIR = path.join(os.tmpdir(), `facestream-no-such-tmp-${process.pid}`);
    try {
      expect(await run()).toEqual({ frames: 275, sawPipe: false });
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
    }
    expect(warnings).toEqual([expect.stringMatching(/no named pipe for the frames \(.*ENOENT.*\); reading them from ffmpeg's stdout for this run; the next run tries a named pipe again/)]);
    expect(await run()).toEqual({ frames: 275, sawPipe: true });
    expect(warnings).toHaveLength(1);
    await waitFor('the pipe directory to go', () => pipeDirs().length === 0, 2000);
  });

  it('falls back to stdout, saying so once, where no named pipe can be made (no mkfifo on the PATH)', async () => {
    // A PATH with ffmpeg and setpriv (the kill-with-parent wrapper) but without mkfifo.
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-no-mkfifo-'));
    for (const program of ['ffmpeg', 'setpriv']) fs.symlinkSync(execFileSync('sh', ['-c', `command -v ${program}`], { encoding: 'utf8' }).trim(), path.join(bin, program));
    const saved = process.env.PATH;
    process.env.PATH = bin;
    const warnings: string[] = [];
    try {
      const source = new FrameSource({ id: 'no-mkfifo', url: HAMILTON, realtime: false, maxWidth: 64 }, { config: ingestConfig(), logger: createLogger('warn', { write: (line: string) => warnings.push(JSON.parse(line).msg) }) });
      let frames = 0;
      source.on('frame', (f) => {
        frames++;
        f.release?.();
      });
      const ended = new Promise<void>((r) => source.once('ended', () => r()));
      source.start();
      await ended;
      expect(frames).toBe(275);
      expect(warnings).toEqual([expect.stringMatching(/no named pipe for the frames \(.*mkfifo ENOENT\); reading them from ffmpeg's stdout/)]);
    } finally {
      process.env.PATH = saved;
      fs.rmSync(bin, { recursive: true, force: true });
    }
    expect(pipeDirs()).toEqual([]);
  });

  it('scales down inside ffmpeg keeping the aspect ratio, to even sizes, and thins the rate without duplicates', async () => {
    const sizes = new Set<string>();
    const rec = track(recordedSource({ id: 'small', url: HAMILTON, realtime: false, maxWidth: 333, maxHeight: 333, fps: 10 }, ingestConfig(), (f: Frame) => {
      sizes.add(`${f.width}x${f.height}`);
      expect(f.data.length).toBe(f.width * f.height * 3);
    }));
    rec.source.start();
    await waitFor('the end of the file', () => rec.ended > 0, 30_000);
    expect([...sizes]).toHaveLength(1);
    const [w, h] = [...sizes][0].split('x').map(Number);
    expect(w).toBeLessThanOrEqual(333);
    expect(w % 2 + (h % 2)).toBe(0);
    expect(Math.abs(w / h - 16 / 9)).toBeLessThan(0.02);
    // 9.1 s of video at 29.97 fps thinned to at most 10 per second: one frame per 0.1 s slot.
    expect(rec.frames.length).toBeGreaterThanOrEqual(88);
    expect(rec.frames.length).toBeLessThanOrEqual(93);
    for (let i = 1; i < rec.frames.length; i++) expect(rec.frames[i].pts - rec.frames[i - 1].pts).toBeGreaterThan(0.06);
  });

  it('paces a file and a lavfi test source at their native rate, like cameras', async () => {
    const file = track(recordedSource({ id: 'paced-file', url: HAMILTON }));
    const lavfi = track(recordedSource({ id: 'paced-lavfi', url: 'lavfi:testsrc2=size=320x240:rate=25' }));
    file.source.start();
    lavfi.source.start();
    await waitFor('4 s of frames from both', () => [file, lavfi].every((r) => r.frames.length > 1 && r.frames.at(-1)!.capturedAt - r.frames[0].capturedAt > 4000), 20_000);
    // Measured after the first second: the Hamilton clip's first timestamp is 0.84 s, and ffmpeg
    // sometimes delivers its first frame before waiting out that offset, sometimes after.
    const rate = (r: Recorded) => {
      const settled = r.frames.filter((f) => f.capturedAt >= r.frames[0].capturedAt + 1000);
      return (settled.length - 1) / ((settled.at(-1)!.capturedAt - settled[0].capturedAt) / 1000);
    };
    // Unpaced, both would run at hundreds of frames per second on this machine.
    expect(rate(file)).toBeGreaterThan(29.97 * 0.8);
    expect(rate(file)).toBeLessThan(29.97 * 1.2);
    expect(rate(lavfi)).toBeGreaterThan(25 * 0.8);
    expect(rate(lavfi)).toBeLessThan(25 * 1.2);
    expect(lavfi.frames[0]).toMatchObject({ width: 320, height: 240 });
  });

  it('loops a file on request: frames keep coming past its end with a time that keeps counting', async () => {
    const rec = track(recordedSource({ id: 'looped', url: HAMILTON, realtime: false, loop: true, maxWidth: 160 }));
    rec.source.start();
    await waitFor('600 frames (more than two passes)', () => rec.frames.length >= 600, 60_000);
    expect(rec.ended).toBe(0);
    expect(rec.source.state).toBe('live');
    expect(rec.frames.slice(0, 600).map((f) => f.seq)).toEqual([...Array(600).keys()]);
    for (let i = 1; i < 600; i++) expect(rec.frames[i].pts).toBeGreaterThan(rec.frames[i - 1].pts);
    expect(rec.frames[599].pts).toBeGreaterThan(19);
  });

  it('pause() holds ffmpeg back without losing a frame; resume() carries on', async () => {
    let pauseAt: number | undefined = 20;
    const rec = track(recordedSource({ id: 'offline', url: HAMILTON, realtime: false }, ingestConfig({ stallTimeoutMs: 500 }), (f) => {
      if (f.seq + 1 === pauseAt) {
        pauseAt = undefined;
        rec.source.pause();
      }
    }));
    rec.source.start();
    await waitFor('20 frames', () => rec.frames.length >= 20, 20_000);
    const pid = rec.source.stats.pid!;
    // Longer than the stall watchdog: a paused stream is not stalled.
    await new Promise((r) => setTimeout(r, 1500));
    expect(rec.frames).toHaveLength(20);
    expect(rec.source.state).toBe('live');
    expect(isAlive(pid)).toBe(true);
    // ffmpeg is blocked on the full pipe, not decoding on into memory: a few frames at most are buffered.
    expect(rec.source.stats.bytesRead).toBeLessThan(30 * 640 * 360 * 3);
    rec.source.resume();
    await waitFor('the end of the file', () => rec.ended > 0, 30_000);
    expect(rec.frames.map((f) => f.seq)).toEqual([...Array(275).keys()]);
    expect(rec.source.stats.restarts).toBe(0);
  });

  it('stop() while paused ends ffmpeg too (a blocked writer is not left hanging)', async () => {
    const rec = track(recordedSource({ id: 'paused-stop', url: HAMILTON, realtime: false }, ingestConfig(), () => rec.source.pause()));
    rec.source.start();
    await waitFor('the first frame', () => rec.frames.length === 1, 20_000);
    const pid = rec.source.stats.pid!;
    await new Promise((r) => setTimeout(r, 300));
    expect(isAlive(pid)).toBe(true);
    await rec.source.stop();
    expect(isAlive(pid)).toBe(false);
    expect(rec.source.state).toBe('stopped');
    expect(rec.frames).toHaveLength(1);
  });

  it('stop() from a frame listener resolves, through the named pipe and through stdout', async () => {
    // The stop lands mid-chunk (the rest of the chunk is the next frames'): no read may be left
    // waiting for a 'drain' that a stopped reader never sends (stop() hung, ffmpeg SIGKILLed).
    // Small frames, and a pause first: the pipe fills with frames whose lines are already in, so
    // the frames after the resume are cut straight out of chunks that hold several.
    for (const framePipe of ['fifo', 'stdout', 'fifo', 'stdout'] as const) {
      let stopping: Promise<void> | undefined;
      let n = 0;
      const rec = track(
        recordedSource({ id: `stop-in-listener-${framePipe}`, url: HAMILTON, realtime: false, maxWidth: 64 }, ingestConfig({ framePipe }), () => {
          if (++n === 1) {
            rec.source.pause();
            setTimeout(() => rec.source.resume(), 150);
          }
          if (n === 6) stopping ??= rec.source.stop();
        }),
      );
      rec.source.start();
      await waitFor('the sixth frame', () => stopping !== undefined, 20_000);
      const outcome = await Promise.race([stopping!.then(() => 'stopped'), new Promise((r) => setTimeout(() => r('still stopping after 3 s'), 3000))]);
      expect(outcome, framePipe).toBe('stopped');
      expect(rec.source.state).toBe('stopped');
      expect(rec.frames).toHaveLength(6);
    }
  });

  it('offers release() only to a sole receiver, and never reuses memory that was not released', async () => {
    const rec = track(recordedSource({ id: 'two-receivers', url: HAMILTON, realtime: false }));
    const second: Frame[] = [];
    rec.source.on('frame', (f) => second.push(f));
    rec.source.start();
    await waitFor('the end of the file', () => rec.ended > 0, 30_000);
    expect(second).toHaveLength(275);
    expect(second.some((f) => f.release)).toBe(false);
    // Nobody released anything: every frame kept memory of its own.
    expect(new Set(second.map((f) => f.data.buffer)).size).toBe(275);
  });

  it('an ffmpeg that cannot be spawned any more (gone since the start) fails the stream; the process lives on', async () => {
    // fluent-ffmpeg's own listener for a failed spawn throws from the event (its output buffers do
    // not exist yet): uncaught, it ended the whole server. EAGAIN and EMFILE take the same path.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-ffmpeg-'));
    const bin = path.join(dir, 'ffmpeg');
    fs.writeFileSync(bin, '#!/bin/sh\nexec ffmpeg "$@"\n', { mode: 0o755 });
    try {
      const rec = track(recordedSource({ id: 'ffmpeg-gone', url: HAMILTON, realtime: false, maxWidth: 64 }, ingestConfig({ ffmpegPath: bin, killWithParent: false })));
      rec.source.start();
      await waitFor('the end of the file', () => rec.ended > 0, 30_000);
      fs.rmSync(bin);
      const since = rec.states.length;
      rec.source.start();
      await waitForState(rec, 'failed', 10_000, since);
      expect(rec.source.lastError?.code).toBe('FFMPEG_NOT_FOUND');
      // Removed asynchronously, right after.
      await waitFor('the pipe directory to go', () => pipeDirs().length === 0, 2000);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stop() kills ffmpeg and resolves once it is gone; no ended event', async () => {
    const rec = track(recordedSource({ id: 'endless', url: 'lavfi:testsrc2=size=320x240:rate=25' }));
    rec.source.start();
    await waitForState(rec, 'live', 15_000);
    const pid = rec.source.stats.pid!;
    expect(isAlive(pid)).toBe(true);
    await rec.source.stop();
    expect(isAlive(pid)).toBe(false);
    expect(rec.source.state).toBe('stopped');
    expect(rec.source.stats.pid).toBeUndefined();
    expect(rec.ended).toBe(0);
    const n = rec.frames.length;
    await new Promise((r) => setTimeout(r, 200));
    expect(rec.frames).toHaveLength(n);
  });
});
