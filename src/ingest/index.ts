export type { Frame } from './frame.js';
export { redactText, redactUrl, resolveSource, type ResolvedSource, type SourceKind, type SourceSpec } from './source.js';
export { FrameSource, type FrameSourceEvents, type FrameSourceOptions, type FrameSourceStats, type StateChange, type StreamState } from './stream.js';
export { INGEST_ERROR_CODES, type IngestError, type IngestErrorCode } from './errors.js';
export { ffmpegSetup, runningFfmpegPids, type FfmpegSetup } from './ffmpeg.js';
