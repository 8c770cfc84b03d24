import type { DetectedFace } from './detect/mtcnn.js';
import type { Box, Point } from '../image/types.js';

/** A face in one processed frame. */
export interface ResultFace {
  trackId: number;
  box: Box;
  score: number;
  landmarks: Point[];
  /** Who the track's votes say this is, or null (unknown, or not yet recognised). */
  identity: { id: string; name: string; similarity: number } | null;
  age: number | null;
  gender: 'male' | 'female' | null;
}

/** A face as the pipeline keeps it: the detector's output, and the embedding when this frame recognised the track. */
export interface DetailedFace extends ResultFace {
  detection: DetectedFace;
  /** Unit-length embedding computed for this face in this frame, or null (not recognised this frame). */
  embedding: Float32Array | null;
}

/** The pipeline's output for one frame of one stream (the WebSocket pushes this object). */
export interface FrameResult {
  streamId: string;
  seq: number;
  /** Presentation time in seconds, from the stream. */
  pts: number;
  /** Epoch ms when the frame was read from ffmpeg. */
  capturedAt: number;
  /** Epoch ms when this result was complete. */
  processedAt: number;
  width: number;
  height: number;
  /** Set on the first frame after the source changed resolution (a camera switching profile): the size before. */
  sizeChangedFrom?: { width: number; height: number };
  faces: ResultFace[];
}

/** The pipeline takes frames as src/ingest delivers them. */
export type { Frame as PipelineFrame } from '../ingest/frame.js';

export type DropReason = 'stale' | 'too-old' | 'error' | 'stopped';
