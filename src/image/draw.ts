import sharp from 'sharp';
import { displayText } from '../identity-name.js';
import type { Box, Point, RgbImage } from './types.js';

export interface Annotation {
  box: Box;
  landmarks?: Point[];
  /** Text drawn above the box, e.g. a name and similarity, or a track id. */
  label?: string;
  /** CSS colour; default green for labelled, amber for unlabelled faces. */
  color?: string;
}

/** Escapes text for SVG after replacing what no label may hold (controls, bidi overrides: see displayText). */
const escapeXml = (s: string): string => displayText(s).replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);

/** An SVG overlay the size of the picture with boxes, landmarks and labels. */
export function annotationSvg(width: number, height: number, annotations: readonly Annotation[]): string {
  const stroke = Math.max(2, Math.round(Math.min(width, height) / 300));
  const font = Math.max(12, Math.round(Math.min(width, height) / 40));
  const parts = annotations.map((a) => {
    const [x1, y1, x2, y2] = a.box;
    const color = a.color ?? (a.label ? '#22c55e' : '#f59e0b');
    const shapes = [`<rect x="${x1.toFixed(1)}" y="${y1.toFixed(1)}" width="${(x2 - x1).toFixed(1)}" height="${(y2 - y1).toFixed(1)}" fill="none" stroke="${color}" stroke-width="${stroke}"/>`];
    for (const [px, py] of a.landmarks ?? []) shapes.push(`<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="${stroke + 1}" fill="${color}"/>`);
    if (a.label) {
      const ty = y1 - stroke * 2 > font ? y1 - stroke * 2 : y2 + font + stroke;
      shapes.push(
        `<text x="${x1.toFixed(1)}" y="${ty.toFixed(1)}" font-family="DejaVu Sans, sans-serif" font-size="${font}" fill="${color}" stroke="black" stroke-width="${Math.max(1, stroke / 2)}" paint-order="stroke">${escapeXml(a.label)}</text>`,
      );
    }
    return shapes.join('');
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${parts.join('')}</svg>`;
}

/** Draws annotations onto the picture and encodes it (PNG or JPEG by `format`). */
export async function drawAnnotations(image: RgbImage, annotations: readonly Annotation[], format: 'png' | 'jpeg' = 'png'): Promise<Buffer> {
  const base = sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.length), { raw: { width: image.width, height: image.height, channels: 3 } });
  const svg = Buffer.from(annotationSvg(image.width, image.height, annotations));
  const composed = base.composite([{ input: svg, top: 0, left: 0 }]);
  return format === 'png' ? composed.png().toBuffer() : composed.jpeg({ quality: 85 }).toBuffer();
}

/** Same as drawAnnotations but returns raw RGB, for writing annotated video frames. */
export async function drawAnnotationsRaw(image: RgbImage, annotations: readonly Annotation[]): Promise<Buffer> {
  const base = sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.length), { raw: { width: image.width, height: image.height, channels: 3 } });
  if (annotations.length === 0) return Buffer.from(image.data.buffer, image.data.byteOffset, image.data.length);
  return base
    .composite([{ input: Buffer.from(annotationSvg(image.width, image.height, annotations)), top: 0, left: 0 }])
    .removeAlpha()
    .raw()
    .toBuffer();
}
