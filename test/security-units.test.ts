import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { ingestSchema } from '../src/config/sections/ingest.js';
import { serverSchema } from '../src/config/sections/server.js';
import { decodeImage } from '../src/image/decode.js';
import { sniffFormat } from '../src/image/budget.js';
import { checkMetadata } from '../src/index/metadata.js';
import { checkEmbedding } from '../src/index/vectors.js';
import { resolveSource } from '../src/ingest/source.js';
import { FrameSource } from '../src/ingest/stream.js';
import { PictureGate } from '../src/server/picture-gate.js';
import { originAllowed } from '../src/server/routes/live.js';
import { resolveKeys } from '../src/server/server.js';
import { checkSource, hostAllowed } from '../src/server/source-policy.js';
import { ServerStore } from '../src/server/store.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-security-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const ingest = ingestSchema.parse({});
const policy = (over: Record<string, unknown> = {}) => serverSchema.parse({ sources: { allowedDirs: [tmp], ...over } }).sources;
const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
};

describe('stream sources that could crash the server or reach what they should not', () => {
  it('refuses control characters anywhere and spaces in network URLs, before anything is stored or spawned', () => {
    const bad = ['rtsp://cam/s\u0000x', 'rtsp://cam/s\r\nCSeq: 9', 'rtsp://cam/a b', 'http://cam/x\ty', 'https://cam/\u0085', `${tmp}/a\u0000.mp4`, 'lavfi:testsrc\u0000', 'v4l2:/dev/video0\u0000', 'rtsp://u:p\u2028@cam/s', '/dev/video0\n'.repeat(2)];
    for (const url of bad) expect(code(() => resolveSource({ id: 's', url }, ingest)), JSON.stringify(url)).toBe('BAD_REQUEST');
    // A file name may hold spaces; only network URLs go onto a wire.
    expect(resolveSource({ id: 's', url: `${tmp}/my video.mp4` }, ingest).kind).toBe('file');
  });

  it('a source that cannot be spawned fails as a stream error instead of throwing out of an event callback', async () => {
    // Past resolveSource (which refuses a NUL), the ingest still checks every argument it hands to spawn.
    const source = new FrameSource({ id: 'nul', url: 'lavfi:testsrc2=size=64x64' }, { config: ingest });
    (source.source as { input: string }).input = 'testsrc2=size=64x64\u0000';
    const states: string[] = [];
    source.on('state', (c) => states.push(c.state));
    source.start();
    await new Promise((r) => setTimeout(r, 300));
    expect(source.state).toBe('failed');
    expect(source.lastError?.code).toBe('INVALID_SOURCE');
    await source.stop();
  });

  it('v4l2 and device paths go through server.sources.allowedDevices, existing or not, symlinks followed', () => {
    const p = policy({ allowDevices: true });
    for (const url of ['v4l2:/etc/passwd', 'v4l2:/etc/does-not-exist', 'v4l2:/dev/sda', 'v4l2:/dev/video0/../../etc/passwd', 'v4l2:/dev/null', 'v4l2:relative/video0', 'avfoundation:/etc/passwd', 'dshow:video=../../x/y']) {
      expect(code(() => checkSource({ id: 'd', url }, p, ingest)), url).toBe('SOURCE_NOT_ALLOWED');
    }
    // Same words whether the path exists or not: errors do not reveal the file system.
    const msg = (url: string) => {
      try {
        checkSource({ id: 'd', url }, p, ingest);
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(msg('v4l2:/etc/passwd')).toBe(msg('v4l2:/etc/nothing-here'));
    // Names under the allowed pattern pass (a camera not plugged in fails later as NOT_FOUND).
    expect(checkSource({ id: 'd', url: '/dev/video7' }, p, ingest).resolved.kind).toBe('device');
    expect(checkSource({ id: 'd', url: 'v4l2:/dev/video9' }, p, ingest).url).toBe('v4l2:/dev/video9');
    // A symlink that matches the pattern but leads elsewhere is refused.
    const dir = path.join(tmp, 'dev');
    fs.mkdirSync(dir, { recursive: true });
    fs.symlinkSync('/etc/hostname', path.join(dir, 'video1'));
    fs.symlinkSync('/dev/null', path.join(dir, 'video2'));
    const own = policy({ allowedDevices: [`${dir}/video*`] });
    expect(code(() => checkSource({ id: 'd', url: `v4l2:${dir}/video1` }, own, ingest))).toBe('SOURCE_NOT_ALLOWED');
    expect(code(() => checkSource({ id: 'd', url: `v4l2:${dir}/video2` }, own, ingest))).toBe('SOURCE_NOT_ALLOWED');
    expect(code(() => checkSource({ id: 'd', url: 'v4l2:/dev/video0' }, policy({ allowDevices: false }), ingest))).toBe('SOURCE_NOT_ALLOWED');
  });

  it('server.sources.allowedHosts limits network sources to names, addresses and CIDR ranges', () => {
    const entries = ['cam1.lan', '*.cams.example.org', '192.168.1.0/24', '10.0.0.7', 'fd00::/8'];
    for (const h of ['cam1.lan', 'CAM1.LAN', 'a.cams.example.org', 'x.y.cams.example.org', '192.168.1.44', '10.0.0.7', 'fd00::1']) expect(hostAllowed(h, entries), h).toBe(true);
    for (const h of ['cam2.lan', 'cams.example.org.evil', 'evilcams.example.org', '192.168.2.1', '10.0.0.8', '127.0.0.1', 'fe80::1', 'localhost']) expect(hostAllowed(h, entries), h).toBe(false);
    const p = policy({ allowedHosts: entries });
    expect(code(() => checkSource({ id: 'n', url: 'rtsp://user:pw@192.168.1.9:554/s' }, p, ingest))).toBeUndefined();
    expect(code(() => checkSource({ id: 'n', url: 'rtsp://127.0.0.1:22/' }, p, ingest))).toBe('SOURCE_NOT_ALLOWED');
    // The host is the one ffmpeg connects to: user-info up to the last '@'.
    expect(code(() => checkSource({ id: 'n', url: 'rtsp://cam1.lan:x@127.0.0.1/s' }, p, ingest))).toBe('SOURCE_NOT_ALLOWED');
    expect(code(() => checkSource({ id: 'n', url: 'http://x@cam1.lan@10.1.1.1/s' }, p, ingest))).toBe('SOURCE_NOT_ALLOWED');
    // Default: any host.
    expect(code(() => checkSource({ id: 'n', url: 'rtsp://203.0.113.5/s' }, policy(), ingest))).toBeUndefined();
  });
});

describe('gallery inputs', () => {
  it('checkEmbedding refuses wrong dimensions, non-finite values and templates that are not unit vectors', () => {
    const unit = (d: number, scale = 1) => {
      const v = new Float32Array(d).map((_, i) => Math.sin(i + 1));
      const n = Math.hypot(...v);
      return v.map((x) => (x / n) * scale);
    };
    expect(() => checkEmbedding(unit(512), 512)).not.toThrow();
    expect(() => checkEmbedding(unit(128), 512)).toThrow(/128 values/);
    expect(() => checkEmbedding(unit(512, 1000), 512)).toThrow(/norm/);
    expect(() => checkEmbedding(unit(512, 0.5), 512)).toThrow(/norm/);
    expect(() => checkEmbedding(new Float32Array(512), 512)).toThrow(/norm/);
    for (const bad of [NaN, Infinity, -Infinity]) {
      const v = unit(512);
      v[17] = bad;
      expect(() => checkEmbedding(v, 512)).toThrow(/finite/);
      expect(() => checkEmbedding(v, 512, 'query')).toThrow(/finite/);
    }
    expect(() => checkEmbedding(new Float32Array(512), 512, 'query')).toThrow(/zeros/);
  });

  it('checkMetadata refuses deep, huge and non-JSON metadata without recursion', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(code(() => checkMetadata(deep))).toBe('BAD_REQUEST');
    let obj: Record<string, unknown> = {};
    const root = obj;
    for (let i = 0; i < 50; i++) obj = (obj.a = {}) as Record<string, unknown>;
    expect(code(() => checkMetadata(root))).toBe('BAD_REQUEST');
    expect(code(() => checkMetadata({ blob: 'x'.repeat(70_000) }))).toBe('BAD_REQUEST');
    expect(code(() => checkMetadata({ n: Infinity }))).toBe('BAD_REQUEST');
    expect(code(() => checkMetadata({ employee: 42, tags: ['a', 'b'], nested: { ok: true, none: null } }))).toBeUndefined();
  });
});

describe('picture decoding budget', () => {
  it('knows formats by their bytes, and refuses SVG (plain, with a BOM, gzipped) unless configured', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect width="100" height="100"/></svg>');
    const variants = [svg, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('\n  '), svg]), Buffer.from(`<?xml version="1.0"?>${svg}`), zlib.gzipSync(svg)];
    const limits = { maxImagePixels: 1e6, maxImageBytes: 1e6 };
    for (const v of variants) {
      expect(sniffFormat(v)).toBe('svg');
      await expect(decodeImage(v, limits, 'x.svg')).rejects.toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE' });
    }
    const allowed = await decodeImage(svg, { ...limits, pictureFormats: ['svg'] }, 'x.svg');
    expect(allowed.width).toBe(100);
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).png().toBuffer();
    expect(sniffFormat(png)).toBe('png');
    await expect(decodeImage(png, { ...limits, pictureFormats: ['jpeg'] }, 'x.png')).rejects.toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE' });
    await expect(decodeImage(Buffer.from('plain text, no picture'), limits, 'notes.txt')).rejects.toMatchObject({ code: 'IMAGE_UNREADABLE' });
  });

  it('shrinks large pictures on load and says by how much', async () => {
    const big = await sharp({ create: { width: 3000, height: 1000, channels: 3, background: 'blue' } }).jpeg().toBuffer();
    const img = await decodeImage(big, { maxImagePixels: 40e6, maxImageBytes: 50e6, maxDecodeSide: 1200 });
    expect([img.width, img.height]).toEqual([1200, 400]);
    expect(img.scale).toBeCloseTo(2.5, 5);
    expect([img.originalWidth, img.originalHeight]).toEqual([3000, 1000]);
  });

  it('the picture gate runs at most N at once, refuses past its queue, and never starts work for a client that left', async () => {
    const gate = new PictureGate(1, 1);
    let release!: () => void;
    const first = gate.run(new AbortController().signal, () => new Promise<string>((r) => (release = () => r('first'))));
    const leaving = new AbortController();
    let started = false;
    const second = gate.run(leaving.signal, async () => {
      started = true;
      return 'second';
    });
    await expect(gate.run(new AbortController().signal, async () => 'third')).rejects.toMatchObject({ code: 'OVERLOADED' });
    leaving.abort();
    await expect(second).rejects.toThrow(/closed the connection/);
    expect(gate.depth).toEqual({ active: 1, waiting: 0 });
    release();
    expect(await first).toBe('first');
    expect(started).toBe(false);
    expect(await gate.run(new AbortController().signal, async () => 'after')).toBe('after');
  });
});

describe('access', () => {
  it('WebSocket origins: own origin and configured ones only', () => {
    expect(originAllowed('http://127.0.0.1:8080', '127.0.0.1:8080', [])).toBe(true);
    expect(originAllowed('https://evil.example', '127.0.0.1:8080', [])).toBe(false);
    expect(originAllowed('http://127.0.0.1:9999', '127.0.0.1:8080', [])).toBe(false);
    expect(originAllowed('null', '127.0.0.1:8080', [])).toBe(false);
    expect(originAllowed('https://dash.example', '127.0.0.1:8080', ['https://dash.example'])).toBe(true);
    expect(originAllowed('https://evil.example', '127.0.0.1:8080', ['*'])).toBe(true);
  });

  it('read-only keys alone keep the stored write key (or a generated one) instead of leaving none', () => {
    const dir = path.join(tmp, 'keys');
    const store = new ServerStore(dir);
    const base = serverSchema.parse({});
    const first = resolveKeys(base, store);
    expect(first.generated).toBeDefined();
    const readKey = 'dashboard-read-key-0123456789';
    const withRead = resolveKeys({ ...base, auth: { ...base.auth, readOnlyKeys: [readKey] } }, store);
    expect(withRead.readOnlyOnly).toBe(true);
    expect(withRead.keys.check(first.generated!)).toBe('write');
    expect(withRead.keys.check(readKey)).toBe('read');
    const configured = resolveKeys({ ...base, auth: { ...base.auth, keys: ['my-own-write-key-0123456789'], readOnlyKeys: [readKey] } }, store);
    expect(configured.keys.check(first.generated!)).toBeNull();
    expect(configured.readOnlyOnly).toBe(false);
    store.close();
    // A fresh data directory with only read keys still gets a write key, printed once.
    const fresh = new ServerStore(path.join(tmp, 'keys2'));
    const gen = resolveKeys({ ...base, auth: { ...base.auth, readOnlyKeys: [readKey] } }, fresh);
    expect(gen.generated && gen.keys.check(gen.generated)).toBe('write');
    fresh.close();
  });
});
