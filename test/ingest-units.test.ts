import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ingestSchema } from '../src/config/sections/ingest.js';
import { backoffDelay } from '../src/ingest/backoff.js';
import { ffmpegArgs, rateLimitFilter } from '../src/ingest/command.js';
import { classifyStderr } from '../src/ingest/errors.js';
import { versionedOptions } from '../src/ingest/ffmpeg.js';
import { FrameBufferPool } from '../src/ingest/frame-buffers.js';
import { FramePipe } from '../src/ingest/frame-pipe.js';
import { parseShowinfo, RawFrameReader, type RawFrame } from '../src/ingest/framer.js';
import { redactText, redactUrl, resolveSource } from '../src/ingest/source.js';
import { FrameSource } from '../src/ingest/stream.js';
import { createLogger } from '../src/log.js';

const config = ingestSchema.parse({});
const options = versionedOptions('5.1.6');

describe('source specs', () => {
  it('classifies every supported kind of url', () => {
    const kind = (url: string) => {
      const s = resolveSource({ id: 'x', url }, config);
      return [s.kind, s.format ?? '', s.input, s.live, s.realtime, s.onEnd];
    };
    expect(kind('rtsp://cam.local:554/stream1')).toEqual(['rtsp', '', 'rtsp://cam.local:554/stream1', true, false, 'reconnect']);
    expect(kind('https://example.test/live.m3u8')).toEqual(['http', '', 'https://example.test/live.m3u8', true, false, 'reconnect']);
    expect(kind('/videos/a.mp4')).toEqual(['file', '', '/videos/a.mp4', false, true, 'stop']);
    expect(kind('file:///videos/a%20b.mp4')).toEqual(['file', '', '/videos/a b.mp4', false, true, 'stop']);
    expect(kind('/dev/video0')).toEqual(['device', 'v4l2', '/dev/video0', true, false, 'reconnect']);
    expect(kind('avfoundation:0')).toEqual(['device', 'avfoundation', '0', true, false, 'reconnect']);
    expect(kind('dshow:video=Integrated Camera')).toEqual(['device', 'dshow', 'video=Integrated Camera', true, false, 'reconnect']);
    expect(kind('lavfi:testsrc2=size=640x360:rate=25')).toEqual(['lavfi', 'lavfi', 'testsrc2=size=640x360:rate=25', false, true, 'stop']);
  });

  it('rejects bad ids, unsupported schemes and bad numbers with BAD_REQUEST', () => {
    expect(() => resolveSource({ id: 'a b', url: '/x.mp4' }, config)).toThrow(/source id/);
    expect(() => resolveSource({ id: 'a', url: 'gopher://x/y' }, config)).toThrow(/unsupported scheme gopher/);
    expect(() => resolveSource({ id: 'a', url: '/x.mp4', fps: 0 }, config)).toThrow(/fps/);
    expect(() => resolveSource({ id: 'a', url: '  ' }, config)).toThrow(/url is empty/);
  });

  it('never lets credentials through: user-info, secret query values and the raw secrets', () => {
    expect(redactUrl('rtsp://admin:hunter22@10.0.0.5:554/Streaming/101')).toBe('rtsp://***@10.0.0.5:554/Streaming/101');
    expect(redactUrl('rtsp://admin:p@ss@cam/x')).toBe('rtsp://***@cam/x');
    expect(redactUrl('http://cam/video.cgi?user=admin&password=hunter22&res=hd')).toBe('http://cam/video.cgi?user=admin&password=***&res=hd');
    expect(redactUrl('rtsp://cam.local/stream')).toBe('rtsp://cam.local/stream');
    const src = resolveSource({ id: 'x', url: 'rtsp://admin:s%3Acret99@cam/x' }, config);
    expect(src.label).toBe('rtsp://***@cam/x');
    const line = "[tcp @ 0x1] [error] auth for 'admin' with s:cret99 failed: rtsp://admin:s%3Acret99@cam/x";
    const clean = redactText(line, src.secrets);
    expect(clean).not.toContain('s:cret99');
    expect(clean).not.toContain('s%3Acret99');
    expect(clean).toContain('rtsp://***@cam/x');
  });
});

describe('ffmpeg arguments', () => {
  const args = (spec: Parameters<typeof resolveSource>[0]) => ffmpegArgs(resolveSource(spec, config), config, options);

  it('reads RTSP over TCP by default and UDP when asked, with an I/O timeout', () => {
    const tcp = args({ id: 'a', url: 'rtsp://cam/x' }).inputOptions.join(' ');
    expect(tcp).toContain('-rtsp_transport tcp');
    expect(tcp).toContain(`-timeout ${config.ioTimeoutMs * 1000}`);
    expect(args({ id: 'a', url: 'rtsp://cam/x', rtspTransport: 'udp' }).inputOptions.join(' ')).toContain('-rtsp_transport udp');
  });

  it('paces files like a camera unless told otherwise, and loops them on request', () => {
    expect(args({ id: 'a', url: '/x.mp4' }).inputOptions).toContain('-re');
    expect(args({ id: 'a', url: '/x.mp4', realtime: false }).inputOptions).not.toContain('-re');
    expect(args({ id: 'a', url: '/x.mp4', loop: true }).inputOptions.join(' ')).toContain('-stream_loop -1');
  });

  it('scales and thins frames inside ffmpeg, to RGB24 raw video', () => {
    const a = args({ id: 'a', url: '/x.mp4', fps: 10, maxWidth: 640, maxHeight: 480 });
    expect(a.filters).toContain(rateLimitFilter(10));
    expect(a.filters).toContain("scale=w='min(640,iw)':h='min(480,ih)':force_original_aspect_ratio=decrease:force_divisible_by=2");
    expect(a.outputOptions.join(' ')).toContain('-pix_fmt rgb24 -f rawvideo');
    expect(args({ id: 'a', url: '/x.mp4' }).filters).not.toContain('select=');
  });

  it('speaks the option names of the installed ffmpeg release', () => {
    const old = versionedOptions('4.4.2-0ubuntu0.22.04.1');
    expect(old).toEqual({ passthrough: ['-vsync', 'passthrough'], rtspTimeout: '-stimeout', showinfo: 'showinfo' });
    expect(ffmpegArgs(resolveSource({ id: 'a', url: 'rtsp://cam/x' }, config), config, old).inputOptions).toContain('-stimeout');
    expect(versionedOptions('7.1')).toEqual({ passthrough: ['-fps_mode', 'passthrough'], rtspTimeout: '-timeout', showinfo: 'showinfo=checksum=0' });
    expect(versionedOptions('N-112345-gabcdef')).toEqual(versionedOptions('7.1'));
  });

  it('passes device capture settings to the input format', () => {
    const a = args({ id: 'cam', url: '/dev/video2', videoSize: '1280x720', framerate: 30, inputFormat: 'mjpeg' }).inputOptions.join(' ');
    expect(a).toContain('-f v4l2 -video_size 1280x720 -framerate 30 -input_format mjpeg');
  });
});

describe('ffmpeg stderr', () => {
  // Lines as ffmpeg 5.1 prints them with -loglevel level+info, captured from real runs.
  it('turns ffmpeg messages into stable codes', () => {
    const code = (...lines: string[]) => classifyStderr(lines)?.code;
    expect(code('[rtsp @ 0x55] [error] method DESCRIBE failed: 401 Unauthorized', '[error] rtsp://***@127.0.0.1:8554/secure: Server returned 401 Unauthorized (authorization failed)')).toBe('UNAUTHORIZED');
    expect(code('[rtsp @ 0x55] [error] method DESCRIBE failed: 404 Not Found', '[error] rtsp://127.0.0.1:8554/nope: Server returned 404 Not Found')).toBe('NOT_FOUND');
    expect(code('[tcp @ 0x55] [error] Connection to tcp://127.0.0.1:1?timeout=3000000 failed: Connection refused', '[error] rtsp://127.0.0.1:1/clip: Connection refused')).toBe('CONNECTION_REFUSED');
    expect(code('[error] /nonexistent.mp4: No such file or directory')).toBe('NOT_FOUND');
    expect(code('[error] /data/README.md: Invalid data found when processing input')).toBe('INVALID_DATA');
    expect(code('[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55] [error] moov atom not found', '[error] trunc.mp4: Invalid data found when processing input')).toBe('INVALID_DATA');
    expect(code('[error] Output file #0 does not contain any stream')).toBe('NO_VIDEO');
    expect(code("[error] Stream map '0:v:0' matches no streams.")).toBe('NO_VIDEO');
    expect(code("[lavfi @ 0x56] [error] No such filter: 'nosuchsrc'", '[error] nosuchsrc=foo: Invalid argument')).toBe('INVALID_SOURCE');
    expect(code('[error] Decoder (codec hevc) not found for input stream #0:0')).toBe('DECODER_NOT_FOUND');
    expect(code('[tcp @ 0x1] [error] Connection to tcp://10.255.255.1:554 failed: Connection timed out')).toBe('TIMEOUT');
    expect(code('[tcp @ 0x1] [error] Connection to tcp://10.0.0.1:554 failed: No route to host')).toBe('HOST_UNREACHABLE');
    expect(code('[video4linux2,v4l2 @ 0x56] [error] Cannot open video device /dev/video9: No such file or directory')).toBe('NOT_FOUND');
    expect(code('[error] something nobody has seen before')).toBe('FFMPEG_FAILED');
    expect(code('[info] Stream mapping:')).toBeUndefined();
  });

  it('reads frame timestamps and sizes from showinfo lines', () => {
    expect(parseShowinfo('[Parsed_showinfo_3 @ 0x55] [info] n:  12 pts:  10918 pts_time:0.910744 pos:    21510 fmt:rgb24 sar:1/1 s:320x180 i:P iskey:0 type:P ')).toEqual({ n: 12, pts: 0.910744, width: 320, height: 180 });
    expect(parseShowinfo('[Parsed_showinfo_3 @ 0x55] [info] n:   0 pts:NOPTS pts_time:NOPTS pos: -1 fmt:rgb24 sar:1/1 s:64x48 i:P')?.pts).toBeNaN();
    expect(parseShowinfo('[Parsed_showinfo_3 @ 0x55] [info] color_range:pc color_space:gbr')).toBeUndefined();
  });
});

describe('missing ffmpeg', () => {
  it('fails the stream with FFMPEG_NOT_FOUND and says how to install it', () => {
    const source = new FrameSource({ id: 'x', url: 'lavfi:testsrc2' }, { config: ingestSchema.parse({ ffmpegPath: '/nonexistent/bin/ffmpeg' }), logger: createLogger('silent') });
    source.start();
    expect(source.state).toBe('failed');
    expect(source.lastError?.code).toBe('FFMPEG_NOT_FOUND');
    expect(source.lastError?.message).toMatch(/apt-get install ffmpeg/);
  });
});

describe('reconnect backoff', () => {
  it('grows exponentially to the cap, with bounded jitter', () => {
    const cfg = { initialDelayMs: 500, maxDelayMs: 30_000, factor: 2, jitter: 0.2, maxAttempts: 0 };
    expect([1, 2, 3, 4, 10].map((a) => backoffDelay(a, cfg, () => 0.5))).toEqual([500, 1000, 2000, 4000, 30_000]);
    expect(backoffDelay(1, cfg, () => 0)).toBe(400);
    expect(backoffDelay(1, cfg, () => 1)).toBe(600);
  });
});

describe('raw frame reader', () => {
  /**
   * Frames whose every byte is its index, written in awkward chunk sizes from one reused buffer
   * (as the frame pipe does: the reader must copy what it keeps), with lines arriving late.
   */
  async function feed(sizes: [number, number][], chunk: number, opts: { pauseAt?: number } = {}) {
    const frames: RawFrame[] = [];
    const firstBytes: number[] = [];
    const reader = new RawFrameReader((f) => {
      frames.push(f);
      firstBytes.push(f.data[0]);
      if (frames.length === opts.pauseAt) reader.pause();
    });
    let drains = 0;
    let finished = false;
    reader.on('drain', () => drains++);
    reader.on('finish', () => (finished = true));
    const all = Buffer.concat(sizes.map(([w, h], i) => Buffer.alloc(w * h * 3, i)));
    const scratch = Buffer.alloc(chunk);
    const accepted: boolean[] = [];
    for (let off = 0; off < all.length; off += chunk) {
      const n = all.copy(scratch, 0, off, off + chunk);
      accepted.push(reader.write(scratch.subarray(0, n)));
      scratch.fill(0xff); // reused at once: nothing of it may have been kept by reference
    }
    reader.end();
    // The lines come after the bytes: frames must wait for them, not guess.
    await new Promise((r) => setTimeout(r, 10));
    expect(frames).toHaveLength(0);
    expect(accepted.every((a) => !a)).toBe(true);
    expect(finished).toBe(false);
    sizes.forEach(([width, height], n) => reader.pushInfo({ n, pts: n / 10, width, height }));
    return { frames, firstBytes, reader, drains: () => drains, finished: () => finished };
  }

  it('cuts frames exactly, sizes from their own lines, across chunk boundaries', async () => {
    const sizes: [number, number][] = [[4, 2], [4, 2], [6, 4], [2, 2]];
    const { frames, drains, finished } = await feed(sizes, 7);
    expect(frames.map((f) => [f.info.width, f.info.height, f.data.length])).toEqual(sizes.map(([w, h]) => [w, h, w * h * 3]));
    frames.forEach((f, i) => expect(f.data.every((b) => b === i)).toBe(true));
    expect(drains()).toBe(1);
    expect(finished()).toBe(true);
  });

  it('holds bytes while paused and delivers them all on resume, finishing only then', async () => {
    const sizes: [number, number][] = Array.from({ length: 6 }, () => [4, 4]);
    const { frames, firstBytes, reader, drains, finished } = await feed(sizes, 5, { pauseAt: 2 });
    await new Promise((r) => setTimeout(r, 20));
    expect(frames).toHaveLength(2);
    expect(drains()).toBe(0);
    expect(finished()).toBe(false);
    reader.resume();
    expect(frames).toHaveLength(6);
    expect(firstBytes).toEqual([0, 1, 2, 3, 4, 5]);
    expect(drains()).toBe(1);
    expect(finished()).toBe(true);
  });

  it('takes bytes straight into frames when their lines came first, asking for no pause', () => {
    const frames: RawFrame[] = [];
    const reader = new RawFrameReader((f) => frames.push(f));
    reader.pushInfo({ n: 0, pts: 0, width: 2, height: 2 });
    reader.pushInfo({ n: 1, pts: 0.1, width: 2, height: 2 });
    expect(reader.write(Buffer.alloc(24, 7))).toBe(true);
    expect(frames.map((f) => f.data[0])).toEqual([7, 7]);
    expect(reader.bytesRead).toBe(24);
    expect(reader.partialBytes).toBe(0);
  });

  it('a stop from a frame listener (discard mid-chunk) drops the rest of the chunk: no pause asked, finish follows end()', () => {
    // The reader's caller stops reading on false until 'drain'; a 'drain' owed after discard() is
    // never emitted, ffmpeg blocks on its pipe and its end of file is never read: stop() hung.
    const reader = new RawFrameReader(() => reader.discard());
    let finished = false;
    reader.on('finish', () => (finished = true));
    reader.pushInfo({ n: 0, pts: 0, width: 2, height: 2 });
    reader.pushInfo({ n: 1, pts: 0.1, width: 2, height: 2 });
    expect(reader.write(Buffer.alloc(18, 7))).toBe(true);
    expect(reader.write(Buffer.alloc(10, 7))).toBe(true);
    expect(reader.partialBytes).toBe(0);
    reader.end();
    expect(finished).toBe(true);
  });
});

describe('frame buffer pool', () => {
  it('hands a given-back buffer to the next frame of its size, and allocates otherwise', () => {
    const pool = new FrameBufferPool(2);
    const a = pool.take(12);
    const b = pool.take(12);
    expect(a.buffer).not.toBe(b.buffer);
    expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
    pool.give(a);
    expect(pool.take(12)).toBe(a);
    // A new size (a camera switching profile): the old buffers are of no use.
    pool.give(b);
    const c = pool.take(27);
    expect(c.length).toBe(27);
    expect(c).not.toBe(b);
    expect(pool.take(12)).not.toBe(b);
    expect({ allocated: pool.allocated, reused: pool.reused }).toEqual({ allocated: 4, reused: 1 });
  });

  it('holds at most `keep` free buffers', () => {
    const pool = new FrameBufferPool(2);
    const bufs = [pool.take(3), pool.take(3), pool.take(3)];
    bufs.forEach((b) => pool.give(b));
    pool.take(3);
    pool.take(3);
    pool.take(3);
    expect(pool.reused).toBe(2);
  });

  it('lets a reader reuse a released frame, and give back the frame it was cutting when discarded', async () => {
    const pool = new FrameBufferPool();
    const frames: RawFrame[] = [];
    const firstBytes: number[] = [];
    const reader = new RawFrameReader((f) => {
      frames.push(f);
      firstBytes.push(f.data[0]);
      if (frames.length === 1) pool.give(f.data); // released at once: the next frame gets it
    }, pool);
    for (let n = 0; n < 3; n++) reader.pushInfo({ n, pts: n, width: 2, height: 2 });
    // Cut at once; the write's callback waits for the fourth frame's line, which never comes.
    reader.write(Buffer.concat([Buffer.alloc(12, 1), Buffer.alloc(12, 2), Buffer.alloc(12, 3), Buffer.alloc(5, 4)]));
    await new Promise((r) => setImmediate(r));
    expect(firstBytes).toEqual([1, 2, 3]);
    expect(frames[1].data).toBe(frames[0].data);
    expect(frames[2].data).not.toBe(frames[1].data);
    expect(frames[2].data[0]).toBe(3);
    reader.pushInfo({ n: 3, pts: 3, width: 2, height: 2 });
    reader.discard();
    // The fourth frame's buffer, never handed out, is back in the pool.
    const next = pool.take(12);
    expect([frames[0].data, frames[2].data]).not.toContain(next);
    expect(pool.reused).toBe(2);
  });
});

describe('frame pipe (named pipe from ffmpeg)', () => {
  it('is a FIFO only its owner can open, in a private directory removed on close', () => {
    const pipe = FramePipe.open();
    const dir = path.dirname(pipe.path);
    expect(fs.statSync(pipe.path).isFIFO()).toBe(true);
    expect(fs.statSync(pipe.path).mode & 0o777).toBe(0o600);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(path.basename(dir).startsWith(`facestream-frames-${process.pid}-`)).toBe(true);
    pipe.close();
    return new Promise<void>((resolve) => setTimeout(() => {
      expect(fs.existsSync(dir)).toBe(false);
      resolve();
    }, 200));
  });

  it('delivers what a writer writes, waits for a writer that opens late, and ends when it is gone', async () => {
    const pipe = FramePipe.open();
    const frames: RawFrame[] = [];
    const reader = new RawFrameReader((f) => frames.push(f));
    const finished = new Promise<void>((r) => reader.once('finish', () => r()));
    pipe.readInto(reader);
    // No writer for a while: the reader must not take that for the end of the file.
    await new Promise((r) => setTimeout(r, 300));
    for (let n = 0; n < 3; n++) reader.pushInfo({ n, pts: n, width: 16, height: 16 });
    const writer = spawn('sh', ['-c', `head -c ${3 * 16 * 16 * 3} /dev/zero | tr '\\0' 'A' > "$0"`, pipe.path], { stdio: 'ignore' });
    writer.once('exit', () => pipe.writerGone());
    await finished;
    expect(frames).toHaveLength(3);
    expect(frames.every((f) => f.data.every((b) => b === 65))).toBe(true);
    pipe.close();
  });

  it('ends the reader when no writer ever came (ffmpeg failed before opening its output)', async () => {
    const pipe = FramePipe.open();
    const reader = new RawFrameReader(() => {});
    const finished = new Promise<void>((r) => reader.once('finish', () => r()));
    pipe.readInto(reader);
    pipe.writerGone();
    await finished;
    pipe.close();
  });

  it('sweeps the directories of processes that are gone, and only those', () => {
    const gone = spawnSync('true').pid!;
    const stale = fs.mkdtempSync(path.join(os.tmpdir(), `facestream-frames-${gone}-`));
    const mine = FramePipe.open();
    FramePipe.sweepStale();
    return new Promise<void>((resolve) => setTimeout(() => {
      expect(fs.existsSync(stale)).toBe(false);
      expect(fs.existsSync(mine.path)).toBe(true);
      mine.close();
      resolve();
    }, 200));
  });
});
