import { spawnSync } from 'node:child_process';
import type { RgbImage } from '../image/types.js';

/**
 * Every frame of a video as RGB, decoded as the MTCNN reference was (`ffmpeg -i FILE -f rawvideo
 * -pix_fmt rgb24 -`): width x height must be the video's size, or with `scale` the size ffmpeg
 * scales each frame to. For evaluations, tests and benchmarks: the whole clip is held in memory.
 * Throws when ffmpeg fails.
 */
export function decodeVideoFrames(file: string, width: number, height: number, opts: { scale?: boolean } = {}): RgbImage[] {
  const filter = opts.scale ? ['-vf', `scale=${width}:${height}`] : [];
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', file, ...filter, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 2 ** 31 });
  if (r.status !== 0) throw new Error(`ffmpeg failed on ${file}: ${r.stderr?.toString()}`);
  const size = width * height * 3;
  const frames: RgbImage[] = [];
  for (let off = 0; off + size <= r.stdout.length; off += size) frames.push({ width, height, data: r.stdout.subarray(off, off + size) });
  return frames;
}
