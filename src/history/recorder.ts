import type { DetailedFace, FrameResult, PipelineFrame } from '../pipeline/result.js';
import { geometricQuality, offerCandidate, type Candidate } from './best-face.js';

/** An appearance still going on: one track of one stream, from its first frame. */
export interface OpenAppearance {
  id: number;
  streamId: string;
  trackId: number;
  startedAt: number;
  lastSeenAt: number;
  /** The stream's processed-frame count when the track was last seen. */
  lastSeenFrame: number;
  /** Wall clock of the last sighting (ends appearances of stalled streams). */
  lastSeenWall: number;
  frames: number;
  /** The latest identity the track's vote showed (null: never recognised). */
  identity: { id: string; name: string } | null;
  /** Best similarity seen per identity id. */
  similarity: Map<string, number>;
  /** Best faces so far by geometric quality, best first. */
  candidates: Candidate[];
  /** The embedding of the best-quality face the pipeline embedded, if any. */
  embedding: { quality: number; vector: Float32Array } | null;
  /** Its id went out in a live event (WebSocket, MQTT): it is stored however short it stays, so the URLs sent resolve. */
  announced: boolean;
}

export interface RecorderOptions {
  /** Candidate faces kept per appearance. */
  candidates: number;
  /** Processed frames without the track after which the appearance ends. */
  endAfterFrames: number;
  /** Wall-clock ms without the track after which the appearance ends. */
  endAfterMs: number;
}

interface StreamState {
  frames: number;
  open: Map<number, OpenAppearance>;
}

/**
 * Follows tracks on the pipeline's frame events and turns each into an appearance: when a track
 * is first seen it opens one (with a new id), every frame updates its identity, frame count and
 * best faces, and when the track has not been seen for a while (or its stream stops) the
 * appearance is handed to `onEnd`. Only references are kept: no pixel is copied or examined here.
 */
export class AppearanceRecorder {
  private readonly streams = new Map<string, StreamState>();

  constructor(
    private readonly options: RecorderOptions,
    private nextId: number,
    private readonly onEnd: (a: OpenAppearance) => void,
    private readonly onOpen: (a: OpenAppearance) => void = () => {},
  ) {}

  /** Appearances going on now (all streams). */
  open(): OpenAppearance[] {
    return [...this.streams.values()].flatMap((s) => [...s.open.values()]);
  }

  find(id: number): OpenAppearance | undefined {
    for (const s of this.streams.values()) for (const a of s.open.values()) if (a.id === id) return a;
    return undefined;
  }

  byTrack(streamId: string, trackId: number): OpenAppearance | undefined {
    return this.streams.get(streamId)?.open.get(trackId);
  }

  private stream(id: string): StreamState {
    let s = this.streams.get(id);
    if (!s) this.streams.set(id, (s = { frames: 0, open: new Map() }));
    return s;
  }

  private openFor(s: StreamState, streamId: string, trackId: number, at: number): OpenAppearance {
    let a = s.open.get(trackId);
    if (!a) {
      a = {
        id: this.nextId++,
        streamId,
        trackId,
        startedAt: at,
        lastSeenAt: at,
        lastSeenFrame: s.frames,
        lastSeenWall: Date.now(),
        frames: 0,
        identity: null,
        similarity: new Map(),
        candidates: [],
        embedding: null,
        announced: false,
      };
      s.open.set(trackId, a);
      this.onOpen(a);
    }
    return a;
  }

  /**
   * The appearance of a track that exists now, opened ahead of its frame if need be: the pipeline
   * announces who appeared before it publishes the frame that shows them, and that event needs the id.
   */
  ensure(streamId: string, trackId: number, at = Date.now()): OpenAppearance {
    return this.openFor(this.stream(streamId), streamId, trackId, at);
  }

  onFrame(result: FrameResult, frame: PipelineFrame, faces?: DetailedFace[]): void {
    const s = this.stream(result.streamId);
    s.frames++;
    const now = Date.now();
    const image = { width: frame.width, height: frame.height, data: frame.data, capturedAt: frame.capturedAt, ...(frame.hold ? { hold: frame.hold } : {}) };
    result.faces.forEach((face, i) => {
      const a = this.openFor(s, result.streamId, face.trackId, result.capturedAt);
      if (a.frames === 0) a.startedAt = result.capturedAt;
      a.frames++;
      a.lastSeenAt = result.capturedAt;
      a.lastSeenFrame = s.frames;
      a.lastSeenWall = now;
      if (face.identity) {
        a.identity = { id: face.identity.id, name: face.identity.name };
        a.similarity.set(face.identity.id, Math.max(a.similarity.get(face.identity.id) ?? -1, face.identity.similarity));
      }
      const quality = geometricQuality(face);
      offerCandidate(a.candidates, { box: face.box, landmarks: face.landmarks, score: face.score, frame: image, quality }, this.options.candidates);
      const vector = faces?.[i]?.embedding;
      if (vector && (!a.embedding || quality >= a.embedding.quality)) a.embedding = { quality, vector };
    });
    for (const a of s.open.values()) {
      if (s.frames - a.lastSeenFrame > this.options.endAfterFrames) this.end(s, a);
    }
  }

  /** Ends appearances not seen for endAfterMs (called on a timer). */
  sweep(now = Date.now()): void {
    for (const s of this.streams.values()) for (const a of s.open.values()) if (now - a.lastSeenWall > this.options.endAfterMs) this.end(s, a);
  }

  /** The stream stopped: everything on it ends. */
  endStream(streamId: string): void {
    const s = this.streams.get(streamId);
    if (!s) return;
    for (const a of s.open.values()) this.end(s, a);
    this.streams.delete(streamId);
  }

  /** Ends every open appearance (server shutdown). */
  endAll(): void {
    for (const id of [...this.streams.keys()]) this.endStream(id);
  }

  private end(s: StreamState, a: OpenAppearance): void {
    s.open.delete(a.trackId);
    this.onEnd(a);
  }
}
