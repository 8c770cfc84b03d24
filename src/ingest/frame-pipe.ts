import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { RawFrameReader } from './framer.js';

/** Pipe directories are named after the process that made them, so that stale ones can be told. */
const DIR_PREFIX = 'facestream-frames-';

/** How much one read takes out of the pipe at most (a Linux pipe holds 64 KiB). */
const READ_BUFFER_BYTES = 1 << 20;

/**
 * The named pipe (FIFO) ffmpeg writes its raw frames to, read into one reused buffer.
 *
 * Why not ffmpeg's stdout: Node reads a child's stdout into a new 64 KiB buffer per read. Four
 * 1080p streams at 25 fps are 620 MB/s, 9,500 buffers a second on the main thread, and that
 * external-memory churn made V8 run a full mark-compact every ~60 ms (about 19 a second, 15% of
 * a core in the collector, pauses of 6-28 ms: the event-loop lag). A socket opened on the FIFO
 * with `onread` reads into a buffer of ours instead: nothing is allocated per read (3 collections
 * in 10 s for the same bytes, measured).
 *
 * The pipe lives in a private directory (mode 0700) made per run and removed with it. A second
 * write end, ours, stays open until ffmpeg has opened its own (its first bytes) or is gone, so the
 * reader never sees an end of file before ffmpeg started writing.
 */
export class FramePipe {
  private socket: net.Socket | undefined;
  private keepAlive: number | undefined;
  private closed = false;

  private constructor(
    private readonly dir: string,
    /** What ffmpeg writes to (its output file). */
    readonly path: string,
    private readonly readFd: number,
    keepAlive: number,
  ) {
    this.keepAlive = keepAlive;
  }

  /**
   * Makes the FIFO and opens both ends (without blocking: the read end exists first).
   * Throws when the platform has no `mkfifo` or no named pipes; the caller then uses stdout.
   */
  static open(): FramePipe {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${DIR_PREFIX}${process.pid}-`));
    try {
      const fifo = path.join(dir, 'frames.rgb');
      execFileSync('mkfifo', ['-m', '600', fifo], { stdio: 'ignore' });
      const readFd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      let keepAlive: number;
      try {
        keepAlive = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
      } catch (err) {
        fs.closeSync(readFd);
        throw err;
      }
      return new FramePipe(dir, fifo, readFd, keepAlive);
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Feeds everything read into `reader`, pausing while it is full, and ends it at the end of file
   * (every writer gone: ffmpeg exited and `writerGone` was called, or ffmpeg wrote and exited).
   */
  readInto(reader: RawFrameReader): void {
    const onread: net.OnReadOpts = {
      buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
      callback: (bytes: number, buf: Uint8Array) => {
        // ffmpeg has its end open now: ours must not hide its exit.
        this.writerGone();
        // Returning false pauses the socket until the reader drains.
        return reader.write(Buffer.from(buf.buffer, buf.byteOffset, bytes));
      },
    };
    // net.Socket takes `onread` as net.connect does (Node >= 12), though @types/node lists it for connect only.
    const options: net.SocketConstructorOpts & { onread: net.OnReadOpts } = { fd: this.readFd, readable: true, writable: false, onread };
    const socket = new net.Socket(options);
    reader.on('drain', () => socket.resume());
    socket.once('end', () => reader.end());
    // A read error ends the frames like an end of file; ffmpeg's exit says what happened.
    socket.once('error', () => reader.end());
    this.socket = socket;
  }

  /** ffmpeg is gone (or never started): closes our write end so the reader reaches the end of file. */
  writerGone(): void {
    if (this.keepAlive === undefined) return;
    const fd = this.keepAlive;
    this.keepAlive = undefined;
    fs.close(fd, () => {});
  }

  /**
   * Removes the pipe directories of processes that are gone (a process killed with SIGKILL cannot
   * remove its own). Cheap: one listing of the temporary directory.
   */
  static sweepStale(): void {
    let names: string[];
    try {
      names = fs.readdirSync(os.tmpdir());
    } catch {
      return;
    }
    for (const name of names) {
      if (!name.startsWith(DIR_PREFIX)) continue;
      const pid = Number(name.slice(DIR_PREFIX.length).split('-')[0]);
      if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || isAlive(pid)) continue;
      fs.rm(path.join(os.tmpdir(), name), { recursive: true, force: true }, () => {});
    }
  }

  /** Closes both ends and removes the FIFO and its directory. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.writerGone();
    if (this.socket) this.socket.destroy();
    else fs.close(this.readFd, () => {});
    fs.rm(this.dir, { recursive: true, force: true }, () => {});
  }
}

/**
 * ffmpeg's stdout as the way in, for platforms without named pipes (ingest.framePipe 'stdout'):
 * a Writable that hands chunks to `reader` and holds its callback while the reader is full, so
 * the OS pipe fills and ffmpeg blocks. Ends the reader when stdout ends.
 */
export function stdoutSink(reader: RawFrameReader): Writable {
  let held: (() => void) | undefined;
  reader.on('drain', () => {
    const cb = held;
    held = undefined;
    cb?.();
  });
  return new Writable({
    // No 'close' event: fluent-ffmpeg takes its output stream's close for an error and kills
    // ffmpeg 20 ms later, which would turn a clean end under load into a failure.
    emitClose: false,
    autoDestroy: false,
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _encoding, callback) {
      if (reader.write(chunk)) callback();
      else held = () => callback();
    },
    final(callback) {
      reader.once('finish', () => callback());
      reader.end();
    },
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, someone else's.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
