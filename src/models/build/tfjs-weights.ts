import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { FacestreamError } from '../../errors.js';

/**
 * Reads TensorFlow.js weights: a `*-weights_manifest.json` naming weight groups, each a list of
 * shard files holding the group's tensors back to back, in manifest order, without padding.
 * Quantized tensors (uint8 or uint16 with `scale` and `min`) are dequantized as tfjs's
 * `io.decodeWeights` does: value = q * scale + min, computed in double precision and stored as
 * float32 (tfjs-core src/io/io_utils.ts).
 */

const weightEntrySchema = z.object({
  name: z.string(),
  shape: z.array(z.int().nonnegative()),
  dtype: z.literal('float32'),
  quantization: z
    .object({ dtype: z.enum(['uint8', 'uint16']), scale: z.number(), min: z.number() })
    .optional(),
});

const manifestSchema = z.array(z.object({ paths: z.array(z.string()).min(1), weights: z.array(weightEntrySchema) })).min(1);

export interface WeightTensor {
  /** Row-major, in tfjs's layout (conv filters [kh, kw, in, out]). */
  shape: number[];
  data: Float32Array;
}

export function readTfjsWeights(manifestFile: string): Map<string, WeightTensor> {
  let groups: z.infer<typeof manifestSchema>;
  try {
    groups = manifestSchema.parse(JSON.parse(fs.readFileSync(manifestFile, 'utf8')));
  } catch (err) {
    throw new FacestreamError('MODEL_FETCH_FAILED', `cannot read TensorFlow.js weights manifest ${manifestFile}: ${(err as Error).message}`, { file: manifestFile });
  }
  const out = new Map<string, WeightTensor>();
  for (const group of groups) {
    const bytes = Buffer.concat(group.paths.map((p) => fs.readFileSync(path.resolve(path.dirname(manifestFile), p))));
    let offset = 0;
    for (const w of group.weights) {
      const count = w.shape.reduce((a, b) => a * b, 1);
      const q = w.quantization;
      const size = count * (q ? (q.dtype === 'uint8' ? 1 : 2) : 4);
      if (offset + size > bytes.length) {
        throw new FacestreamError('MODEL_FETCH_FAILED', `${manifestFile}: weight ${w.name} runs past the end of its shards (${bytes.length} bytes)`, { file: manifestFile });
      }
      const view = new DataView(bytes.buffer, bytes.byteOffset + offset, size);
      const data = new Float32Array(count);
      if (!q) for (let i = 0; i < count; i++) data[i] = view.getFloat32(i * 4, true);
      else if (q.dtype === 'uint8') for (let i = 0; i < count; i++) data[i] = view.getUint8(i) * q.scale + q.min;
      else for (let i = 0; i < count; i++) data[i] = view.getUint16(i * 2, true) * q.scale + q.min;
      out.set(w.name, { shape: w.shape, data });
      offset += size;
    }
    if (offset !== bytes.length) {
      throw new FacestreamError('MODEL_FETCH_FAILED', `${manifestFile}: the manifest describes ${offset} bytes, the shards hold ${bytes.length}`, { file: manifestFile });
    }
  }
  return out;
}
