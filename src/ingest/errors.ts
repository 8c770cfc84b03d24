import { INGEST_ERROR_CODES } from '../config/sections/ingest.js';

/**
 * Why a stream is not delivering frames. Stable: APIs, metrics and tests match on the code, the
 * message is for people.
 * - FFMPEG_NOT_FOUND: the ffmpeg program could not be started.
 * - INVALID_SOURCE: ffmpeg rejected the source description itself (bad lavfi graph, bad option).
 * - UNAUTHORIZED / FORBIDDEN: the server answered 401 / 403 (missing or wrong credentials).
 * - REFUSED: the server answered another 4xx status (423 Locked: an account locked out after
 *   failed logins; 429: too many requests); the message holds the status. Not retried by default.
 * - NOT_FOUND: no such file, device or server path (404).
 * - CONNECTION_REFUSED: nothing listens at that host and port.
 * - HOST_UNREACHABLE: no route to the host, or its name does not resolve.
 * - TIMEOUT: the host did not answer in time, or no first frame came within startTimeoutMs.
 * - PROTOCOL_NOT_FOUND: this ffmpeg build lacks the protocol (e.g. https without TLS).
 * - DECODER_NOT_FOUND: this ffmpeg build cannot decode the stream's codec.
 * - INVALID_DATA: the input is not a readable video container or stream (corrupt, truncated, not video at all).
 * - NO_VIDEO: the input is readable but has no video stream (e.g. audio only).
 * - PERMISSION_DENIED: the file or device may not be read by this user.
 * - DEVICE_BUSY: another program holds the capture device.
 * - STALLED: a live stream stopped delivering frames for stallTimeoutMs (the watchdog restarted it).
 * - STREAM_ENDED: a source expected to run forever ended cleanly (camera or server closed the session).
 * - FFMPEG_FAILED: ffmpeg failed for a reason not recognised above; the message quotes its last error line.
 */
export type IngestErrorCode = (typeof INGEST_ERROR_CODES)[number];
export { INGEST_ERROR_CODES };

export interface IngestError {
  code: IngestErrorCode;
  /** Readable, credentials scrubbed. */
  message: string;
}

interface Rule {
  code: IngestErrorCode;
  pattern: RegExp;
  explain: string;
}

/**
 * ffmpeg's wording for each failure. Order matters: the first rule that matches any error line
 * wins, so specific answers (401) come before generic ones (the "Invalid data" ffmpeg prints
 * after many of them).
 */
const RULES: Rule[] = [
  { code: 'UNAUTHORIZED', pattern: /\b401\b.*Unauthori[sz]ed|authorization failed/i, explain: 'the server refused the credentials (401 Unauthorized)' },
  { code: 'FORBIDDEN', pattern: /\b403\b.*Forbidden/i, explain: 'the server refused access (403 Forbidden)' },
  { code: 'NOT_FOUND', pattern: /\b404\b.*Not Found|No such file or directory|Cannot open video device/i, explain: 'not found' },
  { code: 'CONNECTION_REFUSED', pattern: /Connection refused/i, explain: 'connection refused (nothing listens at that address)' },
  { code: 'HOST_UNREACHABLE', pattern: /No route to host|Network is unreachable|Host is unreachable|Name or service not known|Temporary failure in name resolution|nodename nor servname|Failed to resolve hostname|Cannot assign requested address/i, explain: 'host unreachable' },
  { code: 'TIMEOUT', pattern: /Connection timed out|timed out|Operation timed out/i, explain: 'the host did not answer in time' },
  { code: 'PERMISSION_DENIED', pattern: /Permission denied|Operation not permitted/i, explain: 'permission denied' },
  { code: 'DEVICE_BUSY', pattern: /Device or resource busy/i, explain: 'the device is busy (another program uses it)' },
  { code: 'PROTOCOL_NOT_FOUND', pattern: /Protocol not found|Protocol not on whitelist/i, explain: 'this ffmpeg cannot speak the protocol' },
  { code: 'DECODER_NOT_FOUND', pattern: /Decoder \(codec .*\) not found|Decoder not found|Unsupported codec|codec not currently supported|Error while opening decoder/i, explain: 'this ffmpeg cannot decode the video codec' },
  { code: 'NO_VIDEO', pattern: /does not contain any stream|matches no streams|no video stream/i, explain: 'the input has no video stream' },
  { code: 'INVALID_SOURCE', pattern: /No such filter|Error initializing complex filters|Unknown input format|Invalid argument|Option .* not found|Error parsing/i, explain: 'ffmpeg rejected the source description' },
  // Any other 4xx answer: ffmpeg maps it to "Invalid data found", which would call a locked-out
  // account (RTSP/HTTP 423 Locked), a rate limit (429) or a 400 "not a readable video".
  { code: 'REFUSED', pattern: /method \w+ failed: 4\d\d|HTTP error 4\d\d|Server returned 4XX Client Error/i, explain: 'the source refused the request (a locked-out account answers 423 Locked, a rate limit 429)' },
  { code: 'INVALID_DATA', pattern: /Invalid data found when processing input|moov atom not found|could not find codec parameters/i, explain: 'not a readable video (corrupt, truncated or not a video)' },
];

/** A line naming the status a server answered with (HTTP or RTSP). */
const STATUS_LINE = /HTTP error \d{3}|method \w+ failed: \d{3}/;

/** ffmpeg's own error lines: `[error]`/`[fatal]` when logged with the level flag, which the command always sets. */
export function isErrorLine(line: string): boolean {
  return /\[(error|fatal|panic)\]/.test(line);
}

/** Strips ffmpeg's `[component @ 0x...] [level]` prefixes. */
export function bareLine(line: string): string {
  return line.replace(/^(\[[^\]]*@ 0x[0-9a-f]+\] )?(\[(?:error|fatal|panic|warning|info|verbose|debug|trace)\] )?/i, '').trim();
}

/**
 * The error in a failed run's stderr. `lines` are already scrubbed and should be those logged
 * since the last frame, so that a decode warning long ago does not explain a later failure.
 * Returns undefined when no line explains it (the caller then reports the exit status).
 */
export function classifyStderr(lines: readonly string[]): (IngestError & { line: string }) | undefined {
  const errors = lines.filter(isErrorLine);
  const candidates = errors.length ? errors : lines;
  for (const rule of RULES) {
    const hits = candidates.filter((l) => rule.pattern.test(l)).map(bareLine);
    if (!hits.length) continue;
    // The last line usually names the input ("rtsp://...: Server returned 404"); an earlier one
    // often says more about the cause ("moov atom not found"): keep both when they differ.
    const [first, last] = [hits[0], hits[hits.length - 1]];
    // The status itself may be on a warning line ("HTTP error 423 Locked") while the error line only says "4XX".
    const status = rule.code === 'REFUSED' ? lines.map(bareLine).find((l) => STATUS_LINE.test(l) && l !== last && l !== first) : undefined;
    return { code: rule.code, message: `${rule.explain}: ${last}${first !== last ? ` (${first})` : ''}${status ? ` (${status})` : ''}`, line: last };
  }
  const last = errors.at(-1);
  return last ? { code: 'FFMPEG_FAILED', message: bareLine(last), line: bareLine(last) } : undefined;
}
