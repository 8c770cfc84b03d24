import { fileTypeFromBuffer } from 'file-type';
import { FacestreamError } from '../errors.js';

/**
 * Picture formats by their content (file-type's magic numbers), so a picture facestream cannot
 * decode is named for what it is (HEIC, BMP, PSD...) instead of with a decoder's message
 * ("bad seek", "unsupported image format"), with what is supported and how to convert.
 */

/** The formats sharp (prebuilt libvips) decodes here, by file-type's extension. HEIC is HEVC-coded: libvips' libheif has only the AV1 (AVIF) decoder. */
const DECODABLE = new Set(['jpg', 'png', 'webp', 'gif', 'tif', 'avif']);
export const SUPPORTED_PICTURE_FORMATS = 'JPEG, PNG, WebP, GIF, TIFF and AVIF';

const NAMES: Record<string, string> = {
  heic: 'a HEIC picture (HEVC-coded HEIF, as iPhones write)',
  bmp: 'a BMP picture',
  ico: 'an ICO icon',
  psd: 'a Photoshop (PSD) document',
  jxl: 'a JPEG XL picture',
  jp2: 'a JPEG 2000 picture',
  pdf: 'a PDF document',
  cr2: 'a Canon raw picture',
  nef: 'a Nikon raw picture',
  dng: 'a DNG raw picture',
  arw: 'a Sony raw picture',
  mp4: 'an MP4 video',
  mov: 'a QuickTime video',
  zip: 'a ZIP archive',
};

function convertHint(ext: string): string {
  if (ext === 'heic') return 'convert it first, e.g. `heif-convert in.heic out.jpg` (libheif) or `ffmpeg -i in.heic out.jpg` (ffmpeg 7.1+), or set the phone to save "Most Compatible" (JPEG)';
  if (ext === 'mp4' || ext === 'mov') return 'for videos use `facestream run` or a stream; to take one frame: `ffmpeg -i in.mp4 -frames:v 1 out.png`';
  if (ext === 'pdf' || ext === 'psd') return `export it as JPEG or PNG, e.g. \`convert 'in.${ext}[0]' out.png\` (ImageMagick)`;
  return `convert it first, e.g. \`ffmpeg -i in.${ext} out.png\` or \`convert in.${ext} out.png\` (ImageMagick)`;
}

/** The format of encoded bytes as file-type names it ({ ext, mime }), or undefined when unknown. */
export async function detectPictureFormat(input: Uint8Array): Promise<{ ext: string; mime: string } | undefined> {
  return fileTypeFromBuffer(input);
}

/**
 * Refuses bytes of a known format facestream cannot decode: UNSUPPORTED_MEDIA_TYPE naming the
 * format, the supported ones and a conversion. Unknown content is left to the decoder.
 */
export async function checkDecodableFormat(input: Uint8Array, name: string): Promise<void> {
  const type = await detectPictureFormat(input);
  if (!type || DECODABLE.has(type.ext)) return;
  const what = NAMES[type.ext] ?? `a ${type.ext.toUpperCase()} file (${type.mime})`;
  throw new FacestreamError('UNSUPPORTED_MEDIA_TYPE', `${name} is ${what}; facestream reads ${SUPPORTED_PICTURE_FORMATS} pictures: ${convertHint(type.ext)}`, {
    file: name,
    format: type.ext,
    mime: type.mime,
  });
}
