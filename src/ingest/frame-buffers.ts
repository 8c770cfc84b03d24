/**
 * The memory of one source's frames, reused. A 1080p RGB frame is 6 MB; a source at 25 fps that
 * allocated a new one per frame made V8 run a full (mark-compact) collection every ~60 ms on the
 * main thread, from external-memory pressure alone, with 4 such streams: pauses of 6-28 ms, the
 * event-loop lag of `npm run bench -- streams`. Under overload most frames are dropped unread,
 * so their memory can serve the next frame instead.
 *
 * Buffers are SharedArrayBuffer-backed: the analysis workers read a frame where it is.
 */
export class FrameBufferPool {
  private readonly free: Buffer[] = [];
  /** Buffers allocated so far (a frame that found no free buffer of its size). */
  allocated = 0;
  /** Frames that got a buffer given back earlier. */
  reused = 0;

  /** @param keep free buffers held at most; more are left to the garbage collector. */
  constructor(private readonly keep = 4) {}

  /** A buffer of exactly `bytes` bytes, reused when one was given back; its content is stale. */
  take(bytes: number): Buffer {
    const buf = this.free.pop();
    if (buf && buf.length === bytes) {
      this.reused++;
      return buf;
    }
    // A size change (a camera switching profile) makes every free buffer useless.
    if (buf) this.free.length = 0;
    this.allocated++;
    return Buffer.from(new SharedArrayBuffer(bytes));
  }

  /**
   * Takes `buf` back for a later frame. Only for memory nothing reads any more: the next frame
   * overwrites it.
   */
  give(buf: Buffer): void {
    if (this.free.length >= this.keep) return;
    if (this.free.length && this.free[0].length !== buf.length) this.free.length = 0;
    this.free.push(buf);
  }
}

/** The references a frame's receivers have to its memory (Frame.release and Frame.hold). */
export interface FrameReferences {
  /** The receiver's own reference; a second call does nothing. */
  release: () => void;
  /** One more reference, for a reader that keeps the pixels longer; returns its own release. */
  hold: () => () => void;
}

/**
 * Counts the references to one frame's memory: it goes back to `pool` when the receiver and every
 * holder have released it. A hold taken after that is a bug (the memory may already show another
 * frame) and throws.
 */
export function frameReferences(pool: FrameBufferPool, data: Buffer): FrameReferences {
  let count = 1;
  const reference = () => {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--count === 0) pool.give(data);
    };
  };
  return {
    release: reference(),
    hold: () => {
      if (count === 0) throw new Error('frame memory held after its last release: it may already hold a later frame');
      count++;
      return reference();
    },
  };
}

/**
 * Runs `read` with `frame`'s memory held (Frame.hold) until its promise settles: for a reader
 * that awaits while it reads the pixels (sharp, an embedding), so that the memory cannot go to a
 * later frame meanwhile. The hold is taken at the call, before anything is awaited. Frames without
 * `hold` (decoded pictures, frames of a source with several receivers) are read as they are.
 */
export async function whileHeld<T>(frame: { hold?: () => () => void }, read: () => Promise<T>): Promise<T> {
  const release = frame.hold?.();
  try {
    return await read();
  } finally {
    release?.();
  }
}
