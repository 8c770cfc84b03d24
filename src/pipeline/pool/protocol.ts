import type { Manifest } from '../../models/manifest.js';
import type { RuntimeConfig } from '../../config/schema.js';
import type { AnalyzerConfig } from '../analyzer.js';
import type { FaceAttributes } from '../attributes/ssrnet.js';
import type { FrameDetectorParams, FrameDetectRequest, FrameDetectResult } from '../detect/frame-detector.js';
import type { FaceInPicture } from '../embed/embedder.js';

/** What an analysis worker is started with (workerData): plain data only. */
export interface AnalysisWorkerSetup {
  manifest: Manifest;
  modelsDir: string;
  runtime: RuntimeConfig;
  analyzer: AnalyzerConfig;
  detection: Omit<FrameDetectorParams, 'minScore' | 'scaleFactor'>;
}

/** A model run inside a worker, replayed into the host's inference observer (metrics). */
export type ModelRunRecord = [modelId: string, batch: number, ms: number];

export type AnalysisRequest =
  | { op: 'detect'; id: number; requests: FrameDetectRequest[] }
  | { op: 'embed'; id: number; items: FaceInPicture[] }
  | { op: 'attributes'; id: number; items: FaceInPicture[] }
  /** Finish the work in hand, release the sessions and exit. */
  | { op: 'close'; id: number };

export type AnalysisReply =
  | { op: 'ready'; id: 0; hasAttributes: boolean }
  | { op: 'detect'; id: number; results: FrameDetectResult[]; runs: ModelRunRecord[] }
  | { op: 'embed'; id: number; vectors: Float32Array[]; runs: ModelRunRecord[] }
  | { op: 'attributes'; id: number; attributes: FaceAttributes[]; runs: ModelRunRecord[] }
  | { op: 'error'; id: number; message: string; code?: string };
