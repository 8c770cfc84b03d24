import sharp from 'sharp';
import { whileHeld } from '../../ingest/frame-buffers.js';
import type { PipelineFrame } from '../../pipeline/result.js';

export interface EncodedFrame {
  data: Buffer;
  width: number;
  height: number;
}

/**
 * Encodes frames to JPEG for viewers. One encoding per frame and size is shared by every client
 * that asked for that size; while an encoding of a stream at a size is still running, newer
 * frames of that stream are not encoded at that size (viewers get fewer pictures, the machine
 * does not queue JPEG work behind recognition).
 */
export class FrameJpegEncoder {
  private readonly busy = new Set<string>();
  encoded = 0;
  skipped = 0;

  /** Starts encoding, or returns null when the previous frame at this size is still being encoded. */
  encode(frame: PipelineFrame, width: number, quality: number): Promise<EncodedFrame | null> | null {
    const w = Math.max(16, Math.min(Math.round(width), frame.width));
    const key = `${frame.streamId}\0${w}\0${quality}`;
    if (this.busy.has(key)) {
      this.skipped++;
      return null;
    }
    this.busy.add(key);
    const h = Math.max(1, Math.round((frame.height * w) / frame.width));
    let img = sharp(frame.data, { raw: { width: frame.width, height: frame.height, channels: 3 } });
    if (w !== frame.width) img = img.resize(w, h, { kernel: 'linear' });
    // sharp reads the pixels on a libuv thread, after the frame's listeners have returned.
    return whileHeld(frame, () => img.jpeg({ quality, chromaSubsampling: '4:2:0' }).toBuffer())
      .then(
        (data) => {
          this.encoded++;
          return { data, width: w, height: h };
        },
        () => null,
      )
      .finally(() => this.busy.delete(key));
  }
}
