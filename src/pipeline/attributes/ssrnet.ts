import type { AttributeModelSpec } from '../../models/manifest.js';
import { attributeSpec } from '../../models/manifest.js';
import type { ModelRuntime, OnnxModel, OutputTensor } from '../../models/runtime.js';
import { cropTransform } from '../align/crop.js';
import { normalisationOf, warpInto } from '../align/warp.js';
import { BatchBuffers } from '../batch-buffers.js';
import type { FaceInPicture } from '../embed/embedder.js';

/**
 * SSR-Net soft stagewise regression (Yang et al. 2018) with three stages of three bins each.
 * `x` is the nine outputs concatenated: prob_stage_1..3 (3 each), stage1..3_delta_k (1 each),
 * index_offset_stage1..3 (3 each); `scale` is V (101 for age in years, 1 for gender).
 */
export function decodeSsrNet(x: ArrayLike<number>, scale: number): number {
  const s = 3;
  const k1 = s * (1 + x[9]);
  const k2 = k1 * s * (1 + x[10]);
  const k3 = k2 * s * (1 + x[11]);
  let a = 0;
  let b = 0;
  let c = 0;
  for (let i = 0; i < 3; i++) {
    a += (i + x[12 + i]) * x[i];
    b += (i + x[15 + i]) * x[3 + i];
    c += (i + x[18 + i]) * x[6 + i];
  }
  return (a / k1 + b / k2 + c / k3) * scale;
}

export interface FaceAttributes {
  /** Estimated age in years. */
  age: number;
  gender: 'male' | 'female';
  /**
   * The gender net's regressed value clamped to [0, 1]: 0 female, 1 male, above 0.5 means male.
   * A score of how male the face looks to the net, not a calibrated probability (SSR-Net
   * regresses it; its bin offsets let the raw value leave [0, 1], e.g. 1.028).
   */
  genderScore: number;
}

/** Ages SSR-Net's age head can mean: 0 to V - 1 = 100 years; the raw regression can leave it a little. */
const AGE_RANGE: [number, number] = [0, 100];

function clamp(x: number, [lo, hi]: readonly [number, number]): number {
  return Math.min(hi, Math.max(lo, x));
}

/** The attributes of one face from the two nets' raw regressions (see FaceAttributes for ranges and meaning). */
export function faceAttributes(rawAge: number, rawGender: number): FaceAttributes {
  const genderScore = clamp(rawGender, [0, 1]);
  return { age: Math.round(clamp(rawAge, AGE_RANGE) * 10) / 10, gender: genderScore > 0.5 ? 'male' : 'female', genderScore: Math.round(genderScore * 1000) / 1000 };
}

/** One SSR-Net model: crops, batches, decodes. */
export class SsrNet {
  private readonly buffers = new BatchBuffers(8 * 2 ** 20);

  constructor(
    private readonly model: OnnxModel,
    readonly spec: AttributeModelSpec,
  ) {}

  static async load(runtime: ModelRuntime, id: string): Promise<SsrNet> {
    return new SsrNet(await runtime.load(id), attributeSpec(runtime.manifest, id));
  }

  async predict(items: readonly FaceInPicture[]): Promise<number[]> {
    if (items.length === 0) return [];
    const [w, h] = this.spec.crop.size;
    const per = 3 * w * h;
    const norm = normalisationOf(this.spec.input);
    const batch = this.buffers.take(items.length * per);
    items.forEach((it, k) => warpInto(it.image, cropTransform(this.spec.crop, it.face, it.image.width, it.image.height), w, h, batch, k * per, norm));
    const returned: Float32Array[] = [];
    let out: Record<string, OutputTensor>;
    try {
      out = await this.model.run(batch, [items.length, 3, h, w], (b) => returned.push(b));
    } finally {
      this.buffers.give(returned);
    }
    const names = this.spec.outputs.map((o) => o.name);
    const widths = this.spec.outputs.map((o) => Number(o.shape[o.shape.length - 1]));
    return items.map((_, k) => {
      const x: number[] = [];
      names.forEach((name, n) => {
        const data = out[name].data as Float32Array;
        for (let i = 0; i < widths[n]; i++) x.push(data[k * widths[n] + i]);
      });
      return decodeSsrNet(x, this.spec.decode.scale);
    });
  }
}

/** Age and gender together, both batched over all faces given. */
export class AttributeEstimator {
  readonly timings = { faces: 0, ms: 0 };

  constructor(
    private readonly age: SsrNet,
    private readonly gender: SsrNet,
  ) {}

  static async load(runtime: ModelRuntime, ageModel: string, genderModel: string): Promise<AttributeEstimator> {
    const [age, gender] = await Promise.all([SsrNet.load(runtime, ageModel), SsrNet.load(runtime, genderModel)]);
    return new AttributeEstimator(age, gender);
  }

  async estimate(items: readonly FaceInPicture[]): Promise<FaceAttributes[]> {
    const start = performance.now();
    const [ages, genders] = await Promise.all([this.age.predict(items), this.gender.predict(items)]);
    this.timings.faces += items.length;
    this.timings.ms += performance.now() - start;
    return ages.map((age, i) => faceAttributes(age, genders[i]));
  }
}
