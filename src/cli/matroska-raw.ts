/**
 * A minimal Matroska stream of raw RGB24 video frames with their own timestamps, written for
 * ffmpeg to read from a pipe. Raw video piped to ffmpeg (`-f rawvideo`) has no timestamps, so
 * an encoder given it must assume a constant rate; this keeps each frame's presentation time
 * (a variable-frame-rate phone clip stays as long as it was). Only what ffmpeg's matroska demuxer
 * needs: EBML header, a Segment and a Cluster of unknown size, one V_UNCOMPRESSED track whose
 * ColourSpace is the 'RGB\x18' fourcc (rgb24), SimpleBlocks with millisecond timestamps.
 * Layout reference: the Matroska specification (RFC 9559).
 */

const UNKNOWN_SIZE = Buffer.from([0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
/** A SimpleBlock's timestamp is an int16 offset from its Cluster's: start a new Cluster well before. */
const CLUSTER_SPAN_MS = 30_000;

function id(value: number): Buffer {
  const bytes: number[] = [];
  for (let v = value; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from(bytes);
}

/** An EBML size as an 8-byte vint (always valid, simplest). */
function size(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  b[0] |= 0x01;
  return b;
}

function element(elementId: number, ...children: Buffer[]): Buffer {
  const body = Buffer.concat(children);
  return Buffer.concat([id(elementId), size(body.length), body]);
}

function uint(elementId: number, value: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(value));
  return element(elementId, b);
}

const text = (elementId: number, value: string): Buffer => element(elementId, Buffer.from(value, 'utf8'));

/** The stream header: EBML header, Segment (unknown size), Info (ms timestamps) and the one video track. */
export function matroskaHeader(width: number, height: number): Buffer {
  const ebml = element(0x1a45dfa3, uint(0x4286, 1), uint(0x42f7, 1), uint(0x42f2, 4), uint(0x42f3, 8), text(0x4282, 'matroska'), uint(0x4287, 4), uint(0x4285, 2));
  const info = element(0x1549a966, uint(0x2ad7b1, 1_000_000), text(0x4d80, 'facestream'), text(0x5741, 'facestream'));
  const video = element(0xe0, uint(0xb0, width), uint(0xba, height), element(0x2eb524, Buffer.from([0x52, 0x47, 0x42, 24])));
  const track = element(0xae, uint(0xd7, 1), uint(0x73c5, 1), uint(0x83, 1), text(0x86, 'V_UNCOMPRESSED'), video);
  return Buffer.concat([ebml, id(0x18538067), UNKNOWN_SIZE, info, element(0x1654ae6b, track)]);
}

/** Writes frames with millisecond timestamps into Clusters (a new one when the offset would not fit). */
export class MatroskaFrames {
  private clusterMs?: number;

  /** The bytes for one frame at `ms` (non-decreasing): a Cluster header when needed, then its SimpleBlock. */
  frame(ms: number, rgb: Uint8Array): Buffer[] {
    const out: Buffer[] = [];
    const t = Math.round(ms);
    if (this.clusterMs === undefined || t - this.clusterMs > CLUSTER_SPAN_MS || t < this.clusterMs) {
      this.clusterMs = t;
      out.push(Buffer.concat([id(0x1f43b675), UNKNOWN_SIZE, uint(0xe7, t)]));
    }
    const head = Buffer.alloc(4);
    head[0] = 0x81; // track 1
    head.writeInt16BE(t - this.clusterMs, 1);
    head[3] = 0x80; // keyframe
    out.push(Buffer.concat([id(0xa3), size(head.length + rgb.length), head]), Buffer.from(rgb.buffer, rgb.byteOffset, rgb.length));
    return out;
  }
}
