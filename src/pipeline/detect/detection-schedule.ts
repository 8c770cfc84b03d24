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
 * What a frame gets, decided when the pipeline admits it (in the stream's order):
 * - 'keyframe': the whole picture. It needs nothing of the frames before it, so its search runs at
 *   once, beside the previous frame's; only its tracking waits for theirs.
 * - 'follow': the windows around the faces the previous frame left, and the motion; its search
 *   waits for the previous frame's tracking. `motionMayKeyframe`: motion over most of the picture
 *   may still turn it into a keyframe (decided where the motion mask is computed).
 */
export type DetectionPlan = { kind: 'keyframe' } | { kind: 'follow'; motionMayKeyframe: boolean };

/**
 * The per-stream side of tracked detection: when the next keyframe is due (in stream time, so a
 * file processed faster or slower than real time gets the same keyframes; and only if something
 * moved since the last one: a still scene costs no keyframes), which tracked faces to look for
 * and where they should be now, and the stream's motion background. While motion covers most of
 * the picture (a moving camera, a crowd), every `motionKeyframeGapFrames`-th frame is planned as a
 * keyframe up front, so those keyframes need not wait for the frames before them.
 */
export class StreamDetection {
  private lastKeyframeAt = -Infinity;
  /** Frames admitted since the last keyframe. */
  private framesSinceKeyframe = Infinity;
  /** Whether the motion mask saw any change since the last keyframe: a still picture needs no new keyframe. */
  private movedSinceKeyframe = true;
  /** Whether the last frame whose motion was measured had motion over most of the picture. */
  private wideMotion = false;
  private background: MotionBackground | undefined;
  private size = '';

  constructor(readonly policy: DetectionPolicy) {}

  /** Stream time of a frame in ms: its timestamp when it has one, else its capture time. */
  static timeOf(frame: Pick<Frame, 'pts' | 'capturedAt'>): number {
    return Number.isFinite(frame.pts) ? frame.pts * 1000 : frame.capturedAt;
  }

  /** Plans `frame`: call once per frame, in the stream's order, when the frame is admitted. */
  admit(frame: Frame): DetectionPlan {
    if (this.policy.mode === 'full') return { kind: 'keyframe' };
    const size = `${frame.width}x${frame.height}`;
    if (size !== this.size) {
      // A new stream, or the camera changed resolution: start over with a keyframe.
      const { cols, rows } = motionGrid(frame.width, frame.height, this.policy.motionCellSize);
      this.background = { cells: new Float32Array(new SharedArrayBuffer(cols * rows * 4)), fresh: true };
      this.size = size;
      this.restart();
    }
    const now = StreamDetection.timeOf(frame);
    // A timeline that jumps back (a reconnect, a looped file) restarts the interval.
    if (now < this.lastKeyframeAt) this.restart();
    const due = now - this.lastKeyframeAt >= this.policy.keyframeIntervalMs && this.movedSinceKeyframe;
    const gapPassed = this.framesSinceKeyframe + 1 >= this.policy.motionKeyframeGapFrames;
    if (due || (this.wideMotion && gapPassed)) {
      this.lastKeyframeAt = now;
      this.framesSinceKeyframe = 0;
      this.movedSinceKeyframe = false;
      return { kind: 'keyframe' };
    }
    this.framesSinceKeyframe++;
    return { kind: 'follow', motionMayKeyframe: gapPassed && !this.wideMotion };
  }

  private restart(): void {
    this.lastKeyframeAt = -Infinity;
    this.framesSinceKeyframe = Infinity;
    this.movedSinceKeyframe = true;
    this.wideMotion = false;
  }

  /**
   * The detection request for an admitted frame. A 'follow' frame is built after the previous
   * frame's tracking (its windows follow the tracker's predictions) and carries the motion
   * background; a keyframe carries neither, so it may run beside the frame before it.
   */
  request(frame: Frame, plan: DetectionPlan, tracker: IouTracker, minFaceSize: number): FrameDetectRequest {
    if (this.policy.mode === 'full') return { frame, minFaceSize, mode: 'full', keyframe: true, motionMayKeyframe: false, tracks: [] };
    if (plan.kind === 'keyframe') return { frame, minFaceSize, mode: 'tracked', keyframe: true, motionMayKeyframe: false, tracks: [] };
    // The request carries its own flag: whichever thread detects this frame starts the background.
    const motion = this.background && { cells: this.background.cells, fresh: this.background.fresh };
    if (this.background) this.background.fresh = false;
    const tracks: Box[] = tracker.active.filter((t) => frame.seq - t.lastSeq <= this.policy.refineMaxMisses).map((t) => t.predict(frame.seq));
    return { frame, minFaceSize, mode: 'tracked', keyframe: false, motionMayKeyframe: plan.motionMayKeyframe, tracks, motion };
  }

  /** Notes what a frame's detection found: motion since the last keyframe, and how wide it was. */
  done(frame: Frame, result: FrameDetectResult): void {
    if (result.wideMotion === undefined) return;
    this.wideMotion = result.wideMotion;
    if (result.runs.some((r) => r.kind === 'full')) {
      // Motion made this follow frame a keyframe.
      this.lastKeyframeAt = Math.max(this.lastKeyframeAt, StreamDetection.timeOf(frame));
      this.framesSinceKeyframe = 0;
      this.movedSinceKeyframe = false;
    } else if (result.motionShare > 0) {
      this.movedSinceKeyframe = true;
    }
  }
}
