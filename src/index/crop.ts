import sharp from 'sharp';
import type { CropStorageConfig } from '../config/sections/gallery.js';
import { decodeImage } from '../image/decode.js';
import type { Box, Point, RgbImage } from '../image/types.js';
import type { FaceGeometry } from '../pipeline/align/crop.js';
import type { StoredCrop } from './store.js';

/**
 * The face crop stored with each template: a square around the detector box, `margin` times its
 * longer side, resized to `size`, with the box and landmarks given in crop pixels. It is not
 * rotated, so both kinds of manifest crop rule (landmark similarity and enlarged box) can be
 * applied to it later exactly as to the original picture: that is what `gallery reindex` does.
 * Parts of the square outside the picture are black, as the embedders' own warps pad them.
 */
export async function canonicalCrop(image: RgbImage, face: FaceGeometry, cfg: CropStorageConfig): Promise<StoredCrop> {
  const [x1, y1, x2, y2] = face.box;
  const side = Math.max(x2 - x1, y2 - y1) * cfg.margin;
  const cx = (x1 + x2) / 2;
  const cy = (y1 + y2) / 2;
  // The square in picture pixels, then its part inside the picture (whole pixels).
  const sx0 = cx - side / 2;
  const sy0 = cy - side / 2;
  const ix0 = Math.max(0, Math.floor(sx0));
  const iy0 = Math.max(0, Math.floor(sy0));
  const ix1 = Math.min(image.width, Math.ceil(sx0 + side));
  const iy1 = Math.min(image.height, Math.ceil(sy0 + side));
  const scale = cfg.size / side;
  const inW = Math.max(1, ix1 - ix0);
  const inH = Math.max(1, iy1 - iy0);
  const outW = Math.max(1, Math.min(cfg.size, Math.round(inW * scale)));
  const outH = Math.max(1, Math.min(cfg.size, Math.round(inH * scale)));
  const left = Math.max(0, Math.min(cfg.size - outW, Math.round((ix0 - sx0) * scale)));
  const top = Math.max(0, Math.min(cfg.size - outH, Math.round((iy0 - sy0) * scale)));
  let pipeline = sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), { raw: { width: image.width, height: image.height, channels: 3 } })
    .extract({ left: ix0, top: iy0, width: inW, height: inH })
    .resize(outW, outH, { fit: 'fill', kernel: 'lanczos3' })
    .extend({ left, top, right: cfg.size - outW - left, bottom: cfg.size - outH - top, background: { r: 0, g: 0, b: 0 } });
  pipeline = cfg.format === 'png' ? pipeline.png() : pipeline.jpeg({ quality: cfg.quality, chromaSubsampling: '4:4:4' });
  const data = await pipeline.toBuffer();
  // Picture x maps to crop x as: left + (x - ix0 + 0.5) * sxActual - 0.5 (pixel centres), same for y.
  const kx = outW / inW;
  const ky = outH / inH;
  const mapX = (x: number) => left + (x - ix0 + 0.5) * kx - 0.5;
  const mapY = (y: number) => top + (y - iy0 + 0.5) * ky - 0.5;
  const box: Box = [mapX(x1), mapY(y1), mapX(x2), mapY(y2)];
  const landmarks: Point[] = face.landmarks.map(([x, y]) => [mapX(x), mapY(y)]);
  return { data, format: cfg.format, geometry: { box, landmarks } };
}

/** A stored crop as a picture plus the face in it, ready for any embedder. */
export async function decodeCrop(crop: StoredCrop): Promise<{ image: RgbImage; face: FaceGeometry }> {
  // Crops may come from an import (untrusted): stored ones are a few hundred pixels square.
  const image = await decodeImage(crop.data, { maxImagePixels: 4096 * 4096, maxImageBytes: 16 * 1024 * 1024 }, 'stored crop');
  return { image, face: { box: crop.geometry.box, landmarks: crop.geometry.landmarks } };
}
