/** A decoded picture or video frame: 8-bit RGB, interleaved, rows top to bottom, no padding. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

export type Box = [x1: number, y1: number, x2: number, y2: number];
export type Point = [x: number, y: number];

export function rgbImage(width: number, height: number, data: Uint8Array): RgbImage {
  if (data.length !== width * height * 3) throw new Error(`RGB buffer of ${data.length} bytes does not match ${width}x${height}x3`);
  return { width, height, data };
}
