import { EventEmitter } from 'node:events';
import type { DetailedFace, DropReason, FrameResult, PipelineFrame } from './result.js';

export interface AppearanceEvent {
  type: 'appeared' | 'left';
  streamId: string;
  identity: { id: string; name: string };
  /** Epoch ms of the first sighting in this appearance. */
  firstSeen: number;
  /** Epoch ms of the latest sighting (for 'left': the last one). */
  lastSeen: number;
  trackIds: number[];
}

export interface PipelineEvents {
  /**
   * One processed frame; `frame` holds its pixels for viewers that want them (do not change it),
   * `faces` the same faces with their detections and this frame's embeddings (src/history).
   */
  frame: [result: FrameResult, frame: PipelineFrame, faces?: DetailedFace[]];
  appearance: [event: AppearanceEvent];
  dropped: [info: { streamId: string; seq: number; reason: DropReason }];
  'stream-added': [streamId: string];
  'stream-removed': [streamId: string];
}

/** The in-process event bus the server (and the CLI) subscribe to. */
export class PipelineBus extends EventEmitter<PipelineEvents> {
  constructor() {
    super();
    // Every WebSocket client and metric collector may listen; the default of 10 is not a leak signal here.
    this.setMaxListeners(0);
  }
}
