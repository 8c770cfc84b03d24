import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/schema.js';
import { decodeImage, type DecodedImage } from '../src/image/decode.js';
import { Enroller } from '../src/index/enroll.js';
import { Gallery } from '../src/index/gallery.js';
import type { ModelRuntime } from '../src/models/runtime.js';
import { FaceAnalyzer, largestFace } from '../src/pipeline/analyzer.js';
import { cosineSimilarity } from '../src/pipeline/embed/vector.js';
import { runCli } from './helpers/cli.js';
import { testConfig, testRuntime } from './helpers/models.js';
import { dataFile } from './helpers/paths.js';

/** Pictures from the field: transparency, decoder warnings, unsupported formats, faces filling or leaving the picture, duplicates. */

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-field-pictures-'));
const OBAMA = (n: number) => fs.readFileSync(dataFile('faces', 'barack_obama', `${n}.jpg`));
const RUDD = () => fs.readFileSync(dataFile('faces', 'paul_rudd', '1.jpg'));
const KIT_WITH_ROSE = () => fs.readFileSync(dataFile('scenes', 'kit_with_rose.jpg'));

let runtime: ModelRuntime;
let config: Config;
let analyzer: FaceAnalyzer;
const decode = (b: Buffer, name = 'picture') => decodeImage(b, config.limits, name);
const faces = async (b: Buffer) => (await analyzer.analyze([await decode(b)], { attributes: false, stillPictures: true }))[0];
/** The largest face's box in the picture's own pixels (decoding may shrink a large picture: limits.maxDecodeSide). */
const largestBox = async (b: Buffer) => {
  const img = await decode(b);
  const [found] = await analyzer.analyze([img], { attributes: false, stillPictures: true });
  return largestFace(found)!.box.map((v) => v * img.scale);
};
const largestEmbedding = async (b: Buffer) => largestFace(await faces(b))!.embedding!;

beforeAll(async () => {
  runtime = testRuntime();
  config = testConfig();
  analyzer = await FaceAnalyzer.create(runtime, config);
});
afterAll(async () => {
  await runtime?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The picture with its alpha channel set by `alpha(x, y)` (0-255), as PNG or WebP. */
async function withAlpha(jpeg: Buffer, alpha: (x: number, width: number) => number, format: 'png' | 'webp', grey = false): Promise<Buffer> {
  const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
  const mask = Buffer.alloc(info.width * info.height);
  for (let y = 0; y < info.height; y++) for (let x = 0; x < info.width; x++) mask[y * info.width + x] = alpha(x, info.width);
  let img = sharp(data, { raw: { width: info.width, height: info.height, channels: 3 } });
  if (grey) img = img.greyscale();
  const rgba = img.joinChannel(mask, { raw: { width: info.width, height: info.height, channels: 1 } });
  return format === 'png' ? rgba.png().toBuffer() : rgba.webp({ lossless: true }).toBuffer();
}

describe('transparency', () => {
  it('detects nothing where the picture is invisible (alpha 0), in PNG, WebP and grey+alpha', async () => {
    expect(await faces(KIT_WITH_ROSE())).toHaveLength(2);
    expect(await faces(await withAlpha(KIT_WITH_ROSE(), () => 0, 'png'))).toHaveLength(0);
    expect(await faces(await withAlpha(KIT_WITH_ROSE(), () => 0, 'webp'))).toHaveLength(0);
    expect(await faces(await withAlpha(KIT_WITH_ROSE(), () => 0, 'png', true))).toHaveLength(0);
    // Only the left half transparent: the face on the right is still there, the left one is not.
    const all = await faces(KIT_WITH_ROSE());
    const half = await faces(await withAlpha(KIT_WITH_ROSE(), (x, w) => (x < w / 2 ? 0 : 255), 'png'));
    const width = (await sharp(KIT_WITH_ROSE()).metadata()).width!;
    expect(half).toHaveLength(all.filter((f) => f.box[0] >= width / 2).length);
  });
});

describe('decoder warnings and formats', () => {
  const sosOffset = (jpg: Buffer) => {
    let i = 2;
    while (!(jpg[i] === 0xff && jpg[i + 1] === 0xda)) i++;
    return i;
  };

  it('decodes a JPEG that libjpeg reads with a warning (SOS parameters, extraneous bytes), and says so', async () => {
    const jpg = RUDD();
    const sos = sosOffset(jpg);
    const end = sos + 2 + jpg.readUInt16BE(sos + 2); // the SOS header's last three bytes are Ss, Se, Ah/Al
    for (const [offset, value] of [
      [end - 2, 0x3e],
      [end - 3, 0x01],
      [end - 1, 0x11],
    ]) {
      const bad = Buffer.from(jpg);
      bad[offset] = value;
      const img = await decode(bad, 'phone.jpg');
      expect(img.warnings?.[0]).toMatch(/SOS parameters/);
      expect(largestFace(await faces(bad))).toBeDefined();
    }
    // Extraneous bytes between two header segments.
    const app0End = 4 + jpg.readUInt16BE(4);
    const extra = Buffer.concat([jpg.subarray(0, app0End), Buffer.from([0x12, 0x34, 0x56]), jpg.subarray(app0End)]);
    expect((await decode(extra)).warnings?.[0]).toMatch(/extraneous|corrupt/i);
    // What libjpeg cannot decode whole is still refused: a truncated file.
    await expect(decode(jpg.subarray(0, jpg.length >> 1), 'half.jpg')).rejects.toMatchObject({ code: 'IMAGE_UNREADABLE' });
  });

  it('names a format it cannot decode (HEIC, BMP, ICO), what it reads and how to convert; bytes of no format stay unreadable', async () => {
    const heic = path.join(tmp, 'rudd.heic');
    const small = path.join(tmp, 'rudd-small.jpg');
    await sharp(RUDD()).resize(400).toFile(small);
    execFileSync('heif-enc', ['-q', '50', '-o', heic, small]);
    await expect(decode(fs.readFileSync(heic), 'IMG_0001.HEIC')).rejects.toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE', message: expect.stringMatching(/IMG_0001.HEIC is a HEIC picture .*reads JPEG, PNG, WebP, GIF, TIFF and AVIF.*heif-convert/) });
    const bmp = execFileSync('ffmpeg', ['-v', 'error', '-i', dataFile('faces', 'paul_rudd', '1.jpg'), '-vf', 'scale=320:-1', '-f', 'image2pipe', '-c:v', 'bmp', '-'], { maxBuffer: 64 << 20 });
    await expect(decode(bmp, 'scan.bmp')).rejects.toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE', message: expect.stringMatching(/scan.bmp is a BMP picture.*ffmpeg -i in.bmp out.png/) });
    const icoFile = path.join(tmp, 'favicon.ico');
    execFileSync('ffmpeg', ['-v', 'error', '-y', '-i', dataFile('faces', 'paul_rudd', '1.jpg'), '-vf', 'scale=64:64,format=rgba', '-c:v', 'png', icoFile]);
    await expect(decode(fs.readFileSync(icoFile), 'favicon.ico')).rejects.toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE', message: expect.stringMatching(/ICO icon/) });
    await expect(decode(Buffer.from('facestream is not a picture at all, just text and more text'), 'notes.jpg')).rejects.toMatchObject({
      code: 'IMAGE_UNREADABLE',
      message: expect.stringMatching(/notes.jpg is not a readable image/),
    });
    // AVIF, which libvips decodes, is not refused.
    expect((await decode(await sharp(RUDD()).resize(320).avif().toBuffer())).width).toBe(320);
  });
});

/** `jpg` cut to its face box shrunk by `inset` on every side: the face fills the picture. */
async function tightCrop(jpg: Buffer, inset: number): Promise<Buffer> {
  const [x1, y1, x2, y2] = await largestBox(jpg);
  const w = x2 - x1;
  const h = y2 - y1;
  return sharp(jpg)
    .extract({ left: Math.round(x1 + w * inset), top: Math.round(y1 + h * inset), width: Math.round(w * (1 - 2 * inset)), height: Math.round(h * (1 - 2 * inset)) })
    .jpeg({ quality: 95 })
    .toBuffer();
}

describe('faces filling or leaving the picture', () => {
  it('finds a face that fills the whole picture (tight crops of three people), recognisably', async () => {
    for (const jpg of [OBAMA(1), RUDD(), fs.readFileSync(dataFile('faces', 'kit_harington', '1.jpg'))]) {
      const tight = await tightCrop(jpg, 0.1);
      const found = await faces(tight);
      expect(found).toHaveLength(1);
      expect(cosineSimilarity(found[0].embedding!, await largestEmbedding(jpg))).toBeGreaterThan(0.7);
    }
  });

  it('finds a face that fills the whole picture from the command line too (`facestream detect`)', async () => {
    const file = path.join(tmp, 'rudd-tight.jpg');
    fs.writeFileSync(file, await tightCrop(RUDD(), 0.1));
    const r = await runCli(['detect', file, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).faces).toHaveLength(1);
  });

  it('enrolls the box a person gives even where the detector finds no face', async () => {
    const dir = path.join(tmp, 'box-gallery');
    const noPadding = await FaceAnalyzer.create(runtime, { ...config, detector: { ...config.detector, picturePadding: 0 } });
    const gallery = await Gallery.open(dir, { modelId: noPadding.embedder.modelId, dimension: noPadding.embedder.dimension, config: config.gallery, defaultMinSimilarity: noPadding.embedder.defaultMinSimilarity });
    try {
      const tight = await tightCrop(RUDD(), 0.1);
      const meta = await sharp(tight).metadata();
      const enroller = new Enroller(gallery, noPadding, config.gallery);
      expect((await noPadding.detect([await decode(tight)], { stillPictures: true }))[0]).toHaveLength(0);
      const box: [number, number, number, number] = [0, 0, meta.width!, meta.height!];
      const r = await enroller.enrollPictures({ id: 'rudd', name: 'Paul Rudd' }, [{ name: 'id-photo.jpg', data: tight }], { box });
      expect(r.rejected).toEqual([]);
      expect(r.added).toHaveLength(1);
      // The template recognises the person in the whole picture.
      expect(gallery.identify(await largestEmbedding(RUDD())).match?.identityId).toBe('rudd');
    } finally {
      await gallery.close();
    }
  });

  it('gets the box and the identity of a face cut by the right-bottom border (padded crops, not clamped)', async () => {
    for (const [jpg, cut] of [
      [OBAMA(1), 0.75],
      [RUDD(), 0.75],
      [OBAMA(3), 0.8],
    ] as const) {
      const whole = largestFace(await faces(jpg))!;
      const [x1, y1, x2, y2] = await largestBox(jpg);
      const cutPicture = await sharp(jpg)
        .extract({ left: 0, top: 0, width: Math.round(x1 + (x2 - x1) * cut), height: Math.round(y1 + (y2 - y1) * cut) })
        .jpeg({ quality: 95 })
        .toBuffer();
      const cutImage = await decode(cutPicture);
      const found = largestFace(await faces(cutPicture))!;
      expect(found).toBeDefined();
      // The box stays on the face (it may reach outside the picture) instead of growing to twice its size.
      expect(Math.abs((found.box[2] - found.box[0]) * cutImage.scale - (x2 - x1)) / (x2 - x1)).toBeLessThan(0.25);
      expect(cosineSimilarity(found.embedding!, whole.embedding!)).toBeGreaterThan(0.6);
    }
  });
});

describe('duplicates', () => {
  it('refuses the same photo with other metadata, trailing bytes, another container or a re-save, and says why', async () => {
    const dir = path.join(tmp, 'dup-gallery');
    const gallery = await Gallery.open(dir, { modelId: analyzer.embedder.modelId, dimension: analyzer.embedder.dimension, config: config.gallery, defaultMinSimilarity: analyzer.embedder.defaultMinSimilarity });
    try {
      const enroller = new Enroller(gallery, analyzer, config.gallery);
      const jpg = OBAMA(2);
      const first = await enroller.enrollPictures({ id: 'obama', name: 'Barack Obama' }, [{ name: 'obama.jpg', data: jpg }]);
      expect(first.added).toHaveLength(1);
      const comment = Buffer.from('edited in a photo app');
      const withComment = Buffer.concat([jpg.subarray(0, 2), Buffer.from([0xff, 0xfe, 0, comment.length + 2]), comment, jpg.subarray(2)]);
      const copies = [
        { name: 'metadata.jpg', data: withComment },
        { name: 'extra-byte.jpg', data: Buffer.concat([jpg, Buffer.from([0])]) },
        { name: 'same-pixels.png', data: await sharp(await decode(jpg).then((i: DecodedImage) => Buffer.from(i.data)), { raw: { width: (await decode(jpg)).width, height: (await decode(jpg)).height, channels: 3 } }).png().toBuffer() },
        { name: 'resaved.jpg', data: await sharp(jpg).jpeg({ quality: 100 }).toBuffer() },
      ];
      const again = await enroller.enrollPictures({ id: 'obama' }, copies);
      expect(again.added).toHaveLength(0);
      expect(again.rejected.map((r) => r.code)).toEqual(['DUPLICATE_TEMPLATE', 'DUPLICATE_TEMPLATE', 'DUPLICATE_TEMPLATE', 'DUPLICATE_TEMPLATE']);
      expect(again.rejected[0].reason).toMatch(/identical pixels/);
      expect(again.rejected[3].reason).toMatch(/similarity (0\.99\d|1\.000), duplicates at 0\.99: enrollment\.duplicateSimilarity/);
      // Two copies in one call: the second is the duplicate. A different photo of the person is added.
      const other = OBAMA(4);
      const mixed = await enroller.enrollPictures({ id: 'obama' }, [
        { name: 'other.jpg', data: other },
        { name: 'other-resaved.jpg', data: await sharp(other).jpeg({ quality: 100 }).toBuffer() },
      ]);
      expect(mixed.added.map((t) => t.source)).toEqual(['other.jpg']);
      expect(mixed.rejected[0].reason).toMatch(/same face as other.jpg/);
      expect(gallery.counts().templates).toBe(2);
    } finally {
      await gallery.close();
    }
  });
});
