import { nms, type Candidate } from '../detect/boxes.js';
import type { FrameDetectRequest, FrameDetectResult } from '../detect/frame-detector.js';
import type { DetectedFace } from '../detect/mtcnn.js';
import { pyramidLevels } from '../detect/pyramid.js';

/**
 * A detection batch dealt out to several analysis workers: `jobs[k]` goes to one worker each, and
 * `merge` turns their results (in job order) back into one result per request of the batch.
 */
export interface SplitDetection {
  jobs: FrameDetectRequest[][];
  merge(results: readonly (readonly FrameDetectResult[])[]): FrameDetectResult[];
}

/**
 * Splits the keyframes of a batch ('tracked' mode, whole-picture search, at least `minPixels`
 * pixels) over `parts` workers: each part searches the whole picture on its share of the pyramid
 * levels (levelShares), so a keyframe's P-Net work, most of its cost, runs on every part at once.
 * The first job also carries every request that is not split. Undefined when nothing is worth
 * splitting (no such keyframe, or fewer than two parts).
 *
 * A keyframe whose pyramid (minFaceSize, `scaleFactor`: config detector.scaleFactor) has fewer
 * levels than `parts` is not split: a part with no level finds nothing, yet would hold a worker.
 *
 * 'full' mode is never split: it keeps the reference cascade, whose NMS sees every level at once.
 *
 * Merging: a face a keyframe shows at two neighbouring pyramid levels may be found by two parts;
 * the parts' faces go through the cascade's last NMS once more (overlap of the smaller box over
 * 0.7, best score kept), which keeps one of them, as the whole search's NMS would. The detection
 * runs are the first part's (one keyframe, one run).
 */
export function splitKeyframes(requests: readonly FrameDetectRequest[], parts: number, minPixels: number, scaleFactor: number): SplitDetection | undefined {
  const split = requests.map(
    (r) =>
      r.mode === 'tracked' &&
      r.keyframe &&
      r.frame.width * r.frame.height >= minPixels &&
      pyramidLevels(r.frame.width, r.frame.height, r.minFaceSize, scaleFactor).length >= parts,
  );
  if (parts < 2 || !split.some(Boolean)) return undefined;
  const jobs: FrameDetectRequest[][] = Array.from({ length: parts }, () => []);
  // Where each request's part k landed: its index in jobs[k] (-1: not in that job).
  const place = requests.map(() => new Array<number>(parts).fill(-1));
  requests.forEach((r, i) => {
    if (!split[i]) {
      place[i][0] = jobs[0].push(r) - 1;
      return;
    }
    for (let k = 0; k < parts; k++) place[i][k] = jobs[k].push({ ...r, levelShare: { index: k, count: parts } }) - 1;
  });
  return {
    jobs,
    merge(results) {
      return requests.map((_, i) => {
        const first = results[0][place[i][0]];
        if (!split[i]) return first;
        const faces = place[i].flatMap((at, k) => results[k][at].faces);
        return { ...first, faces: mergeFaces(faces) };
      });
    },
  };
}

/** The faces of several parts of one search, with faces found twice merged by the cascade's last NMS ('min+1', 0.7). */
export function mergeFaces(faces: readonly DetectedFace[]): DetectedFace[] {
  const cands = faces.map((face) => ({ x1: face.box[0], y1: face.box[1], x2: face.box[2], y2: face.box[3], score: face.score, dx1: 0, dy1: 0, dx2: 0, dy2: 0, face }) satisfies Candidate & { face: DetectedFace });
  return nms(cands, 0.7, 'min+1').map((c) => c.face);
}
