import ort from 'onnxruntime-node';
import type { OutputTensor } from './inference-thread.js';

/**
 * Items per onnxruntime run on the CPU provider when runtime.maxRunBatch is not set. onnxruntime's
 * CPU arena belongs to one session and keeps the largest working set that session ever ran for
 * the life of the process: one R-Net batch of ~800 candidates of a 1080p crowd frame held ~130 MB,
 * an O-Net batch of 150 ~100 MB, in addition to P-Net's. Runs of 64 hold ~10-40 MB and are no
 * slower (smaller working sets stay in cache); figures in the README's Benchmarks section.
 */
export const CPU_MAX_RUN_BATCH = 64;

function outputsOf(out: ort.InferenceSession.OnnxValueMapType): Record<string, OutputTensor> {
  const outputs: Record<string, OutputTensor> = {};
  for (const [name, t] of Object.entries(out)) outputs[name] = { data: (t as ort.Tensor).data as Float32Array, dims: [...(t as ort.Tensor).dims] };
  return outputs;
}

/**
 * Runs `session` on a float32 batch `input` of shape `dims` ([batch, ...]) as runs of at most
 * `maxBatch` items (views on `input`, no copy) and joins the outputs along their first axis, so
 * callers see one run. Every output must have the batch as its first axis (true of every model in
 * the manifest); a model whose output does not gets an error naming the setting to raise.
 */
export async function runInChunks(session: ort.InferenceSession, inputName: string, input: Float32Array, dims: readonly number[], maxBatch: number): Promise<Record<string, OutputTensor>> {
  const batch = dims[0];
  if (batch <= maxBatch) return outputsOf(await session.run({ [inputName]: new ort.Tensor('float32', input, dims) }));
  const itemLength = dims.slice(1).reduce((a, b) => a * b, 1);
  const parts: Record<string, OutputTensor>[] = [];
  for (let start = 0; start < batch; start += maxBatch) {
    const n = Math.min(maxBatch, batch - start);
    const view = input.subarray(start * itemLength, (start + n) * itemLength);
    const part = outputsOf(await session.run({ [inputName]: new ort.Tensor('float32', view, [n, ...dims.slice(1)]) }));
    for (const [name, t] of Object.entries(part)) {
      if (t.dims[0] !== n) throw new Error(`output "${name}" has shape [${t.dims.join(', ')}], not [${n}, ...]: it cannot be run in parts; raise runtime.maxRunBatch above ${batch}`);
    }
    parts.push(part);
  }
  const joined: Record<string, OutputTensor> = {};
  for (const name of Object.keys(parts[0])) {
    const data = new Float32Array(parts.reduce((sum, p) => sum + p[name].data.length, 0));
    let offset = 0;
    for (const p of parts) {
      data.set(p[name].data, offset);
      offset += p[name].data.length;
    }
    joined[name] = { data, dims: [batch, ...parts[0][name].dims.slice(1)] };
  }
  return joined;
}
