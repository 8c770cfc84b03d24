/**
 * The protobuf wire format, just enough to edit ONNX graphs: a message is read as a list of
 * fields, each kept as its raw bytes so that everything we do not touch is written back unchanged
 * (unknown and future ONNX fields included).
 */

export const enum WireType {
  Varint = 0,
  Fixed64 = 1,
  Bytes = 2,
  Fixed32 = 5,
}

export interface Field {
  field: number;
  wire: WireType;
  /** Varint value (wire type 0). */
  value?: bigint;
  /** Payload: the bytes of a length-delimited field, or the 4/8 bytes of a fixed one. */
  bytes?: Uint8Array;
}

export function readVarint(buf: Uint8Array, pos: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= buf.length) throw new Error('protobuf: truncated varint');
    const b = buf[pos++];
    result |= BigInt(b & 0x7f) << shift;
    if (!(b & 0x80)) return [result, pos];
    shift += 7n;
    if (shift > 70n) throw new Error('protobuf: varint too long');
  }
}

export function readFields(buf: Uint8Array): Field[] {
  const fields: Field[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const [key, p] = readVarint(buf, pos);
    pos = p;
    const field = Number(key >> 3n);
    const wire = Number(key & 7n) as WireType;
    switch (wire) {
      case WireType.Varint: {
        const [value, q] = readVarint(buf, pos);
        fields.push({ field, wire, value });
        pos = q;
        break;
      }
      case WireType.Bytes: {
        const [len, q] = readVarint(buf, pos);
        const end = q + Number(len);
        if (end > buf.length) throw new Error('protobuf: truncated field');
        fields.push({ field, wire, bytes: buf.subarray(q, end) });
        pos = end;
        break;
      }
      case WireType.Fixed32:
      case WireType.Fixed64: {
        const n = wire === WireType.Fixed32 ? 4 : 8;
        if (pos + n > buf.length) throw new Error('protobuf: truncated field');
        fields.push({ field, wire, bytes: buf.subarray(pos, pos + n) });
        pos += n;
        break;
      }
      default:
        throw new Error(`protobuf: unsupported wire type ${wire as number}`);
    }
  }
  return fields;
}

function varintBytes(v: bigint): number[] {
  // int64 fields are written as 10-byte two's complement when negative, as protobuf does.
  let x = v < 0n ? (1n << 64n) + v : v;
  const out: number[] = [];
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n) b |= 0x80;
    out.push(b);
  } while (x > 0n);
  return out;
}

/** Builds a message from fields. */
export class Writer {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  private push(bytes: Uint8Array | number[]): void {
    const u = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
    this.parts.push(u);
    this.size += u.length;
  }

  private key(field: number, wire: WireType): void {
    this.push(varintBytes(BigInt((field << 3) | wire)));
  }

  varint(field: number, v: number | bigint): this {
    this.key(field, WireType.Varint);
    this.push(varintBytes(BigInt(v)));
    return this;
  }

  bytes(field: number, data: Uint8Array): this {
    this.key(field, WireType.Bytes);
    this.push(varintBytes(BigInt(data.length)));
    this.push(data);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  /** Writes a field read with readFields back as it was. */
  raw(f: Field): this {
    if (f.wire === WireType.Varint) return this.varint(f.field, f.value!);
    if (f.wire === WireType.Bytes) return this.bytes(f.field, f.bytes!);
    this.key(f.field, f.wire);
    this.push(f.bytes!);
    return this;
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let pos = 0;
    for (const p of this.parts) {
      out.set(p, pos);
      pos += p.length;
    }
    return out;
  }
}

export const decodeString = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
