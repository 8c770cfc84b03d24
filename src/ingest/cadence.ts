/**
 * How often a live source delivers frames, measured, so that timeouts follow the camera instead
 * of a fixed guess: a camera that sends one frame every 8 s (a doorbell, a time-lapse profile, a
 * trail camera) is not stalled at 5 s. The stall watchdog and ffmpeg's network I/O timeout are
 * three typical intervals, never less than configured.
 *
 * Times are given by the caller (epoch ms of each frame; the gap of a connection that ended
 * without its next frame), so the policy is tested without waiting.
 */
export class FrameCadence {
  private last?: number;
  private readonly intervals: number[] = [];
  /** The longest wait for a next frame that ended a connection: the interval is at least this. */
  private atLeastMs = 0;

  constructor(private readonly keep = 16) {}

  /** A frame arrived at `atMs`; `sameConnection` is false for a connection's first frame (a reconnect's gap is no interval). */
  frame(atMs: number, sameConnection: boolean): void {
    if (sameConnection && this.last !== undefined && atMs >= this.last) {
      const interval = atMs - this.last;
      this.intervals.push(interval);
      if (this.intervals.length > this.keep) this.intervals.shift();
      // Frames closer than the wait that ended a connection: that wait was an outage, not the cadence.
      if (interval < this.atLeastMs) this.atLeastMs = 0;
    }
    this.last = atMs;
  }

  /** A connection ended `gapMs` after its last frame without delivering the next one: frames come at least that far apart, or the source is gone. */
  endedWaiting(gapMs: number): void {
    this.atLeastMs = Math.max(this.atLeastMs, gapMs);
  }

  /** The typical interval between frames (median of the recent ones, and no less than a wait that ended a connection), or undefined before any is known. */
  get intervalMs(): number | undefined {
    if (this.intervals.length === 0) return this.atLeastMs || undefined;
    const sorted = [...this.intervals].sort((a, b) => a - b);
    return Math.max(sorted[sorted.length >> 1], this.atLeastMs);
  }

  /** A timeout that follows the cadence: three typical intervals, never under `configuredMs`. */
  timeoutMs(configuredMs: number): number {
    const interval = this.intervalMs;
    return interval === undefined ? configuredMs : Math.max(configuredMs, Math.ceil(3 * interval));
  }
}
