import { checkJobs, checkPicture, IntegralImage, type PoolJob } from './integral.js';
import { kernelJob, type SummedAreaModule, type SummedAreaSweep } from './summed-area-wasm.js';
import type { RgbImage } from './types.js';

/**
 * Adaptive average pooling of pictures (PyTorch's `interpolate(mode="area")`, which the reference
 * MTCNN uses for its pyramid and its crops): the values of IntegralImage.poolPartInto on the
 * picture's summed-area table, bit for bit. Given a SummedAreaModule, jobs run on its WebAssembly
 * kernel, straight from the pixels (no table in memory: see summed-area.c); without one, and for
 * jobs the kernel cannot hold (see kernelJob), on IntegralImage's JavaScript loops.
 */
export class AreaPooler {
  private readonly sweep: SummedAreaSweep | undefined;

  constructor(kernel?: SummedAreaModule) {
    this.sweep = kernel?.sweep();
  }

  /** Bytes the kernel's memory holds on to (it grows as pictures need and never shrinks). */
  get bytes(): number {
    return this.sweep?.bytes ?? 0;
  }

  /** Picture pixels the kernel has read so far (see SummedAreaSweep.sweptPixels). */
  get sweptPixels(): number {
    return this.sweep?.sweptPixels ?? 0;
  }

  /**
   * Pools each job from `img` (job coordinates are picture pixels; outside the picture is black)
   * into its `dst`, each value written as (v - mean) * scale. Throws a RangeError, before pooling
   * any job, when a job's array is not a Float32Array, or its cells are not whole columns and rows
   * or do not fit the array from its offset (see checkJobs), or when `img` is not a picture of its
   * size (see checkPicture).
   */
  pool(img: RgbImage, jobs: readonly PoolJob[], mean: number, scale: number): void {
    checkPicture(img);
    checkJobs(jobs);
    const kernel: PoolJob[] = [];
    const rest: PoolJob[] = [];
    for (const job of jobs) (this.sweep && kernelJob(job) ? kernel : rest).push(job);
    if (kernel.length > 0) this.sweep!.pool(img, kernel, mean, scale);
    // The JavaScript loop needs the picture's table: made for the call and let go (a rare path).
    if (rest.length > 0) new IntegralImage().compute(img).pool(rest, mean, scale);
  }
}
