import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { FacestreamError } from '../../errors.js';
import { whileHeld } from '../../ingest/frame-buffers.js';
import type { ServerContext } from '../context.js';
import {
  appearanceSchema,
  IDENTITY_ID_PATTERN,
  presenceSchema,
  resultFaceSchema,
  responses,
  STREAM_ID_PATTERN,
  streamOptionsProperties,
  templateSchema,
  identityNameSchema,
} from '../schemas.js';

const idParams = { type: 'object', properties: { id: { type: 'string', pattern: STREAM_ID_PATTERN } }, required: ['id'], additionalProperties: false } as const;
const stream = { $ref: 'Stream#' } as const;

const createBody = {
  type: 'object',
  additionalProperties: false,
  required: ['url'],
  properties: {
    id: { type: 'string', pattern: STREAM_ID_PATTERN, description: 'default: made from the name' },
    name: { type: 'string', maxLength: 200 },
    url: {
      type: 'string',
      minLength: 1,
      maxLength: 4096,
      description: 'rtsp://[user:pass@]host/path, http(s)://..., a video file under an allowed directory, /dev/videoN, or lavfi:<graph> when allowed',
    },
    enabled: { type: 'boolean', description: 'start now and after restarts (default true)' },
    ...streamOptionsProperties,
  },
} as const;

/** PATCH: every field optional; null clears an option back to the default. */
const patchBody = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    name: createBody.properties.name,
    url: createBody.properties.url,
    enabled: createBody.properties.enabled,
    ...Object.fromEntries(Object.entries(streamOptionsProperties).map(([k, v]) => [k, { anyOf: [v, { type: 'null' }] }])),
  },
} as const;

const enrollBody = {
  type: 'object',
  additionalProperties: false,
  required: ['trackId'],
  properties: {
    trackId: { type: 'integer', minimum: 0, description: 'a track id from the stream\'s latest frame (WebSocket frame message or GET .../faces)' },
    identityId: { type: 'string', pattern: IDENTITY_ID_PATTERN, description: 'add to this identity (created when new, named `name` or the id)' },
    name: { ...identityNameSchema, description: 'add to the identity with this name, or create it' },
  },
  anyOf: [{ required: ['identityId'] }, { required: ['name'] }],
} as const;

/** Streams: CRUD, start/stop, who is in view, the latest faces, and enrolling a face seen live. */
export function streamRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { streams, pipeline } = ctx;

  app.get(
    '/api/v1/streams',
    { schema: { tags: ['streams'], summary: 'List streams with their live state and FPS', response: responses({ 200: { type: 'object', properties: { streams: { type: 'array', items: stream } } } }) } },
    async () => ({ streams: streams.list() }),
  );

  app.post(
    '/api/v1/streams',
    {
      schema: {
        tags: ['streams'],
        summary: 'Create a stream (and start it unless enabled is false); the definition survives restarts',
        body: createBody,
        response: responses({ 201: stream }),
      },
    },
    async (req, reply) => {
      const created = await streams.create(req.body as Parameters<typeof streams.create>[0]);
      reply.code(201).header('location', `/api/v1/streams/${created.id}`);
      return created;
    },
  );

  app.get('/api/v1/streams/:id', { schema: { tags: ['streams'], summary: 'One stream', params: idParams, response: responses({ 200: stream }) } }, async (req) =>
    streams.get((req.params as { id: string }).id),
  );

  app.patch(
    '/api/v1/streams/:id',
    { schema: { tags: ['streams'], summary: 'Change a stream; a running stream restarts when its source or options change', params: idParams, body: patchBody, response: responses({ 200: stream }) } },
    async (req) => streams.update((req.params as { id: string }).id, req.body as Parameters<typeof streams.update>[1]),
  );

  app.delete('/api/v1/streams/:id', { schema: { tags: ['streams'], summary: 'Stop and delete a stream', params: idParams, response: responses({ 204: { type: 'null' } }) } }, async (req, reply) => {
    await streams.remove((req.params as { id: string }).id);
    reply.code(204);
  });

  app.post(
    '/api/v1/streams/:id/start',
    { schema: { tags: ['streams'], summary: 'Enable and start a stream (a failed or ended one starts afresh)', params: idParams, response: responses({ 200: stream }) } },
    async (req) => streams.start((req.params as { id: string }).id),
  );

  app.post(
    '/api/v1/streams/:id/stop',
    { schema: { tags: ['streams'], summary: 'Stop and disable a stream (it stays stopped across restarts)', params: idParams, response: responses({ 200: stream }) } },
    async (req) => streams.stop((req.params as { id: string }).id),
  );

  app.get(
    '/api/v1/streams/:id/appearances',
    {
      schema: {
        tags: ['streams'],
        summary: 'Who is in view now and the recent appearance log (identity first seen / last seen)',
        params: idParams,
        response: responses({ 200: { type: 'object', properties: { current: { type: 'array', items: presenceSchema }, log: { type: 'array', items: appearanceSchema } } } }),
      },
    },
    async (req) => {
      const id = (req.params as { id: string }).id;
      streams.get(id);
      const log = pipeline.appearances(id);
      return { current: log?.current() ?? [], log: log?.log ?? [] };
    },
  );

  app.get(
    '/api/v1/streams/:id/faces',
    {
      schema: {
        tags: ['streams'],
        summary: 'The latest processed frame\'s faces with track ids (what enroll-from-stream picks from)',
        params: idParams,
        response: responses({
          200: {
            type: 'object',
            properties: { seq: { type: ['integer', 'null'] }, capturedAt: { type: ['number', 'null'] }, width: { type: ['integer', 'null'] }, height: { type: ['integer', 'null'] }, faces: { type: 'array', items: resultFaceSchema } },
          },
        }),
      },
    },
    async (req) => {
      const id = (req.params as { id: string }).id;
      streams.get(id);
      const last = latestFrame(ctx, id);
      if (!last) return { seq: null, capturedAt: null, width: null, height: null, faces: [] };
      return { seq: last.frame.seq, capturedAt: last.frame.capturedAt, width: last.frame.width, height: last.frame.height, faces: last.faces };
    },
  );

  app.get(
    '/api/v1/streams/:id/snapshot',
    {
      schema: {
        tags: ['streams'],
        summary: 'The latest processed frame as JPEG',
        params: idParams,
        querystring: { type: 'object', additionalProperties: false, properties: { width: { type: 'integer', minimum: 16, maximum: 7680 } } },
        response: responses({ 200: { type: 'string', format: 'binary', description: 'image/jpeg' } }),
      },
    },
    async (req, reply) => {
      const id = (req.params as { id: string }).id;
      streams.get(id);
      const last = latestFrame(ctx, id);
      if (!last) throw new FacestreamError('NOT_READY', `stream ${id} has no processed frame yet`, { streamId: id });
      const { frame } = last;
      const width = Math.min((req.query as { width?: number }).width ?? frame.width, frame.width);
      const jpeg = await whileHeld(frame, () => sharp(frame.data, { raw: { width: frame.width, height: frame.height, channels: 3 } }).resize(width).jpeg({ quality: 85 }).toBuffer());
      reply.type('image/jpeg').header('x-frame-seq', String(frame.seq));
      return jpeg;
    },
  );

  app.post(
    '/api/v1/streams/:id/enroll',
    {
      config: { rateLimit: rateLimitOf(ctx) },
      schema: {
        tags: ['streams', 'gallery'],
        summary: 'Enroll the face of a track in the stream\'s latest frame under an identity',
        params: idParams,
        body: enrollBody,
        response: responses({ 201: { type: 'object', properties: { identity: { $ref: 'Identity#' }, template: templateSchema } } }),
      },
    },
    async (req, reply) => {
      const id = (req.params as { id: string }).id;
      const body = req.body as { trackId: number; identityId?: string; name?: string };
      streams.get(id);
      const last = latestFrame(ctx, id);
      const face = last?.faces.find((f) => f.trackId === body.trackId);
      if (!last || !face) {
        throw new FacestreamError('TRACK_NOT_FOUND', `track ${body.trackId} is not in stream ${id}'s latest frame${last ? ` (seq ${last.frame.seq}: tracks ${last.faces.map((f) => f.trackId).join(', ') || 'none'})` : ''}`, {
          streamId: id,
          trackId: body.trackId,
        });
      }
      const ref = body.identityId ? { id: body.identityId, name: body.name } : { name: body.name };
      const template = await whileHeld(last.frame, () => ctx.enroller.enrollFace(ref, last.frame, face.detection, `stream:${id}#${last.frame.seq}/track:${face.trackId}`));
      reply.code(201);
      return { identity: ctx.gallery.requireIdentity(template.identityId), template };
    },
  );
}

/**
 * The latest processed frame of a stream run by this process. In cluster mode a stream that runs
 * on a worker has its frames (pixels, tracks) there only: say so (STREAM_ON_OTHER_NODE, 421)
 * instead of "no frame yet" or "track not found", which send a user looking for a fault.
 */
function latestFrame(ctx: ServerContext, id: string): ReturnType<ServerContext['pipeline']['lastFrame']> {
  const last = ctx.pipeline.lastFrame(id);
  if (last || !ctx.cluster || ctx.cluster.placement.runsHere(id)) return last;
  throw new FacestreamError(
    'STREAM_ON_OTHER_NODE',
    `stream ${id} runs on another node of the cluster, not on this one (${ctx.cluster.config.nodeId}): in cluster mode its latest frame, current faces, snapshot and enrolling a face by track id are not available through an api node; ` +
      `watch it with the WebSocket (GET /api/v1/live) and enroll from a picture (POST /api/v1/enroll)`,
    { streamId: id, nodeId: ctx.cluster.config.nodeId },
  );
}

export function rateLimitOf(ctx: ServerContext): { max: number; timeWindow: number } | false {
  const r = ctx.config.server.rateLimit;
  return r.max > 0 ? { max: r.max, timeWindow: r.windowMs } : false;
}
