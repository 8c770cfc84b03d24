import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline as pipe } from 'node:stream/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FacestreamError } from '../../errors.js';
import { decodeCrop } from '../../index/crop.js';
import type { EnrollReport } from '../../index/enroll.js';
import { exportGallery, importGallery } from '../../index/transfer.js';
import type { ServerContext } from '../context.js';
import { clientGoneSignal } from '../picture-gate.js';
import { problem, PROBLEM_CONTENT_TYPE } from '../problem.js';
import { base64Picture, IDENTITY_ID_PATTERN, multipartBody, responses, templateSchema, identityNameSchema } from '../schemas.js';
import { bodyTooLarge, byteLimit, readUploads } from '../uploads.js';
import { rateLimitOf } from './streams.js';
import { makeDirectories } from '../../private-files.js';

const identity = { $ref: 'Identity#' } as const;
const identityParams = { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 256, description: 'identity id (or a unique name)' } } } as const;
const templateParams = { type: 'object', additionalProperties: false, required: ['templateId'], properties: { templateId: { type: 'string', pattern: '^[A-Za-z0-9_-]{22}$', description: 'a template id as the API gave it (22 characters, not guessable)' } } } as const;

const enrollReportSchema = {
  type: 'object',
  properties: {
    identity,
    created: { type: 'boolean' },
    added: { type: 'array', items: templateSchema },
    rejected: { type: 'array', items: { type: 'object', properties: { picture: { type: 'string' }, code: { type: 'string' }, reason: { type: 'string' } } } },
  },
} as const;

const picturesJson = {
  type: 'object',
  additionalProperties: false,
  properties: {
    image: base64Picture,
    images: {
      type: 'array',
      minItems: 1,
      items: { type: 'object', additionalProperties: false, required: ['data'], properties: { name: { type: 'string', maxLength: 1024 }, data: base64Picture } },
    },
    allowLargest: { type: 'boolean', description: 'enroll the largest face of a picture with several' },
  },
} as const;

const enrollJson = {
  ...picturesJson,
  properties: { ...picturesJson.properties, id: { type: 'string', pattern: IDENTITY_ID_PATTERN }, name: identityNameSchema, metadata: {} },
  anyOf: [{ required: ['id'] }, { required: ['name'] }],
} as const;

/** Gallery: identities, templates, enrollment by upload, export and import. */
export function galleryRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const gallery = () => ctx.gallery;
  const pictureLimit = ctx.config.server.limits.pictureBodyBytes;
  const rateLimit = rateLimitOf(ctx);

  app.get(
    '/api/v1/gallery',
    {
      schema: {
        tags: ['gallery'],
        summary: 'Gallery facts: model, size, threshold',
        response: responses({
          200: { type: 'object', properties: { modelId: { type: 'string' }, dimension: { type: 'integer' }, identities: { type: 'integer' }, templates: { type: 'integer' }, minSimilarity: { type: 'number' } } },
        }),
      },
    },
    async () => ({ modelId: gallery().modelId, dimension: gallery().dimension, ...gallery().counts(), minSimilarity: gallery().minSimilarity }),
  );

  app.get(
    '/api/v1/identities',
    {
      schema: {
        tags: ['gallery'],
        summary: 'List identities (by name), with template counts',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { search: { type: 'string', maxLength: 256 }, offset: { type: 'integer', minimum: 0, default: 0 }, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
        },
        response: responses({ 200: { type: 'object', properties: { identities: { type: 'array', items: identity }, total: { type: 'integer' } } } }),
      },
    },
    async (req) => {
      const q = req.query as { search?: string; offset: number; limit: number };
      return { identities: gallery().listIdentities(q), total: gallery().counts().identities };
    },
  );

  app.post(
    '/api/v1/identities',
    {
      schema: {
        tags: ['gallery'],
        summary: 'Create an identity without pictures',
        body: { type: 'object', additionalProperties: false, required: ['name'], properties: { id: { type: 'string', pattern: IDENTITY_ID_PATTERN }, name: identityNameSchema, metadata: {} } },
        response: responses({ 201: identity }),
      },
    },
    async (req, reply) => {
      const created = await ctx.galleryWriter.createIdentity(req.body as { id?: string; name: string; metadata?: unknown });
      reply.code(201).header('location', `/api/v1/identities/${encodeURIComponent(created.id)}`);
      return created;
    },
  );

  app.get('/api/v1/identities/:id', { schema: { tags: ['gallery'], summary: 'One identity', params: identityParams, response: responses({ 200: identity }) } }, async (req) =>
    gallery().requireIdentity((req.params as { id: string }).id),
  );

  app.patch(
    '/api/v1/identities/:id',
    {
      schema: {
        tags: ['gallery'],
        summary: 'Rename an identity or replace its metadata',
        params: identityParams,
        body: { type: 'object', additionalProperties: false, minProperties: 1, properties: { name: identityNameSchema, metadata: {} } },
        response: responses({ 200: identity }),
      },
    },
    async (req) => ctx.galleryWriter.updateIdentity((req.params as { id: string }).id, req.body as { name?: string; metadata?: unknown }),
  );

  app.delete('/api/v1/identities/:id', { schema: { tags: ['gallery'], summary: 'Delete an identity and all its templates', params: identityParams, response: responses({ 204: { type: 'null' } }) } }, async (req, reply) => {
    await ctx.galleryWriter.removeIdentity((req.params as { id: string }).id);
    reply.code(204);
  });

  app.get(
    '/api/v1/identities/:id/templates',
    { schema: { tags: ['gallery'], summary: 'An identity\'s templates (no embeddings)', params: identityParams, response: responses({ 200: { type: 'object', properties: { templates: { type: 'array', items: templateSchema } } } }) } },
    async (req) => ({ templates: gallery().listTemplates((req.params as { id: string }).id) }),
  );

  const enroll = async (req: FastifyRequest, reply: FastifyReply, ref: { id?: string; name?: string; metadata?: unknown } | undefined) => {
    const { pictures, fields } = await readUploads(req, ctx.config.server.limits.maxFiles);
    const body = (req.isMultipart() ? {} : (req.body ?? {})) as { allowLargest?: boolean; metadata?: unknown };
    const target = ref ?? { id: fields.id || undefined, name: fields.name || undefined, metadata: body.metadata };
    if (!target.id && !target.name) throw new FacestreamError('BAD_REQUEST', 'say who the pictures show: an identity id or name', {});
    if (pictures.length === 0) throw new FacestreamError('BAD_REQUEST', 'no picture in the request (multipart files, or JSON image / images[])', {});
    const allowLargest = body.allowLargest ?? (fields.allowLargest === undefined ? undefined : fields.allowLargest === 'true');
    const started = performance.now();
    const report: EnrollReport = await ctx.pictureGate.run(clientGoneSignal(reply), () => ctx.enroller.enrollPictures(target, pictures, { allowLargest }));
    ctx.metrics.observeStage('decode', report.timings.decodeMs);
    req.log.debug({ ms: performance.now() - started, added: report.added.length }, 'enrolled');
    if (report.added.length === 0) {
      const first = report.rejected[0];
      const p = problem(first?.code ?? 'NO_FACE', first ? new FacestreamError(first.code, '').status : 422, `no picture was enrolled: ${report.rejected.map((r) => `${r.picture}: ${r.reason}`).join('; ')}`, {
        errors: report.rejected.map((r) => ({ path: r.picture, message: `${r.code}: ${r.reason}` })),
      });
      return reply.code(p.status).type(PROBLEM_CONTENT_TYPE).send(p);
    }
    reply.code(201);
    return { identity: report.identity, created: report.created, added: report.added, rejected: report.rejected };
  };

  app.post(
    '/api/v1/identities/:id/templates',
    {
      bodyLimit: pictureLimit,
      config: { rateLimit },
      schema: {
        tags: ['gallery'],
        summary: 'Enroll pictures of an existing identity (multipart files, or JSON base64)',
        description: 'Each picture is decoded, its face detected and checked (size, score, sharpness), embedded and stored; pictures that cannot be used are listed in `rejected`. 201 when at least one was added, else a 422 problem listing why.',
        params: identityParams,
        body: { content: { 'application/json': { schema: picturesJson }, 'multipart/form-data': { schema: multipartBody('picture files; field allowLargest=true to take the largest of several faces') } } },
        response: responses({ 201: enrollReportSchema }),
      },
    },
    async (req, reply) => {
      await ctx.galleryWriter.current();
      const existing = gallery().requireIdentity((req.params as { id: string }).id);
      return enroll(req, reply, { id: existing.id });
    },
  );

  app.post(
    '/api/v1/enroll',
    {
      bodyLimit: pictureLimit,
      config: { rateLimit },
      schema: {
        tags: ['gallery'],
        summary: 'Enroll pictures under an identity id or name, creating the identity when new',
        body: { content: { 'application/json': { schema: enrollJson }, 'multipart/form-data': { schema: multipartBody('picture files plus fields id and/or name (and allowLargest)', { id: { type: 'string' }, name: { type: 'string' } }) } } },
        response: responses({ 201: enrollReportSchema }),
      },
    },
    async (req, reply) => {
      if (req.isMultipart()) return enroll(req, reply, undefined);
      const b = req.body as { id?: string; name?: string; metadata?: unknown };
      return enroll(req, reply, { id: b.id, name: b.name, metadata: b.metadata });
    },
  );

  app.get('/api/v1/templates/:templateId', { schema: { tags: ['gallery'], summary: 'One template (no embedding)', params: templateParams, response: responses({ 200: templateSchema }) } }, async (req) => {
    const id = (req.params as { templateId: string }).templateId;
    const t = gallery().getTemplate(id);
    if (!t) throw new FacestreamError('TEMPLATE_NOT_FOUND', `no template ${id}`, { templateId: id });
    return t;
  });

  app.get(
    '/api/v1/templates/:templateId/crop',
    {
      // A face crop is biometric data, like the export: write keys only.
      config: { access: 'write' },
      schema: { tags: ['gallery'], summary: 'The stored face crop of a template', description: 'Biometric data: needs a write key.', params: templateParams, response: responses({ 200: { type: 'string', format: 'binary' } }) },
    },
    async (req, reply) => {
      const id = (req.params as { templateId: string }).templateId;
      const crop = gallery().templateCrop(id);
      if (!crop) throw new FacestreamError('TEMPLATE_NOT_FOUND', `template ${id} has no stored crop`, { templateId: id });
      reply.type(crop.format === 'png' ? 'image/png' : 'image/jpeg');
      return crop.data;
    },
  );

  app.delete('/api/v1/templates/:templateId', { schema: { tags: ['gallery'], summary: 'Delete one template', params: templateParams, response: responses({ 204: { type: 'null' } }) } }, async (req, reply) => {
    await ctx.galleryWriter.removeTemplate((req.params as { templateId: string }).templateId);
    reply.code(204);
  });

  const tmpDir = path.join(ctx.dataDir, 'tmp');
  const tmpFile = (suffix: string) => {
    makeDirectories(tmpDir, 0o700);
    return path.join(tmpDir, `${crypto.randomUUID()}${suffix}`);
  };

  app.get(
    '/api/v1/gallery/export',
    {
      schema: {
        tags: ['gallery'],
        summary: 'Download the gallery (JSON Lines, gzip): identities, templates with embeddings and face crops',
        description: 'Holds biometric data: needs a write key.',
        response: responses({ 200: { type: 'string', format: 'binary' } }),
      },
      config: { access: 'write' },
    },
    async (_req, reply) => {
      const file = tmpFile('.jsonl.gz');
      await exportGallery(gallery(), file);
      const stream = fs.createReadStream(file);
      stream.on('close', () => fs.rm(file, { force: true }, () => {}));
      const name = `facestream-gallery-${new Date().toISOString().slice(0, 10)}.jsonl.gz`;
      reply.type('application/gzip').header('content-disposition', `attachment; filename="${name}"`);
      return reply.send(stream);
    },
  );

  app.post(
    '/api/v1/gallery/import',
    {
      bodyLimit: ctx.config.server.limits.importBytes,
      config: { rateLimit },
      schema: {
        tags: ['gallery'],
        summary: 'Add an export (JSON Lines, gzip or plain) to the gallery; identities merge by id, known pictures are skipped',
        // The body is streamed to disk, not parsed: these schemas document it and validate nothing.
        body: { content: { 'application/gzip': { schema: { format: 'binary', description: 'a gzip-compressed export' } }, 'application/x-ndjson': { schema: { format: 'binary', description: 'an export as plain JSON Lines' } } } },
        response: responses({
          200: {
            type: 'object',
            properties: {
              identitiesCreated: { type: 'integer' },
              identitiesMerged: { type: 'integer' },
              templatesAdded: { type: 'integer' },
              duplicates: { type: 'integer' },
              skipped: { type: 'integer' },
              reembedded: { type: 'integer' },
            },
          },
        }),
      },
    },
    async (req) => {
      const upload = req.body as NodeJS.ReadableStream;
      const raw = tmpFile('.upload');
      try {
        const limit = ctx.config.server.limits.importBytes;
        if (Number(req.headers['content-length'] ?? 0) > limit) throw bodyTooLarge(limit);
        await pipe(upload, byteLimit(limit), fs.createWriteStream(raw, { mode: 0o600 }));
        const fd = fs.openSync(raw, 'r');
        const magic = Buffer.alloc(2);
        fs.readSync(fd, magic, 0, 2, 0);
        fs.closeSync(fd);
        const file = `${raw}${magic[0] === 0x1f && magic[1] === 0x8b ? '.jsonl.gz' : '.jsonl'}`;
        fs.renameSync(raw, file);
        try {
          return await importGallery(gallery(), file, {
            writer: ctx.galleryWriter,
            reembed: async (crop) => {
              const { image, face } = await decodeCrop(crop);
              const [v] = await ctx.analyzer.embedder.embedFaces([{ image, face }]);
              return v;
            },
          });
        } finally {
          fs.rmSync(file, { force: true });
        }
      } finally {
        fs.rmSync(raw, { force: true });
      }
    },
  );
}

/** Streams the raw body of import uploads to the handler (bodyLimit still counts the bytes). */
export function registerImportParsers(app: FastifyInstance): void {
  for (const type of ['application/gzip', 'application/x-ndjson']) {
    app.addContentTypeParser(type, (_req, payload, done) => done(null, payload));
  }
}
