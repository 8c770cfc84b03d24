import type { FaceAnalyzer } from '../analyzer.js';
import type { FaceAttributes } from '../attributes/ssrnet.js';
import { FrameDetector, type FrameDetectorParams, type FrameDetectRequest, type FrameDetectResult } from '../detect/frame-detector.js';
import type { FaceInPicture } from '../embed/embedder.js';

/**
 * The model work of the live pipeline: detection as each frame asks for it, embeddings and
 * age/gender of faces. Two implementations: the analysis workers (AnalysisPool, every core busy,
 * the main thread free) and the main thread's own analyzer (LocalFrameAnalysis, workers off).
 */
export interface FrameAnalysis {
  /** Batches that can run at the same time (the batchers dispatch up to this many). */
  readonly concurrency: number;
  readonly hasAttributes: boolean;
  /** Resolves once the models are loaded (rejects if they cannot be). */
  ready(): Promise<void>;
  detect(requests: readonly FrameDetectRequest[]): Promise<FrameDetectResult[]>;
  embed(items: readonly FaceInPicture[]): Promise<Float32Array[]>;
  attributes(items: readonly FaceInPicture[]): Promise<FaceAttributes[]>;
  close(): Promise<void>;
}

/** Frame analysis with the process's own FaceAnalyzer (models on its inference thread, JavaScript on the main thread). */
export class LocalFrameAnalysis implements FrameAnalysis {
  readonly concurrency = 1;
  private readonly detector: FrameDetector;

  constructor(
    private readonly analyzer: FaceAnalyzer,
    params: Omit<FrameDetectorParams, 'minScore' | 'scaleFactor'>,
  ) {
    this.detector = new FrameDetector(analyzer.detector, { ...params, minScore: analyzer.minScore, scaleFactor: analyzer.detector.options.scaleFactor });
  }

  get hasAttributes(): boolean {
    return this.analyzer.attributes !== undefined;
  }

  async ready(): Promise<void> {}

  detect(requests: readonly FrameDetectRequest[]): Promise<FrameDetectResult[]> {
    return this.detector.detect(requests);
  }

  embed(items: readonly FaceInPicture[]): Promise<Float32Array[]> {
    return this.analyzer.embedder.embedFaces(items);
  }

  attributes(items: readonly FaceInPicture[]): Promise<FaceAttributes[]> {
    if (!this.analyzer.attributes) return Promise.reject(new Error('age/gender estimation is off'));
    return this.analyzer.attributes.estimate(items);
  }

  async close(): Promise<void> {}
}
