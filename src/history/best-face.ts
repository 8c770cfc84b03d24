import sharp from 'sharp';
import type { Box, Point, RgbImage } from '../image/types.js';

/**
 * Picking the best face of a track: the largest, most frontal, most confidently detected face is
 * chosen from geometry alone while the track runs (no pixel work on the pipeline's thread); the
 * few best candidates are then measured for sharpness with sharp (libuv threads) when the
 * appearance is written, and the best overall is stored.
 */

export interface FaceSighting {
  box: Box;
  landmarks: Point[];
  score: number;
}

/** Faces at least this large (shorter box side, px) all count as "large enough". */
const SIZE_SATURATION = 160;
/**
 * Half-point of the sharpness factor: variance of the Laplacian of the face scaled to 64x64 grey.
 * Sharp video faces measure a few hundred, motion-blurred ones tens; at 100 the factor is 0.5.
 */
const SHARPNESS_HALF = 100;

function shorterSide(box: Box): number {
  return Math.min(box[2] - box[0], box[3] - box[1]);
}

/**
 * Frontality from the 5 landmarks (eyes, nose, mouth corners), 0..1: 1 when the nose is midway
 * between the eyes (no yaw) and below the eye line by a normal share of the eye-mouth distance
 * (no pitch). A profile face puts the nose near one eye; the ratio is the usual landmark-based yaw proxy.
 */
export function frontality(landmarks: readonly Point[]): number {
  if (landmarks.length < 5) return 0.5;
  const [le, re, nose, lm, rm] = landmarks;
  const eyeDx = re[0] - le[0];
  if (eyeDx <= 0) return 0;
  const yaw = Math.abs((nose[0] - le[0]) / eyeDx - 0.5) * 2;
  const eyeY = (le[1] + re[1]) / 2;
  const mouthY = (lm[1] + rm[1]) / 2;
  const span = mouthY - eyeY;
  const pitch = span > 0 ? Math.abs((nose[1] - eyeY) / span - 0.55) * 2 : 1;
  return Math.max(0, 1 - yaw) * Math.max(0, 1 - Math.min(1, pitch));
}

/** Geometric quality 0..1: size (saturating at 160 px) x detection score x frontality (a profile still counts a tenth: it may be all a track has). */
export function geometricQuality(face: FaceSighting): number {
  return (Math.min(shorterSide(face.box), SIZE_SATURATION) / SIZE_SATURATION) * face.score * (0.1 + 0.9 * frontality(face.landmarks));
}

/** The sharpness factor 0..1 applied to the geometric quality once pixels are looked at. */
export function sharpnessFactor(sharpness: number): number {
  return sharpness / (sharpness + SHARPNESS_HALF);
}

/**
 * Variance of the Laplacian over the face box scaled to 64x64 grey (sharp, off the main thread):
 * blur removes the high frequencies the Laplacian responds to, and the fixed size makes faces of
 * any size comparable.
 */
export async function measureSharpness(image: RgbImage, box: Box): Promise<number> {
  const left = Math.max(0, Math.floor(box[0]));
  const top = Math.max(0, Math.floor(box[1]));
  const width = Math.max(1, Math.min(image.width, Math.ceil(box[2])) - left);
  const height = Math.max(1, Math.min(image.height, Math.ceil(box[3])) - top);
  const { channels } = await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), { raw: { width: image.width, height: image.height, channels: 3 } })
    .extract({ left, top, width, height })
    .greyscale()
    .resize(64, 64, { fit: 'fill' })
    .convolve({ width: 3, height: 3, kernel: [0, 1, 0, 1, -4, 1, 0, 1, 0], scale: 1, offset: 128 })
    .stats();
  return channels[0].stdev ** 2;
}

/** A frame as the history keeps it for a candidate (a reference, never a copy). */
export interface CandidateFrame extends RgbImage {
  capturedAt: number;
  /** The frame's Frame.hold, when its memory is reused once released. */
  hold?: () => () => void;
}

export interface Candidate extends FaceSighting {
  frame: CandidateFrame;
  quality: number;
  /** Releases the candidate's hold on its frame (set once the candidate is kept). */
  release?: () => void;
}

/**
 * Keeps the `max` best candidates by geometric quality (the list stays sorted, best first). A kept
 * candidate holds its frame's memory (`frame.hold`) until it is pushed out or `releaseCandidates`.
 */
export function offerCandidate(list: Candidate[], candidate: Candidate, max: number): boolean {
  if (list.length >= max && candidate.quality <= list[list.length - 1].quality) return false;
  candidate.release = candidate.frame.hold?.();
  let i = list.length;
  while (i > 0 && list[i - 1].quality < candidate.quality) i--;
  list.splice(i, 0, candidate);
  if (list.length > max) list.pop()!.release?.();
  return true;
}

/** Ends every candidate's hold on its frame: the list must not be read after. */
export function releaseCandidates(list: readonly Candidate[]): void {
  for (const c of list) c.release?.();
}
