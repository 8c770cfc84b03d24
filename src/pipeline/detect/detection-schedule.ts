import type { Box } from '../../image/types.js';
import type { Frame } from '../../ingest/frame.js';
import { motionGrid, type MotionBackground } from '../motion/motion-mask.js';
import type { IouTracker } from '../track/tracker.js';
import type { FrameDetectRequest, FrameDetectResult } from './frame-detector.js';

/** How one stream is detected (config `detector`, overridable per stream). */
export interface DetectionPolicy {
  /** 'tracked': keyframes, tracked-face windows and motion between them; 'full': every frame, the whole picture. */
  mode: 'full' | 'tracked';
  /** Stream time between two keyframes (whole-picture searches), ms. */
  keyframeIntervalMs: number;
  /** Least frames from one keyframe to the next brought forward by motion over most of the picture (2: every other frame). */
  motionKeyframeGapFrames: number;
  /** A tracked face missed by this many frames in a row is no longer searched for between keyframes. */
  refineMaxMisses: number;
  /** Motion mask cell size (px), to size the stream's background. */
  motionCellSize: number;
}

/**
 * The per-stream side of tracked detection: when the next keyframe is due (in stream time, so a
 * file processed faster or slower than real time gets the same keyframes; and only if something
 * moved since the last one: a still scene costs no keyframes), which tracked faces to
 * look for and where they should be now, and the stream's motion background. The frames of a
 * stream in 'tracked' mode are detected one after the other: each frame's search follows the
 * tracks the previous frame left.
 */
export class StreamDetection {
  private lastKeyframeAt = -Infinity;
  /** Frames detected since the last keyframe. */
  private framesSinceKeyframe = Infinity;
  /** Whether the motion mask saw any change since the last keyframe: a still picture needs no new keyframe. */
  private movedSinceKeyframe = true;
  private background: MotionBackground | undefined;
  private size = '';

  constructor(readonly policy: DetectionPolicy) {}

  /** Stream time of a frame in ms: its timestamp when it has one, else its capture time. */
  static timeOf(frame: Pick<Frame, 'pts' | 'capturedAt'>): number {
    return Number.isFinite(frame.pts) ? frame.pts * 1000 : frame.capturedAt;
  }

  /** The detection request for `frame`, given the stream's tracker after the previous frame. */
  request(frame: Frame, tracker: IouTracker, minFaceSize: number): FrameDetectRequest {
    if (this.policy.mode === 'full') return { frame, minFaceSize, mode: 'full', keyframe: true, motionMayKeyframe: false, tracks: [] };
    const size = `${frame.width}x${frame.height}`;
    if (size !== this.size) {
      // A new stream, or the camera changed resolution: start over with a keyframe.
      const { cols, rows } = motionGrid(frame.width, frame.height, this.policy.motionCellSize);
      this.background = { cells: new Float32Array(new SharedArrayBuffer(cols * rows * 4)), fresh: true };
      this.size = size;
      this.lastKeyframeAt = -Infinity;
      this.framesSinceKeyframe = Infinity;
      this.movedSinceKeyframe = true;
    }
    const now = StreamDetection.timeOf(frame);
    // A timeline that jumps back (a reconnect, a looped file) restarts the interval.
    if (now < this.lastKeyframeAt) {
      this.lastKeyframeAt = -Infinity;
      this.framesSinceKeyframe = Infinity;
      this.movedSinceKeyframe = true;
    }
    const since = now - this.lastKeyframeAt;
    // The request carries its own flag: whichever thread detects this frame starts the background.
    const motion = this.background && { cells: this.background.cells, fresh: this.background.fresh };
    if (this.background) this.background.fresh = false;
    const tracks: Box[] = tracker.active.filter((t) => frame.seq - t.lastSeq <= this.policy.refineMaxMisses).map((t) => t.predict(frame.seq));
    return {
      frame,
      minFaceSize,
      mode: 'tracked',
      keyframe: since >= this.policy.keyframeIntervalMs && this.movedSinceKeyframe,
      motionMayKeyframe: this.framesSinceKeyframe + 1 >= this.policy.motionKeyframeGapFrames,
      tracks,
      motion,
    };
  }

  /** Notes what the frame got (a keyframe restarts the interval) and whether anything moved. */
  done(frame: Frame, result: FrameDetectResult): void {
    if (result.runs.some((r) => r.kind === 'full')) {
      this.lastKeyframeAt = StreamDetection.timeOf(frame);
      this.framesSinceKeyframe = 0;
      this.movedSinceKeyframe = false;
    } else {
      this.framesSinceKeyframe++;
    }
    if (result.motionShare > 0) this.movedSinceKeyframe = true;
  }
}
