/**
 * JSON schemas shared by the routes. Request schemas reject unknown fields (the app turns off
 * Ajv's removeAdditional); response schemas list every field a client gets, and the serializer
 * drops anything else, so an embedding or a camera password cannot leave by accident.
 */

export const STREAM_ID_PATTERN = '^[A-Za-z0-9._-]{1,64}$';
export const IDENTITY_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$';

const num = { type: 'number' } as const;
const nullableNum = { type: ['number', 'null'] } as const;

export const boxSchema = { type: 'array', items: num, minItems: 4, maxItems: 4, description: '[x1, y1, x2, y2] in picture pixels' } as const;
export const pointSchema = { type: 'array', items: num, minItems: 2, maxItems: 2 } as const;

export const identityRefSchema = {
  type: ['object', 'null'],
  properties: { id: { type: 'string' }, name: { type: 'string' }, similarity: num },
} as const;

/** A face in a processed video frame (the WebSocket frame message uses the same shape). */
export const resultFaceSchema = {
  type: 'object',
  properties: {
    trackId: { type: 'integer' },
    box: boxSchema,
    score: num,
    landmarks: { type: 'array', items: pointSchema },
    identity: identityRefSchema,
    age: nullableNum,
    gender: { type: ['string', 'null'], enum: ['male', 'female', null] },
  },
} as const;

const dropsSchema = {
  type: 'object',
  properties: { stale: { type: 'integer' }, 'too-old': { type: 'integer' }, error: { type: 'integer' }, stopped: { type: 'integer' } },
} as const;

export const streamOptionsProperties = {
  fps: { type: 'number', exclusiveMinimum: 0, maximum: 240, description: 'most frames per second read from the source' },
  maxWidth: { type: 'integer', minimum: 16, maximum: 16384, description: 'frames wider than this are scaled down' },
  maxHeight: { type: 'integer', minimum: 16, maximum: 16384 },
  minFaceSize: { type: 'number', minimum: 12, maximum: 4096, description: 'smallest face (px) detected in this stream' },
  recognitionInterval: { type: 'integer', minimum: 1, maximum: 10000, description: 're-recognise tracked faces every N processed frames' },
  detectionMode: { type: 'string', enum: ['tracked', 'full'], description: "'tracked': keyframes, tracked faces and motion between them; 'full': the whole picture every frame (default: detector.mode)" },
  keyframeIntervalMs: { type: 'number', minimum: 0, maximum: 600000, description: 'stream time between keyframes in ms (default: detector.keyframeIntervalMs)' },
  loop: { type: 'boolean', description: 'files: start over at the end' },
  realtime: { type: 'boolean', description: 'files: read at the native frame rate, like a camera' },
  rtspTransport: { type: 'string', enum: ['tcp', 'udp'] },
} as const;

export const streamSchema = {
  $id: 'Stream',
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    url: { type: 'string', description: 'the source URL with credentials replaced by ***' },
    kind: { type: 'string', enum: ['rtsp', 'http', 'file', 'device', 'lavfi'] },
    enabled: { type: 'boolean' },
    options: { type: 'object', properties: streamOptionsProperties },
    state: { type: 'string', enum: ['starting', 'live', 'stalled', 'reconnecting', 'stopped', 'failed'] },
    error: { type: ['object', 'null'], properties: { code: { type: 'string' }, message: { type: 'string' } } },
    inputFps: num,
    fps: num,
    stats: {
      type: 'object',
      properties: {
        framesRead: { type: 'integer' },
        received: { type: 'integer' },
        processed: { type: 'integer' },
        dropped: dropsSchema,
        restarts: { type: 'integer' },
        lastLatencyMs: nullableNum,
        width: { type: ['integer', 'null'] },
        height: { type: ['integer', 'null'] },
        lastFrameAt: nullableNum,
      },
    },
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
  },
} as const;

export const identitySchema = {
  $id: 'Identity',
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    metadata: {},
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
    templates: { type: 'integer' },
  },
} as const;

export const templateSchema = {
  $id: 'Template',
  type: 'object',
  properties: {
    id: { type: 'string' },
    identityId: { type: 'string' },
    source: { type: 'string' },
    contentHash: { type: ['string', 'null'] },
    detectionScore: nullableNum,
    faceSize: nullableNum,
    modelId: { type: 'string' },
    createdAt: { type: 'string' },
  },
} as const;

export const appearanceSchema = {
  type: 'object',
  properties: {
    type: { type: 'string', enum: ['appeared', 'left'] },
    streamId: { type: 'string' },
    identity: { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' } } },
    firstSeen: num,
    lastSeen: num,
    trackIds: { type: 'array', items: { type: 'integer' } },
  },
} as const;

export const presenceSchema = {
  type: 'object',
  properties: { id: { type: 'string' }, name: { type: 'string' }, firstSeen: num, lastSeen: num },
} as const;

/** Pictures sent as JSON: base64 (optionally a data: URL). */
export const base64Picture = { type: 'string', minLength: 4, description: 'the picture file (JPEG, PNG, WebP, ...) in base64, or as a data: URL' } as const;

/** Documents a multipart body without validating it (the route reads the parts as a stream). */
export function multipartBody(description: string, fields: Record<string, object> = {}): object {
  return { description, properties: { file: { type: 'string', format: 'binary', description: 'picture file(s); any field name' }, ...fields } };
}

export const errorResponses = {
  400: { $ref: 'Problem#' },
  401: { $ref: 'Problem#' },
  403: { $ref: 'Problem#' },
  404: { $ref: 'Problem#' },
  409: { $ref: 'Problem#' },
  413: { $ref: 'Problem#' },
  415: { $ref: 'Problem#' },
  422: { $ref: 'Problem#' },
  429: { $ref: 'Problem#' },
  500: { $ref: 'Problem#' },
  503: { $ref: 'Problem#' },
} as const;

/** Response schemas: the given ones plus every problem status. */
export function responses(ok: Record<number, unknown>): Record<number, unknown> {
  return { ...errorResponses, ...ok };
}
