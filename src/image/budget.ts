import sharp, { type Sharp } from 'sharp';
import { FacestreamError } from '../errors.js';

/**
 * What decoding one picture may cost. Every picture from a file or an upload is decoded under
 * these limits (src/image/decode.ts), so the worst picture an API client can send has a bounded
 * price in time, memory and threads:
 * - the pixel limit is checked from the header before any pixel is decoded (sharp's
 *   limitInputPixels as well, in case a header lies);
 * - pixels are read sequentially and shrunk while loading to `maxDecodeSide` (JPEG and WebP
 *   shrink-on-load; other formats are streamed through the resize a strip at a time), so
 *   memory is that of the output, not of the 40 MP input;
 * - sharp's timeout stops a decode that runs longer than `decodeTimeoutSeconds`;
 * - only the formats in `formats` are opened. SVG is a program (filters, blur, text layout)
 *   whose cost is not bounded by its pixel count: it is off unless an operator lists it.
 */
export interface DecodeBudget {
  maxImagePixels: number;
  /** Longest side a picture is decoded to (shrunk keeping its aspect); 0 keeps the full size. */
  maxDecodeSide?: number;
  /** CPU time one decode may take; 0 means no limit. */
  decodeTimeoutSeconds?: number;
  /** Formats accepted, by the names sniffFormat returns. Undefined: all but svg. */
  pictureFormats?: readonly string[];
}

/** Formats opened when the configuration names none: the raster formats cameras and phones write. */
export const DEFAULT_PICTURE_FORMATS = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif'] as const;

/**
 * The format of encoded picture bytes from their magic numbers, before any decoder sees them.
 * 'svg' covers XML text and gzip (libvips opens gzipped SVG, .svgz); 'unknown' anything else.
 */
export function sniffFormat(b: Uint8Array): string {
  const at = (i: number, ...bytes: number[]) => bytes.every((x, k) => b[i + k] === x);
  if (at(0, 0xff, 0xd8, 0xff)) return 'jpeg';
  if (at(0, 0x89, 0x50, 0x4e, 0x47)) return 'png';
  if (at(0, 0x52, 0x49, 0x46, 0x46) && at(8, 0x57, 0x45, 0x42, 0x50)) return 'webp';
  if (at(0, 0x47, 0x49, 0x46, 0x38)) return 'gif';
  if (at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a)) return 'tiff';
  if (at(4, 0x66, 0x74, 0x79, 0x70)) return 'heif'; // ISO-BMFF 'ftyp': AVIF, HEIC
  if (at(0, 0x1f, 0x8b)) return 'svg';
  // Text starting (after a BOM and blanks) with '<': XML, which among sharp's formats is SVG.
  let i = at(0, 0xef, 0xbb, 0xbf) ? 3 : 0;
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x09 || b[i] === 0x0a || b[i] === 0x0d)) i++;
  if (b[i] === 0x3c) return 'svg';
  return 'unknown';
}

/** Throws IMAGE_UNREADABLE for bytes of no known picture format, UNSUPPORTED_MEDIA_TYPE (415) for a known format that is not accepted. */
export function checkPictureFormat(input: Uint8Array, budget: DecodeBudget, name: string): string {
  const format = sniffFormat(input);
  const allowed = budget.pictureFormats ?? DEFAULT_PICTURE_FORMATS;
  if (format === 'unknown') {
    throw new FacestreamError('IMAGE_UNREADABLE', `${name} is not a readable image (not one of ${allowed.join(', ')})`, { file: name });
  }
  if (!allowed.includes(format)) {
    const why = format === 'svg' ? 'SVG pictures are not accepted (limits.pictureFormats; SVG is a program whose decoding time has no bound)' : `the format is not one of ${allowed.join(', ')} (limits.pictureFormats)`;
    throw new FacestreamError('UNSUPPORTED_MEDIA_TYPE', `${name}: ${why}`, { file: name, format });
  }
  return format;
}

/**
 * A sharp pipeline for `input` that decodes within the budget: sequential read, the pixel
 * limit, the timeout, and shrink-on-load to maxDecodeSide (never enlarging).
 * `scale` maps decoded pixels back to the picture's: multiply a decoded coordinate by it.
 */
export function budgetedDecoder(input: Buffer, budget: DecodeBudget, size: { width: number; height: number }, failOn: 'warning' | 'truncated' = 'warning'): { pipeline: Sharp; scale: number } {
  let pipeline = sharp(input, { failOn, limitInputPixels: budget.maxImagePixels, sequentialRead: true });
  if (budget.decodeTimeoutSeconds) pipeline = pipeline.timeout({ seconds: budget.decodeTimeoutSeconds });
  pipeline = pipeline.autoOrient();
  const side = budget.maxDecodeSide ?? 0;
  const longest = Math.max(size.width, size.height);
  if (side > 0 && longest > side) {
    pipeline = pipeline.resize({ width: side, height: side, fit: 'inside', withoutEnlargement: true, fastShrinkOnLoad: true });
    return { pipeline, scale: longest / side };
  }
  return { pipeline, scale: 1 };
}

/**
 * A face found in a picture decoded at 1/`scale` of its size, in the picture's own pixels
 * (box and landmarks times `scale`): what every answer that gives coordinates must use.
 */
export function toPicturePixels<F extends { box: readonly number[]; landmarks?: readonly (readonly number[])[] }>(face: F, scale: number): F {
  if (scale === 1) return face;
  return { ...face, box: face.box.map((v) => v * scale), ...(face.landmarks ? { landmarks: face.landmarks.map((p) => p.map((v) => v * scale)) } : {}) };
}
