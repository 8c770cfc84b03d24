import type { FastifyInstance, FastifyRequest } from 'fastify';
import { FacestreamError } from '../../errors.js';
import type { AppearanceHistory } from '../../history/history.js';
import type { AppearanceFilter } from '../../history/store.js';
import { decodeImage } from '../../image/decode.js';
import { largestFace } from '../../pipeline/analyzer.js';
import type { ServerContext } from '../context.js';
import { problem, PROBLEM_CONTENT_TYPE } from '../problem.js';
import { base64Picture, boxSchema, IDENTITY_ID_PATTERN, multipartBody, responses, STREAM_ID_PATTERN, templateSchema } from '../schemas.js';
import { readUploads } from '../uploads.js';
import { rateLimitOf } from './streams.js';

const num = { type: 'number' } as const;
const nullableNum = { type: ['number', 'null'] } as const;
const idRef = { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' } } } as const;

export const storedAppearanceSchema = {
  $id: 'StoredAppearance',
  type: 'object',
  properties: {
    id: { type: 'integer' },
    streamId: { type: 'string' },
    known: { type: 'boolean' },
    identity: { anyOf: [idRef, { type: 'null' }] },
    clusterId: { type: ['integer', 'null'] },
    trackId: { type: 'integer' },
    startedAt: { ...num, description: 'epoch ms of the first frame' },
    endedAt: { ...num, description: 'epoch ms of the last frame' },
    bestSimilarity: nullableNum,
    frames: { type: 'integer' },
    face: { type: 'object', properties: { score: num, size: num, sharpness: nullableNum, quality: num, box: boxSchema } },
    frame: { type: 'object', properties: { width: { type: 'integer' }, height: { type: 'integer' } } },
    bestAt: num,
    cropUrl: { type: 'string' },
    snapshotUrl: { type: ['string', 'null'] },
    hasEmbedding: { type: 'boolean' },
    open: { type: 'boolean' },
    similarity: { ...num, description: 'search by face only: cosine similarity to the probe' },
  },
} as const;

const appearance = { $ref: 'StoredAppearance#' } as const;
const clusterSchema = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    size: { type: 'integer' },
    firstSeen: num,
    lastSeen: num,
    streams: { type: 'array', items: { type: 'string' } },
    samples: { type: 'array', items: { type: 'object', properties: { id: { type: 'integer' }, cropUrl: { type: 'string' } } } },
  },
} as const;

const idParams = { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } } as const;
const identityParams = { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 256 } } } as const;
const time = { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'string', format: 'date-time' }], description: 'epoch ms or an ISO 8601 date-time' } as const;

const filterProperties = {
  identityId: { type: 'string', maxLength: 256 },
  streamId: { type: 'string', pattern: STREAM_ID_PATTERN },
  known: { type: 'boolean', description: 'true: enrolled people only; false: unknown people only' },
  clusterId: { type: 'integer', minimum: 1 },
  from: { ...time, description: 'appearances still going on at or after this time (epoch ms or ISO 8601)' },
  to: { ...time, description: 'appearances that started before this time' },
} as const;

interface FilterQuery {
  identityId?: string;
  streamId?: string;
  known?: boolean;
  clusterId?: number;
  from?: number | string;
  to?: number | string;
  before?: number;
}

function toMs(v: number | string | undefined, field: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'number') return v;
  if (/^\d+$/.test(v)) return Number(v);
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new FacestreamError('BAD_REQUEST', `${field} is not a time (epoch ms or ISO 8601): ${v}`, { field });
  return t;
}

function filterOf(q: FilterQuery): AppearanceFilter {
  return { identityId: q.identityId, streamId: q.streamId, known: q.known, clusterId: q.clusterId, from: toMs(q.from, 'from'), to: toMs(q.to, 'to'), before: q.before };
}

/**
 * The appearance history (who was seen, when, where: list, get, pictures, delete, search by face)
 * and the face library (clusters of unknown appearances: list, name, merge, split, discard).
 */
export function historyRoutes(app: FastifyInstance, ctx: ServerContext, history: AppearanceHistory): void {
  app.addSchema(storedAppearanceSchema);
  const rateLimit = rateLimitOf(ctx);

  app.get(
    '/api/v1/history',
    {
      schema: {
        tags: ['history'],
        summary: 'History facts: stored appearances and bytes per kind, clusters, write queue, retention in force',
        response: responses({ 200: { type: 'object', additionalProperties: true } }),
      },
    },
    async () => {
      const c = history.config;
      return {
        usage: history.usage(),
        clusters: history.clusters.size,
        searchIndex: history.searchIndexSize,
        queue: history.queueDepth,
        counts: history.counts,
        retention: { known: c.known, unknown: c.unknown },
        snapshots: c.snapshot.enabled,
      };
    },
  );

  app.get(
    '/api/v1/appearances',
    {
      schema: {
        tags: ['history'],
        summary: 'Stored appearances, newest first, filtered by identity, stream, time range, known/unknown or cluster',
        description: 'Pages by cursor: pass the `next` of a page as `before` to get the following one.',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { ...filterProperties, before: { type: 'integer', minimum: 1, description: 'cursor: the previous page\'s `next`' }, limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 }, count: { type: 'boolean', default: false, description: 'also count every match (slower on a large history)' } },
        },
        response: responses({ 200: { type: 'object', properties: { appearances: { type: 'array', items: appearance }, next: { type: ['integer', 'null'] }, total: { type: 'integer' } } } }),
      },
    },
    async (req) => {
      const q = req.query as FilterQuery & { limit: number; count: boolean };
      const f = filterOf(q);
      const page = history.list(f, q.limit);
      return q.count ? { ...page, total: history.count({ ...f, before: undefined }) } : page;
    },
  );

  app.get('/api/v1/appearances/:id', { schema: { tags: ['history'], summary: 'One stored appearance', params: idParams, response: responses({ 200: appearance }) } }, async (req) =>
    history.require((req.params as { id: number }).id),
  );

  for (const kind of ['crop', 'snapshot'] as const) {
    app.get(
      `/api/v1/appearances/:id/${kind}`,
      {
        schema: {
          tags: ['history'],
          summary: kind === 'crop' ? 'The best face of an appearance (JPEG; for one still going on, its best face so far)' : 'The whole frame at the best face\'s moment (JPEG)',
          params: idParams,
          response: responses({ 200: { type: 'string', format: 'binary' } }),
        },
      },
      async (req, reply) => {
        const data = await history.picture((req.params as { id: number }).id, kind);
        reply.type('image/jpeg').header('cache-control', 'private, max-age=3600');
        return data;
      },
    );
  }

  app.delete('/api/v1/appearances/:id', { schema: { tags: ['history'], summary: 'Delete one appearance (row, pictures, embedding)', params: idParams, response: responses({ 204: { type: 'null' } }) } }, async (req, reply) => {
    const id = (req.params as { id: number }).id;
    if (!(await history.delete(id))) throw new FacestreamError('APPEARANCE_NOT_FOUND', `no stored appearance ${id}`, { appearanceId: id });
    reply.code(204);
  });

  app.delete(
    '/api/v1/appearances',
    {
      schema: {
        tags: ['history'],
        summary: 'Delete every appearance matching a filter (at least one of identityId, streamId, known, clusterId)',
        querystring: { type: 'object', additionalProperties: false, properties: filterProperties, anyOf: [{ required: ['identityId'] }, { required: ['streamId'] }, { required: ['known'] }, { required: ['clusterId'] }] },
        response: responses({ 200: { type: 'object', properties: { deleted: { type: 'integer' } } } }),
      },
    },
    async (req) => ({ deleted: await history.deleteWhere(filterOf(req.query as FilterQuery)) }),
  );

  app.get(
    '/api/v1/identities/:id/appearances',
    {
      schema: {
        tags: ['history', 'gallery'],
        summary: 'An identity\'s appearances, newest first',
        params: identityParams,
        querystring: { type: 'object', additionalProperties: false, properties: { before: { type: 'integer', minimum: 1 }, limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 } } },
        response: responses({ 200: { type: 'object', properties: { appearances: { type: 'array', items: appearance }, next: { type: ['integer', 'null'] } } } }),
      },
    },
    async (req) => {
      const ref = (req.params as { id: string }).id;
      const q = req.query as { before?: number; limit: number };
      // A removed identity's history may remain (forgetRemovedIdentities off): the id is enough.
      const identityId = ctx.gallery.getIdentity(ref)?.id ?? ref;
      return history.list({ identityId, before: q.before }, q.limit);
    },
  );

  app.delete(
    '/api/v1/identities/:id/appearances',
    { schema: { tags: ['history', 'gallery'], summary: 'Forget an identity\'s history (its templates stay)', params: identityParams, response: responses({ 200: { type: 'object', properties: { deleted: { type: 'integer' } } } }) } },
    async (req) => {
      const ref = (req.params as { id: string }).id;
      return { deleted: await history.deleteWhere({ identityId: ctx.gallery.getIdentity(ref)?.id ?? ref }) };
    },
  );

  const searchBody = { type: 'object', additionalProperties: false, required: ['image'], properties: { image: base64Picture } } as const;
  app.post(
    '/api/v1/appearances/search',
    {
      bodyLimit: ctx.config.server.limits.pictureBodyBytes,
      config: { access: 'read', rateLimit },
      schema: {
        tags: ['history'],
        summary: 'Search by face: the stored appearances whose best face matches the largest face of a picture (known or unknown)',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            k: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
            minSimilarity: { type: 'number', minimum: -1, maximum: 1, description: 'default: the gallery\'s threshold' },
            known: { type: 'boolean' },
          },
        },
        body: { content: { 'application/json': { schema: searchBody }, 'multipart/form-data': { schema: multipartBody('one picture file') } } },
        response: responses({ 200: { type: 'object', properties: { face: { type: 'object', properties: { box: boxSchema, score: num } }, minSimilarity: num, appearances: { type: 'array', items: appearance } } } }),
      },
    },
    async (req: FastifyRequest) => {
      const q = req.query as { k: number; minSimilarity?: number; known?: boolean };
      const { pictures } = await readUploads(req, 1);
      if (pictures.length !== 1) throw new FacestreamError('BAD_REQUEST', `send exactly one picture (got ${pictures.length})`, { pictures: pictures.length });
      const img = await decodeImage(pictures[0].data, ctx.config.limits, pictures[0].name);
      const [faces] = await ctx.analyzer.analyze([img]);
      const face = largestFace(faces);
      if (!face?.embedding) throw new FacestreamError('NO_FACE', `${pictures[0].name}: no face found`, {});
      const minSimilarity = q.minSimilarity ?? ctx.gallery.minSimilarity;
      return { face: { box: face.box, score: face.score }, minSimilarity, appearances: history.searchByFace(face.embedding, { k: q.k, minSimilarity, known: q.known }) };
    },
  );

  // ------------------------------------------------------------------ the face library

  app.get(
    '/api/v1/clusters',
    {
      schema: {
        tags: ['library'],
        summary: 'Clusters of unknown appearances (the same unknown person), most recently seen first',
        querystring: { type: 'object', additionalProperties: false, properties: { offset: { type: 'integer', minimum: 0, default: 0 }, limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 }, minSize: { type: 'integer', minimum: 1, default: 1 } } },
        response: responses({ 200: { type: 'object', properties: { clusters: { type: 'array', items: clusterSchema }, total: { type: 'integer' } } } }),
      },
    },
    async (req) => history.listClusters(req.query as { offset: number; limit: number; minSize: number }),
  );

  app.get(
    '/api/v1/clusters/:id',
    {
      schema: {
        tags: ['library'],
        summary: 'One cluster with its appearances (best faces first, up to 200)',
        params: idParams,
        response: responses({ 200: { type: 'object', properties: { ...clusterSchema.properties, appearances: { type: 'array', items: appearance } } } }),
      },
    },
    async (req) => {
      const id = (req.params as { id: number }).id;
      const info = history.clusterInfo(history.requireCluster(id));
      const ids = history.clusterMemberIds(id).slice(0, 200);
      return { ...info, appearances: history.store.getMany(ids).map((r) => history.toAppearance(r)) };
    },
  );

  app.post(
    '/api/v1/clusters/:id/name',
    {
      config: { rateLimit },
      schema: {
        tags: ['library', 'gallery'],
        summary: 'Name a cluster: enroll its best crops under an identity (new or existing; quality gates apply); its appearances become that identity\'s',
        params: idParams,
        body: { type: 'object', additionalProperties: false, anyOf: [{ required: ['id'] }, { required: ['name'] }], properties: { id: { type: 'string', pattern: IDENTITY_ID_PATTERN }, name: { type: 'string', minLength: 1, maxLength: 256 } } },
        response: responses({
          201: {
            type: 'object',
            properties: {
              identity: { $ref: 'Identity#' },
              created: { type: 'boolean' },
              added: { type: 'array', items: templateSchema },
              rejected: { type: 'array', items: { type: 'object', properties: { picture: { type: 'string' }, code: { type: 'string' }, reason: { type: 'string' } } } },
              appearances: { type: 'integer', description: 'appearances relabelled' },
            },
          },
        }),
      },
    },
    async (req, reply) => {
      const id = (req.params as { id: number }).id;
      const target = req.body as { id?: string; name?: string };
      // An id alone names an existing identity; creating one takes a name (a mistyped id is not a new person).
      await ctx.galleryWriter.current();
      if (target.id !== undefined && target.name === undefined && !ctx.gallery.getIdentityById(target.id)) {
        throw new FacestreamError('IDENTITY_NOT_FOUND', `no identity with id "${target.id}"; give a name to create one`, { id: target.id });
      }
      const crops = await history.clusterCrops(id);
      const report = await ctx.enroller.enrollPictures(target, crops, { allowLargest: true });
      if (report.added.length === 0 || !report.identity) {
        const first = report.rejected[0];
        const p = problem(first?.code ?? 'NO_FACE', first ? new FacestreamError(first.code, '').status : 422, `no crop of cluster ${id} passed enrollment: ${report.rejected.map((r) => `${r.picture}: ${r.reason}`).join('; ')}`, {
          errors: report.rejected.map((r) => ({ path: r.picture, message: `${r.code}: ${r.reason}` })),
        });
        return reply.code(p.status).type(PROBLEM_CONTENT_TYPE).send(p);
      }
      const n = history.assignCluster(id, { id: report.identity.id, name: report.identity.name });
      reply.code(201);
      return { identity: report.identity, created: report.created, added: report.added, rejected: report.rejected, appearances: n };
    },
  );

  app.post(
    '/api/v1/clusters/:id/merge',
    {
      schema: {
        tags: ['library'],
        summary: 'Merge other clusters into this one (the same person)',
        params: idParams,
        body: { type: 'object', additionalProperties: false, required: ['clusters'], properties: { clusters: { type: 'array', minItems: 1, maxItems: 1000, uniqueItems: true, items: { type: 'integer', minimum: 1 } } } },
        response: responses({ 200: clusterSchema }),
      },
    },
    async (req) => history.mergeClusters((req.params as { id: number }).id, (req.body as { clusters: number[] }).clusters),
  );

  app.post(
    '/api/v1/clusters/:id/split',
    {
      schema: {
        tags: ['library'],
        summary: 'Move some appearances of a cluster to a new cluster (not the same person)',
        params: idParams,
        body: { type: 'object', additionalProperties: false, required: ['appearances'], properties: { appearances: { type: 'array', minItems: 1, maxItems: 10_000, uniqueItems: true, items: { type: 'integer', minimum: 1 } } } },
        response: responses({ 200: { type: 'object', properties: { from: clusterSchema, to: clusterSchema } } }),
      },
    },
    async (req) => history.splitCluster((req.params as { id: number }).id, (req.body as { appearances: number[] }).appearances),
  );

  app.delete(
    '/api/v1/clusters/:id',
    { schema: { tags: ['library'], summary: 'Discard a cluster and delete all its appearances', params: idParams, response: responses({ 200: { type: 'object', properties: { deleted: { type: 'integer' } } } }) } },
    async (req) => ({ deleted: await history.discardCluster((req.params as { id: number }).id) }),
  );
}
