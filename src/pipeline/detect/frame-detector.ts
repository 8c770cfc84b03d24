import type { Box, RgbImage } from '../../image/types.js';
import type { DetectionKind } from '../metrics.js';
import { updateMotion, type MotionBackground, type MotionParams } from '../motion/motion-mask.js';
import { wholePicture, type DetectedFace, type MtcnnDetector, type SearchRequest, type SearchWindow } from './mtcnn.js';
import { levelShares, pyramidLevels } from './pyramid.js';
import { motionWindows, pictureSearch, refineWindows, searchedShare, type TrackedSearchParams } from './search-plan.js';

/**
 * What to detect in one frame. 'full': the whole picture. 'tracked': the windows around the
 * tracked faces' predicted boxes, and the motion outside them; the whole picture when `keyframe`
 * is set or when motion covers too much of it.
 */
export interface FrameDetectRequest {
  frame: RgbImage;
  minFaceSize: number;
  mode: 'full' | 'tracked';
  /** Search the whole picture (a keyframe: measures no motion, follows no tracks). */
  keyframe: boolean;
  /** Motion over too much of the picture may turn this frame into a keyframe (not too soon after the last one). */
  motionMayKeyframe: boolean;
  /** Predicted boxes of the stream's tracked faces ('tracked' mode). */
  tracks: Box[];
  /** The stream's motion background ('tracked' mode): updated in place by this frame. */
  motion?: MotionBackground;
  /**
   * A keyframe searched on several workers at once: this request searches the whole picture on
   * share `index` of `count` of its pyramid levels only (levelShares), and its faces are merged
   * with the other shares' (keyframe-split.ts). Ignored by every other request ('full' mode,
   * frames that are not keyframes).
   */
  levelShare?: { index: number; count: number };
}

export interface FrameDetectResult {
  faces: DetectedFace[];
  /** The searches this frame got and the share of the picture each covered. */
  runs: { kind: DetectionKind; share: number }[];
  /** Share of the picture's motion cells that changed (0 without a motion mask). */
  motionShare: number;
  /** Whether motion windows would cover more than tracked.keyframeShare of the picture; undefined when motion was not measured (keyframes, 'full'). */
  wideMotion?: boolean;
}

export interface FrameDetectorParams {
  tracked: TrackedSearchParams;
  motion: MotionParams;
  /** Faces under this final score are dropped (config detector.minScore). */
  minScore: number;
  /** Pyramid scale step (config detector.scaleFactor): windows search the stream's own pyramid levels. */
  scaleFactor: number;
}

/**
 * Runs the detection a frame asked for with one MTCNN: turns each request into search windows
 * (the motion mask first, in 'tracked' mode), searches every request of the batch in one cascade
 * pass per minimum face size, and reports what was searched. The same code runs on the analysis
 * workers and, without workers, on the main thread.
 */
export class FrameDetector {
  constructor(
    private readonly detector: MtcnnDetector,
    private readonly params: FrameDetectorParams,
  ) {}

  async detect(requests: readonly FrameDetectRequest[]): Promise<FrameDetectResult[]> {
    const plans = requests.map((r) => this.plan(r));
    const results: FrameDetectResult[] = plans.map((p) => ({ faces: [], runs: p.runs, motionShare: p.motionShare, wideMotion: p.wideMotion }));
    // Frames with different minimum face sizes cannot share a pyramid.
    const groups = new Map<number, number[]>();
    requests.forEach((r, i) => {
      if (plans[i].windows.length === 0) return;
      const g = groups.get(r.minFaceSize);
      if (g) g.push(i);
      else groups.set(r.minFaceSize, [i]);
    });
    for (const [minFaceSize, members] of groups) {
      const search: SearchRequest[] = members.map((i) => ({ image: requests[i].frame, windows: plans[i].windows }));
      const found = await this.detector.searchBatch(search, { minFaceSize });
      members.forEach((i, k) => (results[i].faces = found[k].filter((f) => f.score >= this.params.minScore)));
    }
    return results;
  }

  private plan(r: FrameDetectRequest): { windows: SearchWindow[]; runs: FrameDetectResult['runs']; motionShare: number; wideMotion?: boolean } {
    const picture = r.frame;
    // Only a tracked keyframe is ever split (keyframe-split.ts): any other search of the whole
    // picture ('full' mode, wide motion) keeps every level, whatever the request says.
    const share = r.mode === 'tracked' && r.keyframe ? r.levelShare : undefined;
    const whole = (): SearchWindow => {
      if (!share) return wholePicture(picture);
      const pyramid = pyramidLevels(picture.width, picture.height, r.minFaceSize, this.params.scaleFactor);
      return { ...wholePicture(picture), levels: levelShares(pyramid, share.count)[share.index] ?? [] };
    };
    const full = () => ({ windows: [whole()], runs: [{ kind: 'full' as const, share: 1 }] });
    // Keyframes search everything and measure no motion: they need nothing of the frames before them.
    if (r.mode === 'full' || r.keyframe) return { ...full(), motionShare: 0 };
    // The background follows every frame that is not a keyframe.
    const motion = r.motion ? updateMotion(picture, r.motion, this.params.motion) : { boxes: [], changedShare: 0 };
    const search = pictureSearch(picture.width, picture.height, r.minFaceSize, this.params.scaleFactor);
    const refine = refineWindows(r.tracks, this.params.tracked, search);
    const moving = motionWindows(motion.boxes, refine, search, this.params.tracked);
    const motionCover = searchedShare(moving, picture);
    const wideMotion = r.motion ? motionCover > this.params.tracked.keyframeShare : undefined;
    const runs: FrameDetectResult['runs'] = [];
    if (refine.length) runs.push({ kind: 'refine', share: searchedShare(refine, picture) });
    if (wideMotion === true) {
      // Motion everywhere (a crowd, a moving camera, a change of light) says nothing about where
      // new faces are: search the whole picture if the schedule allows a keyframe here; the
      // stream then plans its keyframes up front while the motion stays this wide.
      if (r.motionMayKeyframe) return { ...full(), motionShare: motion.changedShare, wideMotion };
      return { windows: refine, runs, motionShare: motion.changedShare, wideMotion };
    }
    if (moving.length) runs.push({ kind: 'motion', share: motionCover });
    return { windows: [...refine, ...moving], runs, motionShare: motion.changedShare, wideMotion };
  }
}
