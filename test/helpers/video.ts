import { spawnSync } from 'node:child_process';
import type { RgbImage } from '../../src/image/types.js';

/** Every frame of a video as RGB, decoded exactly as the reference was: `ffmpeg -i FILE -f rawvideo -pix_fmt rgb24 -`. */
export function decodeVideoFrames(file: string, width: number, height: number): RgbImage[] {
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', file, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 2 ** 31 });
  if (r.status !== 0) throw new Error(`ffmpeg failed on ${file}: ${r.stderr?.toString()}`);
  const size = width * height * 3;
  const frames: RgbImage[] = [];
  for (let off = 0; off + size <= r.stdout.length; off += size) frames.push({ width, height, data: r.stdout.subarray(off, off + size) });
  return frames;
}
