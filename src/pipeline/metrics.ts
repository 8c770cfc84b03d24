import type { DropReason } from './result.js';

export type Stage = 'detect' | 'embed' | 'attributes' | 'match' | 'track' | 'total' | 'capture-to-result';

/**
 * What one detection run searched (src/pipeline/detect/plan.ts): 'full' the whole picture (a
 * keyframe, or every frame in `full` mode), 'motion' P-Net over the regions where the motion mask
 * changed outside every tracked face, 'refine' the small windows around tracked faces.
 */
export type DetectionKind = 'full' | 'motion' | 'refine';

/**
 * What the pipeline reports as it works. The server implements it with prom-client; the default
 * does nothing, so the pipeline has no metrics dependency.
 */
export interface PipelineObserver {
  frameReceived(streamId: string): void;
  frameProcessed(streamId: string, faces: number): void;
  frameDropped(streamId: string, reason: DropReason): void;
  stage(stage: Stage, ms: number): void;
  batch(model: 'detect' | 'embed' | 'attributes', size: number, queueMs: number, runMs: number): void;
  queueDepth(queue: string, depth: number): void;
  inferenceError(stage: string): void;
  /**
   * One detection run of `kind` on a frame of `streamId`; `searchedShare` is the share of the
   * frame's pixels P-Net searched in it (1 for 'full'; the regions' or windows' area over the frame's).
   */
  detectionRun(streamId: string, kind: DetectionKind, searchedShare: number): void;
}

export const noopObserver: PipelineObserver = {
  frameReceived: () => {},
  frameProcessed: () => {},
  frameDropped: () => {},
  stage: () => {},
  batch: () => {},
  queueDepth: () => {},
  inferenceError: () => {},
  detectionRun: () => {},
};
