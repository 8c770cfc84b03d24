import fs from 'node:fs/promises';
import sharp, { type Metadata } from 'sharp';
import { FacestreamError } from '../errors.js';
import { budgetedDecoder, checkPictureFormat, type DecodeBudget } from './budget.js';
import type { RgbImage } from './types.js';

/** Size limits of encoded pictures, and the decode budget (src/image/budget.ts) every decode runs under. */
export interface ImageLimits extends DecodeBudget {
  maxImagePixels: number;
  maxImageBytes: number;
}

export interface DecodedImage extends RgbImage {
  /** The encoded bytes, kept for content hashing and for storing crops without re-encoding. */
  readonly source: Buffer;
  readonly format: string;
  /**
   * Picture pixels per decoded pixel (>= 1): the picture was shrunk on load to
   * limits.maxDecodeSide. Multiply decoded coordinates by it to get the picture's.
   */
  readonly scale: number;
  /** The picture's own size (after EXIF orientation), before any shrinking. */
  readonly originalWidth: number;
  readonly originalHeight: number;
}

/** Reads an image file with the checks a user expects to be told about in plain words. */
export async function readImageFile(file: string, limits: ImageLimits): Promise<Buffer> {
  let stat;
  try {
    stat = await fs.stat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new FacestreamError('FILE_NOT_FOUND', `${file}: no such file`, { file });
    throw new FacestreamError('IMAGE_UNREADABLE', `${file}: cannot read (${code ?? (err as Error).message})`, { file });
  }
  if (stat.isDirectory()) throw new FacestreamError('NOT_A_FILE', `${file} is a directory, not an image file`, { file });
  if (!stat.isFile()) throw new FacestreamError('NOT_A_FILE', `${file} is not a regular file`, { file });
  if (stat.size === 0) throw new FacestreamError('EMPTY_FILE', `${file} is empty (0 bytes)`, { file });
  if (stat.size > limits.maxImageBytes) {
    throw new FacestreamError('IMAGE_TOO_LARGE', `${file} is ${stat.size} bytes, over the ${limits.maxImageBytes}-byte limit`, {
      file,
      bytes: stat.size,
      limit: limits.maxImageBytes,
    });
  }
  return fs.readFile(file);
}

/**
 * Decodes to 8-bit RGB with EXIF orientation applied and alpha dropped. The pixel limit is checked
 * from the header before any pixel is decoded, so a decompression bomb costs nothing.
 * `name` only labels error messages.
 */
export async function decodeImage(input: Buffer, limits: ImageLimits, name = 'image'): Promise<DecodedImage> {
  if (input.length === 0) throw new FacestreamError('EMPTY_FILE', `${name} is empty (0 bytes)`, { file: name });
  if (input.length > limits.maxImageBytes) {
    throw new FacestreamError('IMAGE_TOO_LARGE', `${name} is ${input.length} bytes, over the ${limits.maxImageBytes}-byte limit`, {
      file: name,
      bytes: input.length,
      limit: limits.maxImageBytes,
    });
  }
  checkPictureFormat(input, limits, name);
  let meta: Metadata;
  try {
    meta = await sharp(input, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new FacestreamError('IMAGE_UNREADABLE', `${name} is not a readable image (${shortSharpMessage(err)})`, { file: name });
  }
  const { width, height, format } = meta;
  if (!width || !height) throw new FacestreamError('IMAGE_UNREADABLE', `${name} has no image dimensions`, { file: name });
  if (width * height > limits.maxImagePixels) {
    throw new FacestreamError(
      'IMAGE_TOO_LARGE',
      `${name} is ${width}x${height} (${pixelCount(width * height)}), over the limit of ${pixelCount(limits.maxImagePixels)} (limits.maxImagePixels)`,
      { file: name, width, height, limit: limits.maxImagePixels },
    );
  }
  try {
    // failOn 'warning' turns truncated or corrupt JPEG/PNG data into an error instead of grey pixels.
    const { pipeline } = budgetedDecoder(input, limits, { width, height });
    const { data, info } = await pipeline
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`unexpected ${info.channels} channels after conversion`);
    const rotated = (meta.orientation ?? 1) >= 5;
    const [originalWidth, originalHeight] = rotated ? [height, width] : [width, height];
    const scale = Math.max(originalWidth / info.width, originalHeight / info.height, 1);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length), source: input, format: format ?? 'unknown', scale, originalWidth, originalHeight };
  } catch (err) {
    if (/timeout/i.test(shortSharpMessage(err))) {
      throw new FacestreamError('IMAGE_UNREADABLE', `${name} took longer than ${limits.decodeTimeoutSeconds} s to decode (limits.decodeTimeoutSeconds)`, { file: name, limit: limits.decodeTimeoutSeconds ?? 0 });
    }
    throw new FacestreamError('IMAGE_UNREADABLE', `${name} could not be decoded (${shortSharpMessage(err)})`, { file: name });
  }
}

export async function loadImageFile(file: string, limits: ImageLimits): Promise<DecodedImage> {
  return decodeImage(await readImageFile(file, limits), limits, file);
}

/** Megapixels for camera-size numbers; small limits (tests, tight deployments) in plain pixels. */
function pixelCount(n: number): string {
  return n >= 100_000 ? `${(n / 1e6).toFixed(1)} MP` : `${n} pixels`;
}

function shortSharpMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0].replace(/^Input (buffer|file) /, '').trim();
}
