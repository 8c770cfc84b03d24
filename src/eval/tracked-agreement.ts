import type { RgbImage } from '../image/types.js';
import { iou } from '../pipeline/detect/boxes.js';
import { noopObserver, type DetectionKind } from '../pipeline/metrics.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { FrameResult } from '../pipeline/result.js';

/**
 * Runs decoded frames through an offline stream of `pipeline` (every frame, in order, pts seq/fps)
 * with the given detection mode, and counts detection runs by kind. The pipeline's observer is
 * replaced for the run.
 */
export async function runFramesOffline(
  pipeline: Pipeline,
  frames: readonly RgbImage[],
  fps: number,
  mode: 'full' | 'tracked',
  minFaceSize = 40,
): Promise<{ results: FrameResult[]; runs: Record<DetectionKind, number> }> {
  const id = `offline-${mode}`;
  const runs: Record<DetectionKind, number> = { full: 0, motion: 0, refine: 0 };
  pipeline.setObserver({ ...noopObserver, detectionRun: (_s, kind) => runs[kind]++ });
  let paused = false;
  pipeline.addStream(id, { mode: 'offline', minFaceSize, detection: { mode }, source: { pause: () => (paused = true), resume: () => (paused = false) } });
  const results: FrameResult[] = [];
  const listener = (r: FrameResult) => r.streamId === id && results.push(r);
  pipeline.bus.on('frame', listener);
  for (let seq = 0; seq < frames.length; seq++) {
    while (paused) await new Promise((r) => setTimeout(r, 2));
    const f = frames[seq];
    pipeline.offer({ streamId: id, seq, pts: seq / fps, capturedAt: Date.now(), width: f.width, height: f.height, data: f.data });
  }
  await pipeline.idle();
  pipeline.removeStream(id);
  pipeline.bus.off('frame', listener);
  return { results, runs };
}

/** How tracked-mode results agree with full-mode results on the same frames. */
export interface TrackedAgreement {
  /** Faces full mode reported, over all frames. */
  fullFaces: number;
  /** Of those, reported by tracked mode on the same frame (IoU >= 0.5, one to one). */
  found: number;
  /** Faces tracked mode reported that full mode did not. */
  extra: number;
  /** Found faces that full mode had named. */
  labelled: number;
  /** Of those, named the same by tracked mode. */
  sameLabel: number;
  /** Per full-mode track: frames from its first frame to the first frame tracked mode reported it. */
  entryDelays: number[];
}

/**
 * Compares tracked-mode results with full-mode results of the same frames (matched by seq): the
 * accuracy guard of tracked detection (test/tracked-detection.test.ts, `npm run bench -- streams`).
 * Recall = found / fullFaces, extra share = extra / fullFaces, label agreement = sameLabel / labelled.
 */
export function trackedAgreement(full: readonly FrameResult[], tracked: readonly FrameResult[]): TrackedAgreement {
  const a: TrackedAgreement = { fullFaces: 0, found: 0, extra: 0, labelled: 0, sameLabel: 0, entryDelays: [] };
  const trackedBySeq = new Map(tracked.map((r) => [r.seq, r]));
  const firstSeen = new Map<number, number>();
  const reported = new Set<number>();
  for (const f of full) {
    const t = trackedBySeq.get(f.seq);
    if (!t) continue;
    const used = new Set<number>();
    for (const face of f.faces) {
      a.fullFaces++;
      if (!firstSeen.has(face.trackId)) firstSeen.set(face.trackId, f.seq);
      let best = -1;
      let bestIou = 0.5;
      t.faces.forEach((g, k) => {
        const o = iou(face.box, g.box);
        if (o >= bestIou && !used.has(k)) [best, bestIou] = [k, o];
      });
      if (best < 0) continue;
      used.add(best);
      a.found++;
      if (!reported.has(face.trackId)) {
        reported.add(face.trackId);
        a.entryDelays.push(f.seq - firstSeen.get(face.trackId)!);
      }
      if (face.identity) {
        a.labelled++;
        if (t.faces[best].identity?.id === face.identity.id) a.sameLabel++;
      }
    }
    a.extra += t.faces.length - used.size;
  }
  return a;
}
