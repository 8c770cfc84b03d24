import {
  ATTR_I,
  ATTR_INTS,
  ATTR_NAME,
  ATTR_TYPE,
  ATTR_TYPE_INT,
  ATTR_TYPE_INTS,
  FLOAT,
  GRAPH_INITIALIZER,
  GRAPH_INPUT,
  GRAPH_NODE,
  GRAPH_VALUE_INFO,
  MODEL_GRAPH,
  NODE_ATTRIBUTE,
  NODE_INPUT,
  NODE_NAME,
  NODE_OP_TYPE,
  NODE_OUTPUT,
  TENSOR_DATA_TYPE,
  TENSOR_DIMS,
  TENSOR_FLOAT_DATA,
  TENSOR_NAME,
  TENSOR_RAW_DATA,
} from './fields.js';
import { Writer, WireType, decodeString, readFields, readVarint, type Field } from './protobuf.js';

/**
 * An editable view of an ONNX model's graph: nodes and float initializers are decoded, everything
 * else (opsets, metadata, graph inputs and outputs, attributes) is kept as the bytes it was.
 * Field numbers are those of onnx.proto.
 */


export interface OnnxNode {
  opType: string;
  name: string;
  inputs: string[];
  outputs: string[];
  /** AttributeProto entries, raw. */
  attributes: Field[];
  /** Other NodeProto fields (domain, doc string), raw. */
  rest: Field[];
}

interface Initializer {
  name: string;
  dims: number[];
  /** Float values: decoded on first use (a 100 MB model without PReLU is never decoded), or created. */
  data?: Float32Array;
  /** The original bytes, written back when the tensor was not replaced. */
  raw?: Uint8Array;
}

export function intAttribute(name: string, value: number): Field {
  return { field: NODE_ATTRIBUTE, wire: WireType.Bytes, bytes: new Writer().string(ATTR_NAME, name).varint(ATTR_TYPE, ATTR_TYPE_INT).varint(ATTR_I, value).finish() };
}

export function intsAttribute(name: string, values: number[]): Field {
  const w = new Writer().string(ATTR_NAME, name).varint(ATTR_TYPE, ATTR_TYPE_INTS);
  for (const v of values) w.varint(ATTR_INTS, v);
  return { field: NODE_ATTRIBUTE, wire: WireType.Bytes, bytes: w.finish() };
}

/** An attribute's integer value(s), or undefined when the node does not set it. */
export function readIntsAttribute(node: OnnxNode, name: string): number[] | undefined {
  for (const a of node.attributes) {
    const fields = readFields(a.bytes!);
    const n = fields.find((f) => f.field === ATTR_NAME);
    if (!n || decodeString(n.bytes!) !== name) continue;
    const out: number[] = [];
    for (const f of fields) {
      if (f.field === ATTR_I && f.wire === WireType.Varint) out.push(Number(BigInt.asIntN(64, f.value!)));
      if (f.field === ATTR_INTS) out.push(...varints(f).map(Number));
    }
    return out;
  }
  return undefined;
}

function varints(f: Field): bigint[] {
  if (f.wire === WireType.Varint) return [BigInt.asIntN(64, f.value!)];
  const out: bigint[] = [];
  let pos = 0;
  while (pos < f.bytes!.length) {
    const [v, p] = readVarint(f.bytes!, pos);
    out.push(BigInt.asIntN(64, v));
    pos = p;
  }
  return out;
}

function parseNode(bytes: Uint8Array): OnnxNode {
  const node: OnnxNode = { opType: '', name: '', inputs: [], outputs: [], attributes: [], rest: [] };
  for (const f of readFields(bytes)) {
    if (f.field === NODE_INPUT) node.inputs.push(decodeString(f.bytes!));
    else if (f.field === NODE_OUTPUT) node.outputs.push(decodeString(f.bytes!));
    else if (f.field === NODE_NAME) node.name = decodeString(f.bytes!);
    else if (f.field === NODE_OP_TYPE) node.opType = decodeString(f.bytes!);
    else if (f.field === NODE_ATTRIBUTE) node.attributes.push(f);
    else node.rest.push(f);
  }
  return node;
}

function encodeNode(node: OnnxNode): Uint8Array {
  const w = new Writer();
  for (const i of node.inputs) w.string(NODE_INPUT, i);
  for (const o of node.outputs) w.string(NODE_OUTPUT, o);
  if (node.name) w.string(NODE_NAME, node.name);
  w.string(NODE_OP_TYPE, node.opType);
  for (const a of node.attributes) w.raw(a);
  for (const r of node.rest) w.raw(r);
  return w.finish();
}

/** Little-endian float32 values, copied (the bytes may sit at any offset of a Node Buffer's pool). */
function floatsOf(bytes: Uint8Array): Float32Array {
  if (bytes.length % 4) throw new Error('float tensor data is not a whole number of floats');
  return new Float32Array(new Uint8Array(bytes).buffer);
}

/** Name and shape only; the values are read by `decodeFloats` when a rule needs them. */
function parseInitializer(bytes: Uint8Array): Initializer {
  const fields = readFields(bytes);
  const name = decodeString(fields.find((f) => f.field === TENSOR_NAME)?.bytes ?? new Uint8Array());
  const dims = fields.filter((f) => f.field === TENSOR_DIMS).flatMap((f) => varints(f).map(Number));
  return { name, dims, raw: bytes };
}

/** A float tensor's values, or undefined for other types and layouts we do not read (external data). */
function decodeFloats(init: Initializer): Float32Array | undefined {
  const fields = readFields(init.raw!);
  if (fields.find((f) => f.field === TENSOR_DATA_TYPE)?.value !== BigInt(FLOAT)) return undefined;
  const raw = fields.find((f) => f.field === TENSOR_RAW_DATA);
  // Packed float_data holds all values in one field; unpacked, one fixed32 field per value.
  const data = raw ? floatsOf(raw.bytes!) : Float32Array.from(fields.filter((f) => f.field === TENSOR_FLOAT_DATA).flatMap((f) => Array.from(floatsOf(f.bytes!))));
  return data.length === init.dims.reduce((a, b) => a * b, 1) ? data : undefined;
}

function encodeInitializer(init: Initializer): Uint8Array {
  if (init.raw) return init.raw;
  const w = new Writer();
  for (const d of init.dims) w.varint(TENSOR_DIMS, d);
  w.varint(TENSOR_DATA_TYPE, FLOAT);
  w.string(TENSOR_NAME, init.name);
  const data = init.data!;
  w.bytes(TENSOR_RAW_DATA, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return w.finish();
}

export class OnnxGraph {
  nodes: OnnxNode[] = [];
  private readonly initializers = new Map<string, Initializer>();
  private modelFields: Field[] = [];
  private graphFields: Field[] = [];
  private counter = 0;

  static parse(model: Uint8Array): OnnxGraph {
    const g = new OnnxGraph();
    g.modelFields = readFields(model);
    const graph = g.modelFields.find((f) => f.field === MODEL_GRAPH);
    if (!graph) throw new Error('ONNX model without a graph');
    for (const f of readFields(graph.bytes!)) {
      if (f.field === GRAPH_NODE) g.nodes.push(parseNode(f.bytes!));
      else if (f.field === GRAPH_INITIALIZER) {
        const init = parseInitializer(f.bytes!);
        g.initializers.set(init.name, init);
      } else g.graphFields.push(f);
    }
    return g;
  }

  producer(tensor: string): OnnxNode | undefined {
    return this.nodes.find((n) => n.outputs.includes(tensor));
  }

  consumers(tensor: string): OnnxNode[] {
    return this.nodes.filter((n) => n.inputs.includes(tensor));
  }

  /** A float initializer's values and shape, or undefined when `name` is not one. */
  floats(name: string): { data: Float32Array; dims: number[] } | undefined {
    const init = this.initializers.get(name);
    if (!init) return undefined;
    init.data ??= decodeFloats(init);
    return init.data ? { data: init.data, dims: init.dims } : undefined;
  }

  /** Adds a float initializer under a fresh name derived from `hint`; returns the name. */
  addFloats(hint: string, data: Float32Array, dims: number[]): string {
    if (data.length !== dims.reduce((a, b) => a * b, 1)) throw new Error(`initializer ${hint}: ${data.length} values for shape [${dims.join(', ')}]`);
    const name = this.fresh(hint);
    this.initializers.set(name, { name, dims, data });
    return name;
  }

  /** A tensor name not used anywhere in the graph yet. */
  fresh(hint: string): string {
    let name: string;
    do name = `${hint}__fs${this.counter++}`;
    while (this.initializers.has(name) || this.nodes.some((n) => n.outputs.includes(name)));
    return name;
  }

  node(opType: string, inputs: string[], outputs: string[], attributes: Field[] = []): OnnxNode {
    return { opType, name: this.fresh(opType.toLowerCase()), inputs, outputs, attributes, rest: [] };
  }

  /** Replaces `old` by `replacement` at its place in the node list (kept topologically sorted by the caller). */
  replace(old: OnnxNode, ...replacement: OnnxNode[]): void {
    const i = this.nodes.indexOf(old);
    if (i < 0) throw new Error(`node ${old.name} is not in the graph`);
    this.nodes.splice(i, 1, ...replacement);
  }

  insertBefore(anchor: OnnxNode, ...nodes: OnnxNode[]): void {
    const i = this.nodes.indexOf(anchor);
    if (i < 0) throw new Error(`node ${anchor.name} is not in the graph`);
    this.nodes.splice(i, 0, ...nodes);
  }

  /**
   * The model, re-encoded. Initializers that neither a node nor a graph input names are left out,
   * and so are value_info shape hints: a rewrite changes intermediate shapes, and onnxruntime
   * infers them anyway.
   */
  encode(): Uint8Array {
    const used = new Set(this.nodes.flatMap((n) => n.inputs));
    for (const f of this.graphFields) {
      if (f.field !== GRAPH_INPUT) continue;
      const name = readFields(f.bytes!).find((x) => x.field === 1);
      if (name) used.add(decodeString(name.bytes!));
    }
    const graph = new Writer();
    for (const n of this.nodes) graph.bytes(GRAPH_NODE, encodeNode(n));
    for (const init of this.initializers.values()) if (used.has(init.name)) graph.bytes(GRAPH_INITIALIZER, encodeInitializer(init));
    for (const f of this.graphFields) if (f.field !== GRAPH_VALUE_INFO) graph.raw(f);
    const model = new Writer();
    for (const f of this.modelFields) {
      if (f.field === MODEL_GRAPH) model.bytes(MODEL_GRAPH, graph.finish());
      else model.raw(f);
    }
    return model.finish();
  }
}
