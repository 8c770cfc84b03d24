import type { FrameResult } from '../../pipeline/result.js';

/**
 * The per-frame message on NATS: the FrameResult as JSON, optionally followed by a JPEG of the
 * frame. Layout: u32 big-endian length of the JSON, the JSON (UTF-8), then the JPEG bytes (none
 * when the message carries no picture). The JSON's `jpeg` field says the picture's size.
 */
export interface FrameMessage {
  result: FrameResult;
  /** The node that processed the frame. */
  node: string;
  jpeg?: { data: Uint8Array; width: number; height: number };
}

export function encodeFrameMessage(m: FrameMessage): Uint8Array {
  const json = Buffer.from(JSON.stringify({ result: m.result, node: m.node, jpeg: m.jpeg ? { width: m.jpeg.width, height: m.jpeg.height } : undefined }), 'utf8');
  const out = Buffer.allocUnsafe(4 + json.length + (m.jpeg?.data.length ?? 0));
  out.writeUInt32BE(json.length, 0);
  json.copy(out, 4);
  if (m.jpeg) out.set(m.jpeg.data, 4 + json.length);
  return out;
}

/** Throws on a message that is not a frame message (a foreign publisher on our subject). */
export function decodeFrameMessage(data: Uint8Array): FrameMessage {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length < 4) throw new Error('frame message too short');
  const n = buf.readUInt32BE(0);
  if (4 + n > buf.length) throw new Error('frame message length out of range');
  const head = JSON.parse(buf.subarray(4, 4 + n).toString('utf8')) as { result: FrameResult; node: string; jpeg?: { width: number; height: number } };
  if (!head.result || typeof head.result.streamId !== 'string') throw new Error('frame message without a result');
  const rest = buf.subarray(4 + n);
  return { result: head.result, node: head.node, jpeg: head.jpeg && rest.length ? { data: rest, width: head.jpeg.width, height: head.jpeg.height } : undefined };
}
