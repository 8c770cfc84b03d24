import { PassThrough } from 'node:stream';
import ffmpeg from 'fluent-ffmpeg';
import sharp from 'sharp';
import { drawAnnotationsRaw, type Annotation } from '../image/draw.js';
import { whileHeld } from '../ingest/frame-buffers.js';
import type { FrameResult, PipelineFrame } from '../pipeline/result.js';
import { matroskaHeader, MatroskaFrames } from './matroska-raw.js';

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
 * Writes annotated frames of one stream to a video file through ffmpeg (H.264, yuv420p), each at
 * its source timestamp: frames go to ffmpeg in a Matroska stream that carries them
 * (matroska-raw.ts) and are encoded with passthrough timing, so a variable-frame-rate clip keeps
 * its length and rhythm. Frames are drawn in the order written; the writer waits on ffmpeg's stdin
 * so a slow encoder slows the caller instead of buffering without bound.
 */
export class AnnotatedVideoWriter {
  private readonly input = new PassThrough({ highWaterMark: 4 });
  private readonly done: Promise<void>;
  private chain: Promise<void> = Promise.resolve();
  private readonly frames = new MatroskaFrames();
  /** Set when ffmpeg failed (an output it cannot create, a full disk): later frames are dropped. */
  private failure?: Error;
  /** Resolves with ffmpeg's failure, and never when it succeeds: callers stop early on it. */
  readonly failed: Promise<Error>;
  /** Source time (s) of the first frame: the video starts at 0. */
  private origin?: number;
  private lastMs = -Infinity;
  /** Frames written without annotations because drawing them failed (and the last reason). */
  drawFailures = 0;
  lastDrawError?: string;

  /**
   * `fps` only times frames without a usable timestamp (none, or running backwards as a looped
   * file does); `passthrough` is this ffmpeg's option for keeping timestamps (see ingest/ffmpeg.ts).
   */
  constructor(
    readonly file: string,
    readonly width: number,
    readonly height: number,
    private readonly fps: number,
    passthrough: readonly string[] = ['-fps_mode', 'passthrough'],
  ) {
    this.input.write(matroskaHeader(width, height));
    let failed!: (err: Error) => void;
    this.failed = new Promise((resolve) => (failed = resolve));
    this.done = new Promise((resolve, reject) => {
      ffmpeg()
        .input(this.input)
        .inputFormat('matroska')
        .outputOptions([...passthrough, '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-movflags', '+faststart'])
        .output(file)
        .on('error', (err: Error) => {
          this.failure = new Error(`writing ${file} failed: ${err.message.trim()}`);
          failed(this.failure);
          reject(this.failure);
        })
        .on('end', () => resolve())
        .run();
    });
    // Surface encoder errors only when someone waits for the file.
    this.done.catch(() => {});
  }

  /** Milliseconds from the first frame for a frame at `pts` seconds (source time). */
  private timestampMs(pts: number): number {
    let ms = Number.isFinite(pts) ? (pts - (this.origin ??= pts)) * 1000 : Number.NaN;
    if (!(ms > this.lastMs)) ms = this.lastMs === -Infinity ? 0 : this.lastMs + 1000 / this.fps;
    this.lastMs = ms;
    return ms;
  }

  write(result: FrameResult, frame: PipelineFrame): Promise<void> {
    // Written after the frame's listeners return: its memory must not be reused meanwhile (the
    // hold is taken now, and let go once this frame's turn in the chain is over).
    const previous = this.chain;
    this.chain = whileHeld(frame, () => previous.then(async () => {
      if (this.failure) return;
      let pixels: Uint8Array;
      try {
        pixels = await drawAnnotationsRaw(frame, resultAnnotations(result));
      } catch (err) {
        // A frame that cannot be annotated is still written, plain: the video keeps every frame.
        this.drawFailures++;
        this.lastDrawError = err instanceof Error ? err.message : String(err);
        pixels = frame.data;
      }
      // Pixels that are the frame's own (nothing drawn) are copied: ffmpeg's stdin buffers them, and
      // the writer may repeat them, after the frame's memory went to a later frame.
      if (pixels.buffer === frame.data.buffer) pixels = new Uint8Array(pixels);
      // The video keeps the size it started with: a source that changed resolution is scaled to it.
      if (frame.width !== this.width || frame.height !== this.height) {
        pixels = await sharp(Buffer.from(pixels.buffer, pixels.byteOffset, pixels.length), { raw: { width: frame.width, height: frame.height, channels: 3 } })
          .resize(this.width, this.height, { fit: 'fill' })
          .raw()
          .toBuffer();
      }
      for (const part of this.frames.frame(this.timestampMs(result.pts), pixels)) {
        // An ffmpeg that died never drains its input: waiting for it would hang the writer for good.
        if (this.failure) return;
        if (!this.input.write(part)) await new Promise<void>((r) => { this.input.once('drain', () => r()); void this.failed.then(() => r()); });
      }
    }));
    return this.chain;
  }

  async close(): Promise<void> {
    await this.chain;
    this.input.end();
    await this.done;
  }
}
