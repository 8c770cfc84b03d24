import { performance } from 'node:perf_hooks';
import { AreaPooler } from '../../image/area-pooler.js';
import type { PoolJob } from '../../image/integral.js';
import { SummedAreaModule } from '../../image/summed-area-wasm.js';
import type { Box, Point, RgbImage } from '../../image/types.js';
import type { ModelRuntime, OnnxModel } from '../../models/runtime.js';
import { nms, regress, square, type Candidate } from './boxes.js';
import { BatchBuffers } from '../batch-buffers.js';
import { pyramidLevels, type PyramidLevel } from './pyramid.js';

export interface DetectedFace {
  /** [x1, y1, x2, y2] in pixels of the input picture. */
  box: Box;
  score: number;
  /** Left eye, right eye, nose, left mouth corner, right mouth corner. */
  landmarks: Point[];
}

export interface MtcnnOptions {
  minFaceSize: number;
  scaleFactor: number;
  thresholds: readonly [number, number, number];
  /**
   * How R-Net/O-Net crops treat parts of a box outside the picture: 'zero' pads with black (the
   * original MTCNN), 'clamp' cuts the box at the border and stretches what is left.
   */
  cropPadding: 'zero' | 'clamp';
}

export const MTCNN_DEFAULTS: MtcnnOptions = { minFaceSize: 20, scaleFactor: 0.709, thresholds: [0.6, 0.7, 0.7], cropPadding: 'clamp' };

/** Where detection time goes, accumulated over calls (the benchmark reads it). */
export interface DetectTimings {
  calls: number;
  images: number;
  totalMs: number;
  /** Pooling the P-Net pyramid levels out of the pictures. */
  pyramidMs: number;
  pnetMs: number;
  rnetMs: number;
  onetMs: number;
  /** Area-averaging the R-Net and O-Net crops out of the pictures. */
  cropMs: number;
  /** Reading candidates out of the nets' outputs, NMS, regression, squaring. */
  nmsMs: number;
  /** Candidates entering R-Net and O-Net, summed. */
  rnetCandidates: number;
  onetCandidates: number;
}

export function emptyDetectTimings(): DetectTimings {
  return { calls: 0, images: 0, totalMs: 0, pyramidMs: 0, pnetMs: 0, rnetMs: 0, onetMs: 0, cropMs: 0, nmsMs: 0, rnetCandidates: 0, onetCandidates: 0 };
}

interface Stage2Candidate extends Candidate {
  image: number;
  landmarks?: Point[];
}

/**
 * A rectangle of a picture that P-Net searches, with a pyramid of its own: the whole picture (a
 * keyframe), a region where motion appeared, or a small window around a tracked face. Integer
 * picture pixels; a window may reach past the picture, whose outside is searched as black.
 */
export interface SearchWindow {
  x: number;
  y: number;
  width: number;
  height: number;
  /**
   * P-Net input sizes and scales. Default: the window's own pyramid, pyramidLevels(width, height,
   * minFaceSize, scaleFactor). Parts of the whole picture's levels (`levelPart`) make a window
   * propose exactly the boxes a whole-picture search proposes inside it.
   */
  levels?: PyramidLevel[];
  /**
   * A box that also goes straight to O-Net, skipping P-Net and R-Net: a tracked face's predicted
   * box, which O-Net's box regression pulls onto the face where it now is.
   */
  seed?: Box;
}

/** One picture and the windows to search in it. */
export interface SearchRequest {
  image: RgbImage;
  windows: readonly SearchWindow[];
}

/** The whole picture as one search window (what `detectBatch` searches). */
export function wholePicture(image: { width: number; height: number }): SearchWindow {
  return { x: 0, y: 0, width: image.width, height: image.height };
}

// Input normalisation shared by the three nets (manifest: (pixel - 127.5) * 0.0078125).
const MEAN = 127.5;
const SCALE = 0.0078125;

/** One pyramid level of one window: a P-Net input plane. */
interface LevelTask {
  request: number;
  window: SearchWindow;
  level: PyramidLevel;
}

/** The pooling that makes a level task's P-Net input plane, at dst[offset]. */
function levelJob(task: LevelTask, image: RgbImage, dst: Float32Array, offset: number): PoolJob {
  const { window: w, level } = task;
  const part = level.part;
  if (!part) return { x0: w.x, y0: w.y, srcW: w.width, srcH: w.height, outW: level.width, outH: level.height, dst, offset };
  // A part of a whole-picture level: that level's pooling of the whole picture, those cells only.
  const cells = { col: part.col, row: part.row, cols: level.width, rows: level.height };
  return { x0: 0, y0: 0, srcW: image.width, srcH: image.height, outW: part.levelWidth, outH: part.levelHeight, part: cells, dst, offset };
}

/**
 * MTCNN (Zhang et al. 2016): P-Net over an image pyramid proposes boxes, R-Net refines them,
 * O-Net scores them and places five landmarks. Several pictures go through together: P-Net runs
 * one batch per distinct pyramid-level size (video frames of equal-size streams share every level;
 * the windows around tracked faces share canonical sizes), and R-Net and O-Net each run one batch
 * holding every candidate of every picture.
 */
export class MtcnnDetector {
  readonly timings: DetectTimings = emptyDetectTimings();
  /** The pyramid levels and the crops, pooled by a WebAssembly kernel compiled once per detector. */
  private readonly pooler = new AreaPooler(SummedAreaModule.load());
  private readonly buffers = new BatchBuffers();

  constructor(
    private readonly pnet: OnnxModel,
    private readonly rnet: OnnxModel,
    private readonly onet: OnnxModel,
    readonly options: MtcnnOptions = MTCNN_DEFAULTS,
  ) {}

  /** Bytes the pooling kernel's memory holds (it keeps the size of the largest pass it ran). */
  get poolerBytes(): number {
    return this.pooler.bytes;
  }

  static async load(runtime: ModelRuntime, options: Partial<MtcnnOptions> = {}): Promise<MtcnnDetector> {
    const [p, r, o] = await Promise.all([runtime.load('mtcnn-pnet'), runtime.load('mtcnn-rnet'), runtime.load('mtcnn-onet')]);
    return new MtcnnDetector(p, r, o, { ...MTCNN_DEFAULTS, ...options });
  }

  async detect(image: RgbImage, options?: Partial<MtcnnOptions>): Promise<DetectedFace[]> {
    return (await this.detectBatch([image], options))[0];
  }

  /** Every face of every picture: the whole picture is searched (reference parity). */
  detectBatch(images: readonly RgbImage[], overrides?: Partial<MtcnnOptions>): Promise<DetectedFace[][]> {
    return this.searchBatch(
      images.map((image) => ({ image, windows: [wholePicture(image)] })),
      overrides,
    );
  }

  /**
   * The faces found inside the given windows of each picture (a face is found when P-Net proposes
   * it inside a window; R-Net and O-Net then see its crop from the picture around it). Faces
   * found by overlapping windows are merged by the cascade's NMS. The whole picture as the only
   * window gives exactly `detectBatch`'s result.
   */
  async searchBatch(requests: readonly SearchRequest[], overrides?: Partial<MtcnnOptions>): Promise<DetectedFace[][]> {
    const opts = overrides ? { ...this.options, ...overrides } : this.options;
    const t = this.timings;
    const start = performance.now();
    const borrowed: Float32Array[] = [];
    try {
      const tasks: LevelTask[] = [];
      const seeds: { box: Box; image: number }[] = [];
      requests.forEach((req, r) => {
        for (const window of req.windows) {
          const levels = window.levels ?? pyramidLevels(window.width, window.height, opts.minFaceSize, opts.scaleFactor);
          for (const level of levels) tasks.push({ request: r, window, level });
          if (window.seed) seeds.push({ box: window.seed, image: r });
        }
      });

      const proposals = await this.propose(requests, tasks, opts, borrowed);
      const refined = await this.refine(proposals, requests, opts, borrowed);
      for (const seed of seeds) {
        const c: Stage2Candidate = { x1: seed.box[0], y1: seed.box[1], x2: seed.box[2], y2: seed.box[3], score: 1, dx1: 0, dy1: 0, dx2: 0, dy2: 0, image: seed.image };
        square(c);
        refined.push(c);
      }
      const results = await this.output(refined, requests, opts, borrowed);
      t.calls += 1;
      t.images += requests.length;
      t.totalMs += performance.now() - start;
      return results;
    } finally {
      this.buffers.give(borrowed);
    }
  }

  /** Stage 1: P-Net on every level of every window, one batch per distinct level size. */
  private async propose(requests: readonly SearchRequest[], tasks: LevelTask[], opts: MtcnnOptions, borrowed: Float32Array[]): Promise<Stage2Candidate[]> {
    const t = this.timings;
    const groups = new Map<string, LevelTask[]>();
    for (const task of tasks) {
      const key = `${task.level.width}x${task.level.height}`;
      const g = groups.get(key);
      if (g) g.push(task);
      else groups.set(key, [task]);
    }
    const threshold = opts.thresholds[0];
    // Per request, per window and level in the order given: the reference's order for one picture.
    const found = new Map<LevelTask, Candidate[]>();
    let scanning = 0;
    /** Candidates of one level size's P-Net output, NMS'd per level (as soon as the output arrives). */
    const scan = (members: LevelTask[], out: Record<string, import('../../models/runtime.js').Tensor>) => {
      const mark = performance.now();
      const prob = out.prob.data;
      const reg = out.reg.data;
      const [, , oh, ow] = out.prob.dims;
      const cells = oh * ow;
      members.forEach((task, k) => {
        const inv = Math.fround(task.level.scale);
        // A part of a whole-picture level is placed by its cells, as the keyframe places them.
        const part = task.level.part;
        const ox = part ? 0 : task.window.x;
        const oy = part ? 0 : task.window.y;
        const col = part ? part.col : 0;
        const row = part ? part.row : 0;
        const probBase = (k * 2 + 1) * cells;
        const regBase = k * 4 * cells;
        const list: Candidate[] = [];
        for (let cell = 0; cell < cells; cell++) {
          const score = prob[probBase + cell];
          if (score < threshold) continue;
          const i = (cell / ow) | 0;
          const j = cell - i * ow;
          // The reference computes these in float32; fround keeps borderline floors identical.
          list.push({
            x1: ox + Math.floor(Math.fround((col + 2 * j + 1) / inv)),
            y1: oy + Math.floor(Math.fround((row + 2 * i + 1) / inv)),
            x2: ox + Math.floor(Math.fround((col + 2 * j + 12) / inv)),
            y2: oy + Math.floor(Math.fround((row + 2 * i + 12) / inv)),
            score,
            dx1: reg[regBase + cell],
            dy1: reg[regBase + cells + cell],
            dx2: reg[regBase + 2 * cells + cell],
            dy2: reg[regBase + 3 * cells + cell],
          });
        }
        if (list.length) found.set(task, nms(list, 0.5, 'union'));
      });
      scanning += performance.now() - mark;
    };
    // Every level of a picture is pooled in one call (the kernel reads the pixels once for all of
    // them); P-Net then runs once per level size, and each output is scanned when it arrives (on
    // the inference thread, while P-Net runs on the next).
    const pnetStart = performance.now();
    const jobsByImage = new Map<number, PoolJob[]>();
    const groupList = [...groups.values()];
    const batches = groupList.map((members) => {
      const { width, height } = members[0].level;
      const plane = width * height;
      const batch = this.buffers.take(members.length * 3 * plane);
      members.forEach((task, k) => {
        const job = levelJob(task, requests[task.request].image, batch, k * 3 * plane);
        const jobs = jobsByImage.get(task.request);
        if (jobs) jobs.push(job);
        else jobsByImage.set(task.request, [job]);
      });
      return batch;
    });
    for (const [r, jobs] of jobsByImage) this.pooler.pool(requests[r].image, jobs, MEAN, SCALE);
    const pooling = performance.now() - pnetStart;
    const runs = groupList.map((members, k) => {
      const { width, height } = members[0].level;
      return this.pnet.run(batches[k], [members.length, 3, height, width], (b) => borrowed.push(b)).then((out) => scan(members, out));
    });
    await Promise.all(runs);
    t.pyramidMs += pooling;
    t.pnetMs += performance.now() - pnetStart - pooling - scanning;
    const scanStart = performance.now() - scanning;
    const perRequest: Candidate[][] = requests.map(() => []);
    for (const task of tasks) {
      const list = found.get(task);
      if (list) perRequest[task.request].push(...list);
    }
    const out: Stage2Candidate[] = [];
    perRequest.forEach((cands, image) => {
      for (const c of nms(cands, 0.7, 'union')) {
        regress(c, 0);
        square(c);
        out.push({ ...c, image });
      }
    });
    t.nmsMs += performance.now() - scanStart;
    return out;
  }

  /**
   * Crops every candidate's (truncated) box from its picture and area-resizes it to size x size
   * into one batch. Returns the batch and the candidates that produced a crop.
   */
  private cropBatch(cands: Stage2Candidate[], requests: readonly SearchRequest[], size: number, padding: MtcnnOptions['cropPadding']) {
    const plane = size * size;
    const batch = this.buffers.take(cands.length * 3 * plane);
    const used: Stage2Candidate[] = [];
    const jobs = new Map<number, PoolJob[]>();
    for (const c of cands) {
      const { width: w, height: h } = requests[c.image].image;
      // 1-based inclusive pixel box, as the reference's pad(): x = trunc(x1) .. ex = trunc(x2).
      let x = Math.trunc(c.x1);
      let y = Math.trunc(c.y1);
      let ex = Math.trunc(c.x2);
      let ey = Math.trunc(c.y2);
      if (padding === 'clamp') {
        if (x < 1) x = 1;
        if (y < 1) y = 1;
        if (ex > w) ex = w;
        if (ey > h) ey = h;
      }
      const srcW = ex - x + 1;
      const srcH = ey - y + 1;
      if (srcW <= 0 || srcH <= 0) continue;
      const job: PoolJob = { x0: x - 1, y0: y - 1, srcW, srcH, outW: size, outH: size, dst: batch, offset: used.length * 3 * plane };
      const list = jobs.get(c.image);
      if (list) list.push(job);
      else jobs.set(c.image, [job]);
      used.push(c);
    }
    for (const [image, list] of jobs) this.pooler.pool(requests[image].image, list, MEAN, SCALE);
    return { batch: used.length === cands.length ? batch : batch.subarray(0, used.length * 3 * plane), used };
  }

  /** Stage 2: R-Net on every proposal of every picture in one batch. */
  private async refine(cands: Stage2Candidate[], requests: readonly SearchRequest[], opts: MtcnnOptions, borrowed: Float32Array[]): Promise<Stage2Candidate[]> {
    if (cands.length === 0) return [];
    const t = this.timings;
    let mark = performance.now();
    const { batch, used } = this.cropBatch(cands, requests, 24, opts.cropPadding);
    t.cropMs += performance.now() - mark;
    if (used.length === 0) return [];
    t.rnetCandidates += used.length;
    mark = performance.now();
    const out = await this.rnet.run(batch, [used.length, 3, 24, 24], (b) => borrowed.push(b));
    t.rnetMs += performance.now() - mark;
    mark = performance.now();
    const prob = out.prob.data as Float32Array;
    const reg = out.reg.data as Float32Array;
    const byImage = new Map<number, Stage2Candidate[]>();
    used.forEach((c, k) => {
      const score = prob[k * 2 + 1];
      if (!(score > opts.thresholds[1])) return;
      const next: Stage2Candidate = { x1: c.x1, y1: c.y1, x2: c.x2, y2: c.y2, score, dx1: reg[k * 4], dy1: reg[k * 4 + 1], dx2: reg[k * 4 + 2], dy2: reg[k * 4 + 3], image: c.image };
      const list = byImage.get(c.image);
      if (list) list.push(next);
      else byImage.set(c.image, [next]);
    });
    const kept: Stage2Candidate[] = [];
    for (const list of byImage.values()) {
      for (const c of nms(list, 0.7, 'union')) {
        regress(c, 1);
        square(c);
        kept.push(c);
      }
    }
    t.nmsMs += performance.now() - mark;
    return kept;
  }

  /** Stage 3: O-Net scores, final regression and landmarks, then NMS by overlap of the smaller box. */
  private async output(cands: Stage2Candidate[], requests: readonly SearchRequest[], opts: MtcnnOptions, borrowed: Float32Array[]): Promise<DetectedFace[][]> {
    const results: DetectedFace[][] = requests.map(() => []);
    if (cands.length === 0) return results;
    const t = this.timings;
    let mark = performance.now();
    const { batch, used } = this.cropBatch(cands, requests, 48, opts.cropPadding);
    t.cropMs += performance.now() - mark;
    if (used.length === 0) return results;
    t.onetCandidates += used.length;
    mark = performance.now();
    const out = await this.onet.run(batch, [used.length, 3, 48, 48], (b) => borrowed.push(b));
    t.onetMs += performance.now() - mark;
    mark = performance.now();
    const prob = out.prob.data as Float32Array;
    const reg = out.reg.data as Float32Array;
    const lm = out.landmarks.data as Float32Array;
    const byImage = new Map<number, Stage2Candidate[]>();
    used.forEach((c, k) => {
      const score = prob[k * 2 + 1];
      if (!(score > opts.thresholds[2])) return;
      const w = c.x2 - c.x1 + 1;
      const h = c.y2 - c.y1 + 1;
      const landmarks: Point[] = [];
      for (let p = 0; p < 5; p++) landmarks.push([w * lm[k * 10 + p] + c.x1 - 1, h * lm[k * 10 + 5 + p] + c.y1 - 1]);
      const next: Stage2Candidate = { x1: c.x1, y1: c.y1, x2: c.x2, y2: c.y2, score, dx1: reg[k * 4], dy1: reg[k * 4 + 1], dx2: reg[k * 4 + 2], dy2: reg[k * 4 + 3], image: c.image, landmarks };
      regress(next, 1);
      const list = byImage.get(c.image);
      if (list) list.push(next);
      else byImage.set(c.image, [next]);
    });
    for (const [image, list] of byImage) {
      results[image] = nms(list, 0.7, 'min+1').map((c) => ({ box: [c.x1, c.y1, c.x2, c.y2], score: c.score, landmarks: c.landmarks! }));
    }
    t.nmsMs += performance.now() - mark;
    return results;
  }
}
