/**
 * Reuses model input batches from frame to frame. A 1080p frame needs ~25 MB of float batches
 * (pyramid levels, R-Net and O-Net crops, aligned faces); allocating them anew each frame made V8
 * run a full garbage collection every frame or two (external memory pressure), ~20% of the
 * JavaScript time.
 */
export class BatchBuffers {
  private readonly free: ArrayBuffer[] = [];
  private freeBytes = 0;

  /** @param maxFreeBytes buffers kept for reuse beyond this are left to the garbage collector. */
  constructor(private readonly maxFreeBytes = 128 * 2 ** 20) {}

  /** A float array of `length` (contents undefined) on a reused buffer when one fits, else a new one. */
  take(length: number): Float32Array {
    const bytes = length * 4;
    // The smallest free buffer that fits, if it is not more than twice the size asked for.
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const size = this.free[i].byteLength;
      if (size >= bytes && size <= 2 * bytes + 4096 && (best < 0 || size < this.free[best].byteLength)) best = i;
    }
    if (best < 0) return new Float32Array(length);
    const [buffer] = this.free.splice(best, 1);
    this.freeBytes -= buffer.byteLength;
    return new Float32Array(buffer, 0, length);
  }

  /** Returns arrays from `take` once nothing reads them any more. */
  give(arrays: readonly Float32Array[]): void {
    for (const a of arrays) {
      const buffer = a.buffer as ArrayBuffer;
      // A buffer moved to another thread (detached) has no memory left to reuse.
      if (buffer.byteLength === 0) continue;
      if (this.freeBytes + buffer.byteLength > this.maxFreeBytes || this.free.includes(buffer)) continue;
      this.free.push(buffer);
      this.freeBytes += buffer.byteLength;
    }
  }
}
