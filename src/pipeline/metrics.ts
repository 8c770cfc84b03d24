import type { DropReason } from './result.js';

export type Stage = 'detect' | 'embed' | 'attributes' | 'match' | 'track' | 'total' | 'capture-to-result';

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
}

export const noopObserver: PipelineObserver = {
  frameReceived: () => {},
  frameProcessed: () => {},
  frameDropped: () => {},
  stage: () => {},
  batch: () => {},
  queueDepth: () => {},
  inferenceError: () => {},
};
