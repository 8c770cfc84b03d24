import { Writable } from 'node:stream';

/** What ffmpeg said about one output frame (its showinfo line), in output order. */
export interface FrameInfo {
  /** showinfo's frame counter. */
  n: number;
  /** Seconds; NaN when the frame had no timestamp. */
  pts: number;
  width: number;
  height: number;
}

export interface RawFrame {
  info: FrameInfo;
  /** Exactly width * height * 3 bytes, a buffer of its own. */
  data: Buffer;
  /** Epoch ms when the chunk holding the frame's last byte was read. */
  capturedAt: number;
}

// ffmpeg >= 5: "n:   0 pts:  10118 pts_time:0.844011 ... s:640x360 ..." (pts may read NOPTS).
const SHOWINFO = /\bn:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)\s+pts_time:\s*(\S+).*?\bs:(\d+)x(\d+)/;

/** Parses a showinfo frame line; undefined for every other line (including its second, colour line). */
export function parseShowinfo(line: string): FrameInfo | undefined {
  if (!line.includes('Parsed_showinfo')) return undefined;
  const m = SHOWINFO.exec(line);
  if (!m) return undefined;
  const pts = Number(m[3]);
  return { n: Number(m[1]), pts: Number.isFinite(pts) ? pts : NaN, width: Number(m[4]), height: Number(m[5]) };
}

/**
 * Cuts ffmpeg's raw RGB24 byte stream into frames. Sizes come from the frames' own showinfo lines
 * (stderr), matched in order, so framing is exact even if the size changes mid-stream; bytes that
 * arrive before their line (stdout and stderr are separate pipes) wait for it.
 *
 * Back-pressure: while paused, or while bytes wait for their line, the write callback is held;
 * the pipe from ffmpeg's stdout then stops reading, the OS pipe fills and ffmpeg blocks on write.
 */
export class RawFrameReader extends Writable {
  private readonly chunks: { buf: Buffer; at: number }[] = [];
  private offset = 0; // into chunks[0]
  private readonly infos: FrameInfo[] = [];
  private current: { info: FrameInfo; data: Buffer; filled: number } | undefined;
  private pendingCallback: ((err?: Error | null) => void) | undefined;
  private paused = false;
  private discarding = false;
  private draining = false;
  /** Bytes received in total. */
  bytesRead = 0;

  constructor(private readonly onFrame: (frame: RawFrame) => void) {
    // A small buffer above the held callback: the OS pipe (64 KiB) is what makes ffmpeg wait.
    // No 'close' event: fluent-ffmpeg takes its output stream's close for an error and kills
    // ffmpeg 20 ms later, which would turn a clean end under load into a failure.
    super({ highWaterMark: 64 * 1024, emitClose: false, autoDestroy: false });
  }

  /** A showinfo line for the next frame in output order. */
  pushInfo(info: FrameInfo): void {
    if (this.discarding) return;
    this.infos.push(info);
    this.drain();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.drain();
  }

  /** Drops everything from now on (stop: ffmpeg must never block on a pipe nobody reads). */
  discard(): void {
    this.discarding = true;
    this.chunks.length = 0;
    this.infos.length = 0;
    this.current = undefined;
    this.release();
  }

  /** Bytes of a frame begun but not completed (what a cut-off stream left behind). */
  get partialBytes(): number {
    let n = this.current?.filled ?? 0;
    for (let i = 0; i < this.chunks.length; i++) n += this.chunks[i].buf.length - (i === 0 ? this.offset : 0);
    return n;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.bytesRead += chunk.length;
    if (this.discarding) return callback();
    this.chunks.push({ buf: chunk, at: Date.now() });
    this.pendingCallback = callback;
    this.drain();
  }

  private release(): void {
    const cb = this.pendingCallback;
    this.pendingCallback = undefined;
    cb?.();
  }

  private drain(): void {
    // A 'frame' listener may call pause() or resume(): the flag makes the loop re-entrant-safe.
    if (this.draining) return;
    this.draining = true;
    try {
      while (!this.paused && !this.discarding && this.chunks.length) {
        if (!this.current) {
          const info = this.infos.shift();
          if (!info) break; // bytes before their showinfo line: wait for it
          // Shared memory: the analysis workers read the frame where it is, without a copy.
          this.current = { info, data: Buffer.from(new SharedArrayBuffer(info.width * info.height * 3)), filled: 0 };
        }
        const cur = this.current;
        const head = this.chunks[0];
        const n = Math.min(cur.data.length - cur.filled, head.buf.length - this.offset);
        head.buf.copy(cur.data, cur.filled, this.offset, this.offset + n);
        cur.filled += n;
        this.offset += n;
        if (this.offset === head.buf.length) {
          this.chunks.shift();
          this.offset = 0;
        }
        if (cur.filled === cur.data.length) {
          this.current = undefined;
          this.onFrame({ info: cur.info, data: cur.data, capturedAt: head.at });
        }
      }
    } finally {
      this.draining = false;
    }
    if (!this.chunks.length) this.release();
  }
}
