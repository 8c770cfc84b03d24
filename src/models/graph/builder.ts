import * as F from './fields.js';
import { intAttribute, intsAttribute } from './onnx.js';
import { Writer } from './protobuf.js';

/**
 * Writes a new ONNX model (ModelProto) from nodes and initializers, for networks whose weights come
 * in another format (e.g. a TensorFlow.js weights manifest) and are turned into ONNX by project
 * code. Field numbers are those of onnx.proto. The output depends only on what was added and in
 * which order, so building twice from the same weights gives the same bytes (and sha256).
 */

/** An attribute value: an integer or a list of integers (all the operators used here need). */
export type AttributeValue = number | number[];

/** A tensor dimension: a fixed size, or a named symbolic one (e.g. "batch"). */
export type Dim = number | string;

interface Tensor {
  name: string;
  dims: number[];
  type: typeof F.FLOAT | typeof F.INT64;
  raw: Uint8Array;
}

function encodeValueInfo(name: string, dims: readonly Dim[]): Uint8Array {
  const shape = new Writer();
  for (const d of dims) shape.bytes(1, typeof d === 'number' ? new Writer().varint(1, d).finish() : new Writer().string(2, d).finish());
  const tensorType = new Writer().varint(1, F.FLOAT).bytes(2, shape.finish()).finish();
  const type = new Writer().bytes(1, tensorType).finish();
  return new Writer().string(1, name).bytes(2, type).finish();
}

/** Little-endian bytes of a typed array, whatever the machine's byte order. */
function littleEndian(values: Float32Array | BigInt64Array): Uint8Array {
  const out = new Uint8Array(values.length * values.BYTES_PER_ELEMENT);
  const view = new DataView(out.buffer);
  if (values instanceof Float32Array) values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  else values.forEach((v, i) => view.setBigInt64(i * 8, v, true));
  return out;
}

export class OnnxModelBuilder {
  private readonly nodes: Uint8Array[] = [];
  private readonly tensors = new Map<string, Tensor>();
  private readonly inputs: Uint8Array[] = [];
  private readonly outputs: Uint8Array[] = [];
  private readonly names = new Set<string>();
  private counter = 0;

  constructor(
    readonly graphName: string,
    /** Version of the default ("ai.onnx") operator set the nodes follow. */
    readonly opset = 13,
  ) {}

  /** A name not used yet, derived from `hint`. */
  fresh(hint: string): string {
    let name = hint;
    while (this.names.has(name)) name = `${hint}_${++this.counter}`;
    this.names.add(name);
    return name;
  }

  /** Declares a float32 graph input. */
  input(name: string, dims: readonly Dim[]): string {
    this.names.add(name);
    this.inputs.push(encodeValueInfo(name, dims));
    return name;
  }

  /** Declares a float32 graph output (a tensor some node produces). */
  output(name: string, dims: readonly Dim[]): void {
    this.outputs.push(encodeValueInfo(name, dims));
  }

  /** Adds a float32 initializer; returns its (fresh) name. */
  floats(hint: string, data: Float32Array, dims: readonly number[]): string {
    return this.tensor(hint, dims, F.FLOAT, littleEndian(data), data.length);
  }

  /** Adds an int64 initializer (shapes, pads, axes); returns its (fresh) name. */
  int64s(hint: string, values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.tensor(hint, dims, F.INT64, littleEndian(BigInt64Array.from(values, (v) => BigInt(v))), values.length);
  }

  private tensor(hint: string, dims: readonly number[], type: Tensor['type'], raw: Uint8Array, count: number): string {
    if (count !== dims.reduce((a, b) => a * b, 1)) throw new Error(`initializer ${hint}: ${count} values for shape [${dims.join(', ')}]`);
    const name = this.fresh(hint);
    this.tensors.set(name, { name, dims: [...dims], type, raw });
    return name;
  }

  /**
   * Appends a node (nodes must be added in topological order); returns its output names: fresh
   * ones derived from the operator's name unless `outputs` gives them.
   */
  node(opType: string, inputs: readonly string[], attributes: Record<string, AttributeValue> = {}, outputs?: readonly string[]): string[] {
    const outs = outputs ? [...outputs] : [this.fresh(opType.toLowerCase())];
    for (const o of outs) this.names.add(o);
    const w = new Writer();
    for (const i of inputs) w.string(F.NODE_INPUT, i);
    for (const o of outs) w.string(F.NODE_OUTPUT, o);
    w.string(F.NODE_NAME, this.fresh(`${opType.toLowerCase()}_node`));
    w.string(F.NODE_OP_TYPE, opType);
    for (const [name, value] of Object.entries(attributes)) w.raw(Array.isArray(value) ? intsAttribute(name, value) : intAttribute(name, value));
    this.nodes.push(w.finish());
    return outs;
  }

  /** The ModelProto bytes. */
  encode(meta: { producer: string; producerVersion: string; doc?: string }): Uint8Array {
    const graph = new Writer();
    for (const n of this.nodes) graph.bytes(F.GRAPH_NODE, n);
    graph.string(F.GRAPH_NAME, this.graphName);
    for (const t of this.tensors.values()) {
      const w = new Writer();
      for (const d of t.dims) w.varint(F.TENSOR_DIMS, d);
      w.varint(F.TENSOR_DATA_TYPE, t.type).string(F.TENSOR_NAME, t.name).bytes(F.TENSOR_RAW_DATA, t.raw);
      graph.bytes(F.GRAPH_INITIALIZER, w.finish());
    }
    for (const i of this.inputs) graph.bytes(F.GRAPH_INPUT, i);
    for (const o of this.outputs) graph.bytes(F.GRAPH_OUTPUT, o);
    // IR version 7 is the one that goes with opset 13.
    const model = new Writer().varint(F.MODEL_IR_VERSION, 7).string(F.MODEL_PRODUCER_NAME, meta.producer).string(F.MODEL_PRODUCER_VERSION, meta.producerVersion);
    if (meta.doc) model.string(F.MODEL_DOC_STRING, meta.doc);
    model.bytes(F.MODEL_GRAPH, graph.finish());
    model.bytes(F.MODEL_OPSET_IMPORT, new Writer().string(1, '').varint(2, this.opset).finish());
    return model.finish();
  }
}
