/**
 * Errors a user can act on. Each has a stable `code` (tests and API clients match on it, not on the
 * message) and an HTTP-ish `status` so the server can map it without a lookup table of its own.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'FILE_NOT_FOUND'
  | 'NOT_A_FILE'
  | 'EMPTY_FILE'
  | 'IMAGE_UNREADABLE'
  | 'IMAGE_TOO_LARGE'
  | 'NO_FACE'
  | 'MULTIPLE_FACES'
  | 'FACE_TOO_SMALL'
  | 'LOW_QUALITY'
  | 'MODEL_UNKNOWN'
  | 'MODEL_MISSING'
  | 'MODEL_CORRUPT'
  | 'MODEL_FETCH_FAILED'
  | 'MODEL_LOAD_FAILED'
  | 'MODEL_MISMATCH'
  | 'INFERENCE_FAILED'
  | 'GALLERY_MODEL_MISMATCH'
  | 'GALLERY_CORRUPT'
  | 'GALLERY_LOCKED'
  | 'IDENTITY_NOT_FOUND'
  | 'TEMPLATE_NOT_FOUND'
  | 'DUPLICATE_TEMPLATE'
  | 'IDENTITY_EXISTS'
  | 'STREAM_NOT_FOUND'
  | 'STREAM_EXISTS'
  | 'SOURCE_NOT_ALLOWED'
  | 'SOURCE_FAILED'
  | 'TRACK_NOT_FOUND'
  | 'APPEARANCE_NOT_FOUND'
  | 'CLUSTER_NOT_FOUND'
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'OVERLOADED'
  | 'BODY_TOO_LARGE'
  | 'TOO_MANY_FILES'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'RATE_LIMITED'
  | 'ROUTE_NOT_FOUND'
  | 'NOT_READY'
  | 'STORE_UNAVAILABLE'
  | 'STREAM_ON_OTHER_NODE'
  | 'INTERNAL';

const STATUS: Record<ErrorCode, number> = {
  CONFIG_INVALID: 400,
  FILE_NOT_FOUND: 404,
  NOT_A_FILE: 400,
  EMPTY_FILE: 400,
  IMAGE_UNREADABLE: 422,
  IMAGE_TOO_LARGE: 413,
  NO_FACE: 422,
  MULTIPLE_FACES: 422,
  FACE_TOO_SMALL: 422,
  LOW_QUALITY: 422,
  MODEL_UNKNOWN: 400,
  MODEL_MISSING: 503,
  MODEL_CORRUPT: 503,
  MODEL_FETCH_FAILED: 502,
  MODEL_LOAD_FAILED: 503,
  MODEL_MISMATCH: 409,
  INFERENCE_FAILED: 500,
  GALLERY_MODEL_MISMATCH: 409,
  GALLERY_CORRUPT: 500,
  GALLERY_LOCKED: 423,
  IDENTITY_NOT_FOUND: 404,
  TEMPLATE_NOT_FOUND: 404,
  DUPLICATE_TEMPLATE: 409,
  IDENTITY_EXISTS: 409,
  STREAM_NOT_FOUND: 404,
  STREAM_EXISTS: 409,
  SOURCE_NOT_ALLOWED: 403,
  SOURCE_FAILED: 502,
  TRACK_NOT_FOUND: 404,
  APPEARANCE_NOT_FOUND: 404,
  CLUSTER_NOT_FOUND: 404,
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  OVERLOADED: 503,
  BODY_TOO_LARGE: 413,
  TOO_MANY_FILES: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  ROUTE_NOT_FOUND: 404,
  NOT_READY: 503,
  /** Cluster mode: PostgreSQL (the system of record) cannot be reached; reads keep working from the replica. */
  STORE_UNAVAILABLE: 503,
  /** Cluster mode: a stream's frames are on the worker that runs it, not on this api node. */
  STREAM_ON_OTHER_NODE: 421,
  INTERNAL: 500,
};

export class FacestreamError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra machine-readable facts (file, model id, limits) for logs and API problem objects. */
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FacestreamError';
    this.code = code;
    this.status = STATUS[code];
    this.details = details;
  }
}

export function isFacestreamError(err: unknown, code?: ErrorCode): err is FacestreamError {
  return err instanceof FacestreamError && (code === undefined || err.code === code);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
