import { EventEmitter } from 'node:events';
import { FrameBufferPool } from './frame-buffers.js';

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
  /** Exactly width * height * 3 bytes, a buffer of its own (from the reader's pool). */
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
 * arrive before their line (the frames and stderr come through separate pipes) wait for it.
 *
 * Bytes are copied into frame memory as they arrive, so the caller may reuse the buffer it wrote
 * from (frame-pipe.ts reads ffmpeg's output into one buffer, allocating nothing per read); the few
 * bytes that must wait (for their line, or while paused) are copied aside.
 *
 * Back-pressure: while paused, or while bytes wait for their line, `write` returns false; the
 * caller stops reading until 'drain', the OS pipe fills and ffmpeg blocks on write.
 *
 * Events: 'drain' (write more), 'finish' (after `end()`, once every byte written was taken).
 */
export class RawFrameReader extends EventEmitter<{ drain: []; finish: [] }> {
  private readonly waiting: { buf: Buffer; at: number }[] = [];
  private offset = 0; // into waiting[0]
  private readonly infos: FrameInfo[] = [];
  private current: { info: FrameInfo; data: Buffer; filled: number } | undefined;
  private paused = false;
  private discarding = false;
  private draining = false;
  /** write() returned false: 'drain' is owed. */
  private full = false;
  private ending = false;
  private finished = false;
  /** Bytes received in total. */
  bytesRead = 0;

  /**
   * @param onFrame called with each whole frame, in order.
   * @param buffers where frame memory comes from; give a frame's `data` back to it once nothing
   *   reads the frame any more.
   */
  constructor(
    private readonly onFrame: (frame: RawFrame) => void,
    readonly buffers: FrameBufferPool = new FrameBufferPool(),
  ) {
    super();
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

  /**
   * Takes `chunk` (never kept: the caller may reuse it once this returns). False when bytes had to
   * wait: stop writing until 'drain'.
   */
  write(chunk: Buffer): boolean {
    this.bytesRead += chunk.length;
    if (this.discarding || this.ending) return true;
    const at = Date.now();
    let pos = 0;
    if (!this.waiting.length) pos = this.take(chunk, 0, at);
    // A frame listener may have discarded (a stop): the rest is dropped, and no 'drain' is owed.
    if (pos < chunk.length && !this.discarding) {
      this.waiting.push({ buf: Buffer.from(chunk.subarray(pos)), at });
      this.full = true;
      return false;
    }
    return true;
  }

  /** No more bytes: 'finish' follows once every byte written was taken. */
  end(): void {
    this.ending = true;
    this.maybeFinish();
  }

  /** Drops everything from now on (stop: ffmpeg must never block on a pipe nobody reads). */
  discard(): void {
    this.discarding = true;
    this.waiting.length = 0;
    this.infos.length = 0;
    // Never handed out: nothing else holds it.
    if (this.current) this.buffers.give(this.current.data);
    this.current = undefined;
    this.release();
  }

  /** Bytes of a frame begun but not completed (what a cut-off stream left behind). */
  get partialBytes(): number {
    let n = this.current?.filled ?? 0;
    for (let i = 0; i < this.waiting.length; i++) n += this.waiting[i].buf.length - (i === 0 ? this.offset : 0);
    return n;
  }

  /** Copies bytes of `buf` from `pos` into frames while it can; returns where it stopped. */
  private take(buf: Buffer, pos: number, at: number): number {
    while (pos < buf.length && !this.paused && !this.discarding) {
      if (!this.current) {
        const info = this.infos.shift();
        if (!info) break; // bytes before their showinfo line: wait for it
        this.current = { info, data: this.buffers.take(info.width * info.height * 3), filled: 0 };
      }
      const cur = this.current;
      const n = Math.min(cur.data.length - cur.filled, buf.length - pos);
      buf.copy(cur.data, cur.filled, pos, pos + n);
      cur.filled += n;
      pos += n;
      if (cur.filled === cur.data.length) {
        this.current = undefined;
        this.onFrame({ info: cur.info, data: cur.data, capturedAt: at });
      }
    }
    return pos;
  }

  private release(): void {
    if (this.full) {
      this.full = false;
      this.emit('drain');
    }
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.ending && !this.finished && (this.discarding || !this.waiting.length)) {
      this.finished = true;
      this.emit('finish');
    }
  }

  private drain(): void {
    // A 'frame' listener may call pause() or resume(): the flag makes the loop re-entrant-safe.
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.waiting.length && !this.paused && !this.discarding) {
        const head = this.waiting[0];
        this.offset = this.take(head.buf, this.offset, head.at);
        if (this.offset < head.buf.length) break;
        this.waiting.shift();
        this.offset = 0;
      }
    } finally {
      this.draining = false;
    }
    if (!this.waiting.length) this.release();
  }
}
