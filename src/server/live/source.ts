import { EventEmitter } from 'node:events';
import type { AppearanceEvent } from '../../pipeline/bus.js';
import type { Pipeline } from '../../pipeline/pipeline.js';
import type { FrameResult, PipelineFrame } from '../../pipeline/result.js';
import type { StreamChange, StreamInfo, StreamManager } from '../streams.js';
import type { EncodedFrame } from './jpeg.js';
import { FrameJpegEncoder } from './jpeg.js';

/** Who is in view on a stream now. */
export type Presence = { id: string; name: string; firstSeen: number; lastSeen: number };

/** A frame's picture, encoded on demand: null when an encoding of this stream at that size is still running. */
export interface LivePicture {
  encode(width: number, quality: number): Promise<EncodedFrame | null> | null;
}

export interface LiveSourceEvents {
  frame: [result: FrameResult, picture: LivePicture | undefined];
  appearance: [event: AppearanceEvent];
  stream: [change: StreamChange];
}

/**
 * What the WebSocket hub (and MQTT) show: results, appearance events and stream changes of every
 * camera this node serves. Embedded mode: this process's pipeline (PipelineLiveSource). Cluster
 * mode: every worker's results arriving over NATS (src/cluster/nats/remote-results.ts).
 */
export interface LiveSource extends EventEmitter<LiveSourceEvents> {
  /** Every stream, with its live state. */
  streams(): StreamInfo[];
  /** Who is in view on a stream now and its recent appearance events (undefined: not running). */
  appearances(streamId: string): { current: Presence[]; log: AppearanceEvent[] } | undefined;
  /** Viewers want pictures of these streams (null: every stream) for the next few seconds; sources that pay for pictures listen. */
  wantPictures?(streams: string[] | null): void;
  close(): void;
}

/** The embedded source: this process's pipeline and streams. */
export class PipelineLiveSource extends EventEmitter<LiveSourceEvents> implements LiveSource {
  private readonly encoder = new FrameJpegEncoder();
  private readonly detach: (() => void)[] = [];

  constructor(
    private readonly pipeline: Pipeline,
    private readonly streamManager: StreamManager,
  ) {
    super();
    this.setMaxListeners(0);
    const onFrame = (result: FrameResult, frame: PipelineFrame) => this.emit('frame', result, { encode: (w, q) => this.encoder.encode(frame, w, q) });
    const onAppearance = (event: AppearanceEvent) => this.emit('appearance', event);
    const onStream = (change: StreamChange) => this.emit('stream', change);
    pipeline.bus.on('frame', onFrame);
    pipeline.bus.on('appearance', onAppearance);
    streamManager.on('change', onStream);
    this.detach.push(
      () => pipeline.bus.off('frame', onFrame),
      () => pipeline.bus.off('appearance', onAppearance),
      () => streamManager.off('change', onStream),
    );
  }

  streams(): StreamInfo[] {
    return this.streamManager.list();
  }

  appearances(streamId: string): { current: Presence[]; log: AppearanceEvent[] } | undefined {
    const a = this.pipeline.appearances(streamId);
    return a && { current: a.current(), log: a.log };
  }

  close(): void {
    for (const f of this.detach) f();
    this.detach.length = 0;
  }
}
