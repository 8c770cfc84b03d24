import type { Box, Point } from '../../image/types.js';
import { iou } from '../detect/boxes.js';

export interface TrackerOptions {
  /** Minimum IoU between a track's predicted box and a detection to continue the track. */
  iouThreshold: number;
  /** A track not seen for more than this many frames ends. */
  maxMisses: number;
}

export interface Detection {
  box: Box;
  score: number;
  landmarks: Point[];
}

/** A face followed across frames of one stream. Identity and attributes are attached by the pipeline. */
export class Track {
  hits = 1;
  lastSeq: number;
  readonly firstSeq: number;
  /** Per-frame motion of the box (x1, y1, x2, y2), smoothed. */
  private velocity: [number, number, number, number] = [0, 0, 0, 0];

  constructor(
    public id: number,
    public detection: Detection,
    seq: number,
  ) {
    this.lastSeq = seq;
    this.firstSeq = seq;
  }

  get box(): Box {
    return this.detection.box;
  }

  /** Where the box should be at `seq`, assuming it keeps moving as it did. */
  predict(seq: number): Box {
    const dt = Math.min(seq - this.lastSeq, 5);
    const b = this.detection.box;
    return [b[0] + this.velocity[0] * dt, b[1] + this.velocity[1] * dt, b[2] + this.velocity[2] * dt, b[3] + this.velocity[3] * dt];
  }

  update(detection: Detection, seq: number): void {
    const dt = Math.max(1, seq - this.lastSeq);
    const prev = this.detection.box;
    for (let k = 0; k < 4; k++) {
      const step = (detection.box[k] - prev[k]) / dt;
      this.velocity[k] = this.hits === 1 ? step : 0.6 * this.velocity[k] + 0.4 * step;
    }
    this.detection = detection;
    this.lastSeq = seq;
    this.hits++;
  }
}

export interface TrackUpdate {
  /** The track of each detection, in the detections' order. */
  tracks: Track[];
  /** Which of `tracks` started in this frame. */
  started: Track[];
  /** Tracks that ended (not seen for more than maxMisses frames). */
  ended: Track[];
}

/**
 * IoU tracker with constant-velocity prediction: detections are matched to tracks greedily by
 * descending IoU between the detection and the track's predicted box; unmatched detections start
 * tracks, tracks unmatched for too long end. Track ids are unique within the tracker (one per stream).
 */
export class IouTracker {
  private tracks: Track[] = [];
  private nextId = 1;

  constructor(private readonly opts: TrackerOptions) {}

  get active(): readonly Track[] {
    return this.tracks;
  }

  update(seq: number, detections: readonly Detection[]): TrackUpdate {
    const pairs: { t: number; d: number; o: number }[] = [];
    const predicted = this.tracks.map((t) => t.predict(seq));
    for (let t = 0; t < this.tracks.length; t++) {
      for (let d = 0; d < detections.length; d++) {
        const o = iou(predicted[t], detections[d].box);
        if (o >= this.opts.iouThreshold) pairs.push({ t, d, o });
      }
    }
    pairs.sort((a, b) => b.o - a.o);
    const trackUsed = new Uint8Array(this.tracks.length);
    const assigned: (Track | undefined)[] = new Array(detections.length);
    for (const p of pairs) {
      if (trackUsed[p.t] || assigned[p.d]) continue;
      trackUsed[p.t] = 1;
      assigned[p.d] = this.tracks[p.t];
      this.tracks[p.t].update(detections[p.d], seq);
    }
    const started: Track[] = [];
    detections.forEach((det, d) => {
      if (assigned[d]) return;
      const track = new Track(this.nextId++, det, seq);
      assigned[d] = track;
      started.push(track);
    });
    const ended: Track[] = [];
    this.tracks = this.tracks.filter((t) => {
      if (seq - t.lastSeq > this.opts.maxMisses) {
        ended.push(t);
        return false;
      }
      return true;
    });
    this.tracks.push(...started);
    return { tracks: assigned as Track[], started, ended };
  }

  /**
   * Gives a track a new id: recognition showed that a different person now stands where the track
   * was (a scene cut, or two people crossing). Returns the old id.
   */
  renew(track: Track): number {
    const old = track.id;
    track.id = this.nextId++;
    return old;
  }

  /** Ends every track (stream stopped). */
  clear(): Track[] {
    const ended = this.tracks;
    this.tracks = [];
    return ended;
  }
}
