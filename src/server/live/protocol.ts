import type { AppearanceEvent } from '../../pipeline/bus.js';
import type { FrameResult } from '../../pipeline/result.js';
import type { StreamInfo } from '../streams.js';

/**
 * The WebSocket protocol, version 1 (subprotocol "facestream.v1"), at GET /api/v1/live.
 *
 * Connect with the API key as `Authorization: Bearer <key>` or, from a browser, as a second
 * subprotocol `facestream.key.<key>` beside `facestream.v1`. Query parameters set the first
 * subscription: `streams` (comma-separated ids; default every stream), `jpeg` (1: also send
 * pictures), `fps` (pictures per second per stream), `width` (picture width), `quality`.
 *
 * Server to client: text messages are JSON objects `{ v: 1, type, ... }`:
 * - hello: sent first, and again as `state` after each subscribe: the streams with their state,
 *   who is in view on each subscribed stream now (`appearances`), the recent appearance log,
 *   gallery counts, the subscription. A client that reconnects gets the whole current state here.
 * - frame: one processed frame of a subscribed stream: the pipeline's FrameResult (streamId, seq,
 *   pts, capturedAt, processedAt, width, height, faces[{trackId, box, score, landmarks, identity,
 *   age, gender}]). Boxes are in the frame's pixels.
 * - stream: a stream was added, updated, removed or changed state (`event`, `stream`).
 * - stats: once a second, each stream's state, FPS, latency and drop counts.
 * - appearance: an identity appeared in or left a subscribed stream (`event`: 'appeared' | 'left',
 *   streamId, identity, firstSeen, lastSeen, trackIds, and `appearances`: the history's
 *   appearance ids of those tracks with their crop URLs, [{ id, trackId, cropUrl }]).
 * - history: the appearance history changed: `event: 'stored'` with the stored `appearance` (id,
 *   streamId, identity or null, cropUrl, snapshotUrl, times...; to the clients of its stream), or
 *   `event: 'deleted'` with `reason`, `count` and the `ids` (null when over 100).
 * - library: a cluster of unknown appearances was created, updated, named, merged, split or
 *   discarded (`event`, `clusterId`, `identity` when named).
 * - gallery: an identity or template was created, updated or removed (`event`, `identity`,
 *   `template` without its embedding, `counts`); after a bulk change (an import), one
 *   `event: 'changed'` with the number of `changes` and the new `counts` instead.
 * - dropped: this client was too slow and `count` messages were dropped in total so far.
 * - error: a message from the client was not understood (`code`, `detail`); the connection stays.
 *
 * Binary messages carry a frame together with its picture, so that the overlay and the picture
 * always belong to the same seq: 4 bytes big-endian header length N, N bytes of UTF-8 JSON (the
 * `frame` message plus `jpeg: { width, height, bytes }`, boxes still in frame pixels), then the
 * JPEG. Frames between pictures come as text.
 *
 * Client to server (text JSON): `{ type: 'subscribe', streams: ['id', ...] | '*', jpeg?: false |
 * { fps?, width?, quality? } }` replaces the subscription; `{ type: 'ping' }` is answered with
 * `{ type: 'pong' }`. The server also pings at the WebSocket level every heartbeatMs and drops
 * clients that do not answer.
 */

export const PROTOCOL_VERSION = 1;

export interface JpegOptions {
  fps: number;
  width: number;
  quality: number;
}

export interface Subscription {
  /** Stream ids, or null for every stream (present and future). */
  streams: string[] | null;
  jpeg: JpegOptions | null;
}

export interface StateMessage {
  v: 1;
  type: 'hello' | 'state';
  clientId?: string;
  role?: string;
  heartbeatMs?: number;
  serverTime: number;
  subscription: Subscription;
  streams: StreamInfo[];
  appearances: Record<string, { id: string; name: string; firstSeen: number; lastSeen: number }[]>;
  log: AppearanceEvent[];
  gallery: { identities: number; templates: number } | null;
}

export type FrameMessage = { v: 1; type: 'frame' } & FrameResult;

export interface JpegHeader extends FrameMessage {
  jpeg: { width: number; height: number; bytes: number };
}

/** Packs a frame message and its JPEG into one binary message (see the protocol above). */
export function packJpegFrame(header: JpegHeader, jpeg: Buffer): Buffer {
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const out = Buffer.allocUnsafe(4 + head.length + jpeg.length);
  out.writeUInt32BE(head.length, 0);
  head.copy(out, 4);
  jpeg.copy(out, 4 + head.length);
  return out;
}

/** Unpacks a binary frame message (clients, tests). */
export function unpackJpegFrame(data: Buffer): { header: JpegHeader; jpeg: Buffer } {
  const n = data.readUInt32BE(0);
  return { header: JSON.parse(data.subarray(4, 4 + n).toString('utf8')) as JpegHeader, jpeg: data.subarray(4 + n) };
}
