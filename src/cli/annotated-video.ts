import { PassThrough } from 'node:stream';
import ffmpeg from 'fluent-ffmpeg';
import { drawAnnotationsRaw, type Annotation } from '../image/draw.js';
import type { FrameResult, PipelineFrame } from '../pipeline/result.js';

/** Boxes, names and track ids of one result, as drawing instructions. */
export function resultAnnotations(result: FrameResult): Annotation[] {
  return result.faces.map((f) => ({
    box: f.box,
    landmarks: f.landmarks,
    label: `#${f.trackId} ${f.identity ? `${f.identity.name} ${f.identity.similarity.toFixed(2)}` : 'unknown'}${f.age !== null ? ` ${f.age}${f.gender === 'male' ? 'M' : f.gender === 'female' ? 'F' : ''}` : ''}`,
    color: f.identity ? '#22c55e' : '#f59e0b',
  }));
}

/**
 * Writes annotated frames of one stream to a video file through ffmpeg (H.264, yuv420p). Frames
 * are drawn in the order written; the writer waits on ffmpeg's stdin so a slow encoder slows the
 * caller instead of buffering without bound.
 */
export class AnnotatedVideoWriter {
  private readonly input = new PassThrough({ highWaterMark: 4 });
  private readonly done: Promise<void>;
  private chain: Promise<void> = Promise.resolve();
  /** Frames written without annotations because drawing them failed (and the last reason). */
  drawFailures = 0;
  lastDrawError?: string;

  constructor(
    readonly file: string,
    readonly width: number,
    readonly height: number,
    fps: number,
  ) {
    this.done = new Promise((resolve, reject) => {
      ffmpeg()
        .input(this.input)
        .inputFormat('rawvideo')
        .inputOptions(['-pix_fmt rgb24', `-video_size ${width}x${height}`, `-framerate ${fps}`])
        .outputOptions(['-c:v libx264', '-preset veryfast', '-pix_fmt yuv420p', '-movflags +faststart'])
        .output(file)
        .on('error', (err: Error) => reject(new Error(`writing ${file} failed: ${err.message}`)))
        .on('end', () => resolve())
        .run();
    });
    // Surface encoder errors only when someone waits for the file.
    this.done.catch(() => {});
  }

  write(result: FrameResult, frame: PipelineFrame): Promise<void> {
    this.chain = this.chain.then(async () => {
      let pixels: Buffer;
      try {
        pixels = await drawAnnotationsRaw(frame, resultAnnotations(result));
      } catch (err) {
        // A frame that cannot be annotated is still written, plain: the video keeps every frame.
        this.drawFailures++;
        this.lastDrawError = err instanceof Error ? err.message : String(err);
        pixels = Buffer.from(frame.data.buffer, frame.data.byteOffset, frame.data.length);
      }
      if (!this.input.write(pixels)) await new Promise<void>((r) => this.input.once('drain', () => r()));
    });
    return this.chain;
  }

  async close(): Promise<void> {
    await this.chain;
    this.input.end();
    await this.done;
  }
}
