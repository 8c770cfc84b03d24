import { Writer } from './protobuf.js';

/**
 * Writes a new ONNX model (ModelProto) from nodes and initializers, for networks whose weights come
 * in another format (e.g. a TensorFlow.js weights manifest) and are turned into ONNX by project
 * code. Field numbers are those of onnx.proto. The output depends only on what was added and in
 * which order, so building twice from the same weights gives the same bytes (and sha256).
 */

const MODEL_IR_VERSION = 1;
const MODEL_PRODUCER_NAME = 2;
const MODEL_PRODUCER_VERSION = 3;
const MODEL_DOC_STRING = 6;
const MODEL_GRAPH = 7;
const MODEL_OPSET_IMPORT = 8;
const MODEL_METADATA = 14;
const GRAPH_NODE = 1;
const GRAPH_NAME = 2;
const GRAPH_INITIALIZER = 5;
const GRAPH_INPUT = 11;
const GRAPH_OUTPUT = 12;
const NODE_INPUT = 1;
const NODE_OUTPUT = 2;
const NODE_NAME = 3;
const NODE_OP_TYPE = 4;
const NODE_ATTRIBUTE = 5;
const ATTR_NAME = 1;
const ATTR_I = 3;
const ATTR_INTS = 8;
const ATTR_TYPE = 20;
const ATTR_TYPE_INT = 2;
const ATTR_TYPE_INTS = 7;
const TENSOR_DIMS = 1;
const TENSOR_DATA_TYPE = 2;
const TENSOR_NAME = 8;
const TENSOR_RAW_DATA = 9;
const FLOAT = 1;
const INT64 = 7;

/** An attribute value: an integer or a list of integers (all the operators used here need). */
export type AttributeValue = number | number[];

/** A tensor dimension: a fixed size, or a named symbolic one (e.g. "batch"). */
export type Dim = number | string;

interface Tensor {
  name: string;
  dims: number[];
  type: typeof FLOAT | typeof INT64;
  raw: Uint8Array;
}

function encodeAttribute(name: string, value: AttributeValue): Uint8Array {
  const w = new Writer().string(ATTR_NAME, name);
  if (Array.isArray(value)) {
    w.varint(ATTR_TYPE, ATTR_TYPE_INTS);
    for (const v of value) w.varint(ATTR_INTS, v);
  } else w.varint(ATTR_TYPE, ATTR_TYPE_INT).varint(ATTR_I, value);
  return w.finish();
}

function encodeValueInfo(name: string, dims: readonly Dim[]): Uint8Array {
  const shape = new Writer();
  for (const d of dims) shape.bytes(1, typeof d === 'number' ? new Writer().varint(1, d).finish() : new Writer().string(2, d).finish());
  const tensorType = new Writer().varint(1, FLOAT).bytes(2, shape.finish()).finish();
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
    return this.tensor(hint, dims, FLOAT, littleEndian(data), data.length);
  }

  /** Adds an int64 initializer (shapes, pads, axes); returns its (fresh) name. */
  int64s(hint: string, values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.tensor(hint, dims, INT64, littleEndian(BigInt64Array.from(values, (v) => BigInt(v))), values.length);
  }

  private tensor(hint: string, dims: readonly number[], type: Tensor['type'], raw: Uint8Array, count: number): string {
    if (count !== dims.reduce((a, b) => a * b, 1)) throw new Error(`initializer ${hint}: ${count} values for shape [${dims.join(', ')}]`);
    const name = this.fresh(hint);
    this.tensors.set(name, { name, dims: [...dims], type, raw });
    return name;
  }

  /**
   * Appends a node (nodes must be added in topological order); returns its output names, fresh
   * names derived from `outputHint` unless `outputs` names them.
   */
  node(opType: string, inputs: readonly string[], attributes: Record<string, AttributeValue> = {}, outputs?: readonly string[]): string[] {
    const outs = outputs ? [...outputs] : [this.fresh(opType.toLowerCase())];
    for (const o of outs) this.names.add(o);
    const w = new Writer();
    for (const i of inputs) w.string(NODE_INPUT, i);
    for (const o of outs) w.string(NODE_OUTPUT, o);
    w.string(NODE_NAME, this.fresh(`${opType.toLowerCase()}_node`));
    w.string(NODE_OP_TYPE, opType);
    for (const [name, value] of Object.entries(attributes)) w.bytes(NODE_ATTRIBUTE, encodeAttribute(name, value));
    this.nodes.push(w.finish());
    return outs;
  }

  /** The ModelProto bytes. */
  encode(meta: { producer: string; producerVersion: string; doc?: string; metadata?: Record<string, string> }): Uint8Array {
    const graph = new Writer();
    for (const n of this.nodes) graph.bytes(GRAPH_NODE, n);
    graph.string(GRAPH_NAME, this.graphName);
    for (const t of this.tensors.values()) {
      const w = new Writer();
      for (const d of t.dims) w.varint(TENSOR_DIMS, d);
      w.varint(TENSOR_DATA_TYPE, t.type).string(TENSOR_NAME, t.name).bytes(TENSOR_RAW_DATA, t.raw);
      graph.bytes(GRAPH_INITIALIZER, w.finish());
    }
    for (const i of this.inputs) graph.bytes(GRAPH_INPUT, i);
    for (const o of this.outputs) graph.bytes(GRAPH_OUTPUT, o);
    // IR version 7 is the one that goes with opset 13.
    const model = new Writer().varint(MODEL_IR_VERSION, 7).string(MODEL_PRODUCER_NAME, meta.producer).string(MODEL_PRODUCER_VERSION, meta.producerVersion);
    if (meta.doc) model.string(MODEL_DOC_STRING, meta.doc);
    model.bytes(MODEL_GRAPH, graph.finish());
    model.bytes(MODEL_OPSET_IMPORT, new Writer().string(1, '').varint(2, this.opset).finish());
    for (const [key, value] of Object.entries(meta.metadata ?? {})) model.bytes(MODEL_METADATA, new Writer().string(1, key).string(2, value).finish());
    return model.finish();
  }
}
