import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IngestConfig } from '../config/sections/ingest.js';
import { FacestreamError } from '../errors.js';
import { redactText, redactUrl, urlSecrets } from '../redact.js';

/**
 * What to read and how. `url` forms:
 * - `rtsp://[user:pass@]host[:port]/path` (also rtsps://): IP cameras, media servers.
 * - `http(s)://...`: HLS playlists (.m3u8), MJPEG streams, plain video files over HTTP.
 * - a file path or `file://` URL: local video files.
 * - a video device: `/dev/videoN` or `v4l2:/dev/videoN` (Linux, Video4Linux2). Other systems:
 *   `avfoundation:<index or name>` on macOS (`ffmpeg -f avfoundation -list_devices true -i ""`
 *   lists them, e.g. `avfoundation:0` for the built-in camera) and `dshow:video=<name>` on Windows
 *   (`ffmpeg -list_devices true -f dshow -i dummy`, e.g. `dshow:video=Integrated Camera`).
 *   Only v4l2 is tested; the others are ffmpeg's own input formats, passed through as they are.
 * - `lavfi:<filtergraph>`: ffmpeg's synthetic sources, e.g. `lavfi:testsrc2=size=640x360:rate=25`.
 */
export interface SourceSpec {
  /** Stream id: letters, digits, `._-`, 1-64 characters; it names the stream in frames, logs and metrics. */
  id: string;
  url: string;
  /** Most frames per second delivered (default: config ingest.fps, else the source's rate). */
  fps?: number;
  /** Largest frame delivered (default: config ingest.maxWidth/maxHeight); scaled down keeping aspect. */
  maxWidth?: number;
  maxHeight?: number;
  /**
   * Read at the source's native rate, like a camera (ffmpeg -re). Default true for files and
   * lavfi; false reads as fast as the consumer takes frames (offline work, with pause/resume).
   */
  realtime?: boolean;
  /** Files: start over at the end, forever (ffmpeg -stream_loop -1). */
  loop?: boolean;
  /** RTSP transport (default: config ingest.rtspTransport, TCP). */
  rtspTransport?: 'tcp' | 'udp';
  /**
   * What a clean end of input means. 'stop': the stream is over (state 'stopped', event 'ended');
   * the default for files and lavfi. 'reconnect': the source went away and is retried; the
   * default for RTSP, HTTP and devices, which are expected to run forever.
   */
  onEnd?: 'stop' | 'reconnect';
  /** Devices: capture size asked of the device, e.g. '1280x720' (ffmpeg -video_size). */
  videoSize?: string;
  /** Devices: capture rate asked of the device (ffmpeg -framerate). */
  framerate?: number;
  /** Devices: the device's pixel or compressed format, e.g. 'mjpeg' (ffmpeg -input_format). */
  inputFormat?: string;
}

export type SourceKind = 'rtsp' | 'http' | 'file' | 'device' | 'lavfi';

/** A SourceSpec checked and completed with the config's defaults: everything the ffmpeg command needs. */
export interface ResolvedSource {
  id: string;
  kind: SourceKind;
  /** What follows ffmpeg's -i. May hold credentials: never log or return it; use `label`. */
  input: string;
  /** ffmpeg input format (-f before -i) where it cannot be guessed: lavfi, v4l2, avfoundation, dshow. */
  format?: string;
  /** The URL with credentials replaced, safe for logs, errors and APIs. */
  label: string;
  /** Network and device sources: expected to run forever, retried after errors. */
  live: boolean;
  fps?: number;
  maxWidth: number;
  maxHeight: number;
  realtime: boolean;
  loop: boolean;
  rtspTransport: 'tcp' | 'udp';
  onEnd: 'stop' | 'reconnect';
  videoSize?: string;
  framerate?: number;
  inputFormat?: string;
  /** Credentials found in the URL; scrubbed from every text that leaves this module. */
  secrets: string[];
}

const ID = /^[A-Za-z0-9._-]{1,64}$/;
const DEVICE_FORMATS = new Set(['v4l2', 'avfoundation', 'dshow']);
/** C0 and C1 control characters (NUL, CR, LF, TAB, ESC, DEL...): never part of a source. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

function invalid(message: string, spec: Partial<SourceSpec>): FacestreamError {
  return new FacestreamError('BAD_REQUEST', message, { streamId: spec.id });
}

/** Checks a spec and fills in defaults; throws a BAD_REQUEST FacestreamError that says what is wrong. */
export function resolveSource(spec: SourceSpec, config: IngestConfig): ResolvedSource {
  if (typeof spec.id !== 'string' || !ID.test(spec.id)) throw invalid(`source id ${JSON.stringify(spec.id)} must be 1-64 letters, digits, '.', '_' or '-'`, spec);
  if (typeof spec.url !== 'string' || !spec.url.trim()) throw invalid(`source ${spec.id}: url is empty`, spec);
  const url = spec.url.trim();
  checkUrlCharacters(url, spec);
  const positive = (name: string, v: number | undefined, max: number) => {
    if (v !== undefined && !(Number.isFinite(v) && v > 0 && v <= max)) throw invalid(`source ${spec.id}: ${name} must be a number in (0, ${max}]`, spec);
  };
  positive('fps', spec.fps, 240);
  positive('maxWidth', spec.maxWidth, 16_384);
  positive('maxHeight', spec.maxHeight, 16_384);
  positive('framerate', spec.framerate, 1000);
  if (spec.videoSize !== undefined && !/^\d{1,5}x\d{1,5}$/.test(spec.videoSize)) throw invalid(`source ${spec.id}: videoSize must look like 1280x720`, spec);
  if (spec.inputFormat !== undefined && !/^[A-Za-z0-9_]{1,32}$/.test(spec.inputFormat)) throw invalid(`source ${spec.id}: inputFormat must be an ffmpeg format name like mjpeg`, spec);

  const { kind, input, format } = classify(url, spec);
  const fileLike = kind === 'file' || kind === 'lavfi';
  return {
    id: spec.id,
    kind,
    input,
    format,
    label: redactUrl(url),
    live: !fileLike,
    fps: spec.fps ?? config.fps,
    maxWidth: Math.floor(spec.maxWidth ?? config.maxWidth),
    maxHeight: Math.floor(spec.maxHeight ?? config.maxHeight),
    realtime: spec.realtime ?? fileLike,
    loop: spec.loop ?? false,
    rtspTransport: spec.rtspTransport ?? config.rtspTransport,
    onEnd: spec.onEnd ?? (fileLike ? 'stop' : 'reconnect'),
    videoSize: spec.videoSize,
    framerate: spec.framerate,
    inputFormat: spec.inputFormat,
    secrets: urlSecrets(url),
  };
}

/**
 * Characters no source may hold. A NUL cannot be passed to a process at all (spawning ffmpeg
 * would throw), and CR/LF or spaces in a network URL go onto the RTSP/HTTP wire as they are,
 * where they split or inject request headers. Throws BAD_REQUEST naming the character.
 */
export function checkUrlCharacters(url: string, spec: Pick<SourceSpec, 'id'>): void {
  const bad = CONTROL.exec(url);
  if (bad) throw invalid(`source ${spec.id}: the url holds a control character (U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()} at ${bad.index}); percent-encode it`, spec);
  if (/^(rtsps?|https?):\/\//i.test(url)) {
    const space = /\s/.exec(url);
    if (space) throw invalid(`source ${spec.id}: a network url may not hold spaces (at ${space.index}); percent-encode them as %20`, spec);
  }
}

function classify(url: string, spec: SourceSpec): { kind: SourceKind; input: string; format?: string } {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'rtsp' || scheme === 'rtsps') return { kind: 'rtsp', input: url };
  if (scheme === 'http' || scheme === 'https') return { kind: 'http', input: url };
  if (scheme === 'file') {
    try {
      return { kind: 'file', input: fileURLToPath(url) };
    } catch (err) {
      throw invalid(`source ${spec.id}: bad file URL: ${(err as Error).message}`, spec);
    }
  }
  if (scheme) throw invalid(`source ${spec.id}: unsupported scheme ${scheme}:// (use rtsp, rtsps, http, https, file, a device or lavfi:)`, spec);
  const prefixed = /^(lavfi|v4l2|avfoundation|dshow):(.*)$/s.exec(url);
  if (prefixed) {
    const [, fmt, rest] = prefixed;
    if (!rest) throw invalid(`source ${spec.id}: nothing after ${fmt}:`, spec);
    if (fmt === 'lavfi') return { kind: 'lavfi', input: rest, format: 'lavfi' };
    if (DEVICE_FORMATS.has(fmt)) return { kind: 'device', input: rest, format: fmt };
  }
  if (/^\/dev\/video\d+$/.test(url)) return { kind: 'device', input: url, format: 'v4l2' };
  // Anything else is a path; resolve it so that ffmpeg's messages name the file unambiguously.
  return { kind: 'file', input: path.resolve(url) };
}

export { redactText, redactUrl };
