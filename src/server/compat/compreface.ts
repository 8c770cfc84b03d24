import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FacestreamError } from '../../errors.js';
import type { DecodedImage } from '../../image/decode.js';
import { contentHash } from '../../index/enroll.js';
import type { IdentityRecord } from '../../index/gallery.js';
import { faceArea, largestFace, type AnalyzedFace } from '../../pipeline/analyzer.js';
import { cosineSimilarity } from '../../pipeline/embed/vector.js';
import type { Access } from '../auth.js';
import type { ServerContext } from '../context.js';
import { toProblem } from '../problem.js';
import { rateLimitOf } from '../routes/streams.js';
import { bearerKey, checkCompatKey, ConfidenceScale, decodeUpload, gated, numberField, onePicture, pictureFace, readCompatForm, type FormFile } from './common.js';

/** CompreFace's error code for a picture without a face (Double Take treats it as "no match", not as a failure). */
const NO_FACE_CODE = 28;
const NO_FACE_MESSAGE = 'No face is found in the given image';
/** Face plugins facestream has an answer for; others (mask, pose) are ignored. */
const PLUGINS = new Set(['age', 'gender', 'landmarks', 'calculator']);

interface FaceQuery {
  limit: number;
  detProbThreshold: number;
  predictionCount: number;
  plugins: Set<string>;
  status: boolean;
}

type Query = Record<string, string | undefined>;

function faceQuery(q: Query): FaceQuery {
  const plugins = new Set(
    (q.face_plugins ?? '')
      .split(',')
      .map((p) => p.trim().toLowerCase())
      .filter((p) => PLUGINS.has(p)),
  );
  return {
    limit: numberField(q.limit, 'limit', 0, 0, 10_000),
    detProbThreshold: numberField(q.det_prob_threshold, 'det_prob_threshold', 0, 0, 1),
    predictionCount: numberField(q.prediction_count, 'prediction_count', 1, 1, 100),
    plugins,
    status: q.status === 'true',
  };
}

/**
 * The CompreFace REST API (recognition, detection and verification services), as its clients call
 * it: Double Take's "compreface" detector, CompreFace's SDKs, Home Assistant and Node-RED flows.
 * Keys come in `x-api-key` (or Authorization: Bearer): facestream's keys serve every service.
 * A CompreFace "subject" is a gallery identity's name and an "image_id" a template id. Pictures come
 * as multipart (`file`, `source_image`, `target_image`) or base64 JSON with the same names. Errors
 * are `{message, code}`; a picture without a face is 400 with code 28, as in CompreFace.
 * Similarities are on the ConfidenceScale (see compat.confidenceAtThreshold).
 */
export function comprefaceRoutes(ctx: ServerContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const { analyzer } = ctx;
    const gallery = () => ctx.gallery;
    const scale = () => new ConfidenceScale(ctx.gallery.minSimilarity, ctx.config.server.compat.confidenceAtThreshold);
    app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
      const p = toProblem(err, req.url.split('?')[0]);
      if (p.status >= 500) ctx.logger.error({ err, url: req.routeOptions.url }, 'request failed');
      if (p.code === 'NO_FACE') return reply.code(400).send({ message: p.detail, code: NO_FACE_CODE });
      return reply.code(p.status).send({ message: p.detail, code: p.status });
    });

    type Handler = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
    const route = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, access: Access, summary: string, handler: Handler) =>
      app.route({
        method,
        url,
        bodyLimit: ctx.config.server.limits.pictureBodyBytes,
        // CompreFace clients send the key in x-api-key, which the global hook does not read; the hook below applies the same rules.
        config: { access: 'public', rateLimit: rateLimitOf(ctx) },
        schema: { tags: ['compreface'], summary, description: 'CompreFace-compatible (key in x-api-key or Authorization: Bearer). See the README\'s compatibility table.' },
        onRequest: async (req) => {
          const header = req.headers['x-api-key'];
          checkCompatKey(ctx, (typeof header === 'string' ? header : undefined) ?? bearerKey(req), access);
          // Writes look subjects up first: on a cluster node, see every write acknowledged elsewhere.
          if (access === 'write' && method !== 'GET') await ctx.galleryWriter.current();
        },
        handler,
      });

    const subjectOf = (name: string | undefined): IdentityRecord => {
      if (!name?.trim()) throw new FacestreamError('BAD_REQUEST', 'subject is required', { field: 'subject' });
      const identity = gallery().getIdentity(name.trim());
      if (!identity) throw new FacestreamError('IDENTITY_NOT_FOUND', `Subject ${name} not found`, { subject: name });
      return identity;
    };
    const templateOf = (imageId: string) => {
      const t = gallery().getTemplate(imageId);
      if (!t) throw new FacestreamError('TEMPLATE_NOT_FOUND', `Image with id ${imageId} not found`, { image_id: imageId });
      return t;
    };

    /** The faces of one picture: at least det_prob_threshold, largest first, at most `limit` (0: all). */
    const facesOf = async (image: DecodedImage, q: FaceQuery, embed: boolean): Promise<AnalyzedFace[]> => {
      const attributes = q.plugins.has('age') || q.plugins.has('gender');
      const [found] = await analyzer.analyze([image], { embed: embed || q.plugins.has('calculator'), attributes });
      const faces = found.filter((f) => f.score >= q.detProbThreshold).sort((a, b) => faceArea(b) - faceArea(a));
      if (faces.length === 0) throw new FacestreamError('NO_FACE', NO_FACE_MESSAGE, {});
      return q.limit > 0 ? faces.slice(0, q.limit) : faces;
    };
    const maxFiles = ctx.config.server.limits.maxFiles;
    const fileOf = async (req: FastifyRequest, field: string): Promise<FormFile> => onePicture(await readCompatForm(req, [field], maxFiles), field, `${field} is required`);
    /** Decodes and analyses the picture with a turn of the picture gate. */
    const analyse = (reply: FastifyReply, file: FormFile, q: FaceQuery, embed: boolean) =>
      gated(ctx, reply, async () => {
        const image = await decodeUpload(ctx, file);
        return { image, faces: await facesOf(image, q, embed) };
      });

    /** A face as CompreFace describes it: box with probability, and what the requested plugins add. */
    const faceResult = (f: AnalyzedFace, image: DecodedImage, q: FaceQuery): Record<string, unknown> => {
      const inPicture = pictureFace(f, image);
      const out: Record<string, unknown> = { box: { probability: f.score, ...inPicture.box } };
      if (q.plugins.has('landmarks')) out.landmarks = inPicture.landmarks;
      if (f.attributes && q.plugins.has('age')) {
        // The age model gives one estimate, not a range with a probability.
        const age = Math.round(f.attributes.age);
        out.age = { probability: null, high: age, low: age };
      }
      if (f.attributes && q.plugins.has('gender')) {
        const male = f.attributes.genderScore;
        out.gender = { probability: f.attributes.gender === 'male' ? male : 1 - male, value: f.attributes.gender };
      }
      if (q.plugins.has('calculator') && f.embedding) out.embedding = Array.from(f.embedding);
      return out;
    };
    const pluginsVersions = (q: FaceQuery) => {
      if (!q.status) return {};
      const versions: Record<string, string> = { detector: 'facestream.mtcnn', calculator: `facestream.${analyzer.embedder.modelId}` };
      if (q.plugins.has('age')) versions.age = `facestream.${ctx.config.attributes.ageModel}`;
      if (q.plugins.has('gender')) versions.gender = `facestream.${ctx.config.attributes.genderModel}`;
      return { plugins_versions: versions };
    };

    // ------------------------------------------------------------ recognition service

    route('POST', '/api/v1/recognition/recognize', 'read', 'CompreFace: recognize the faces of a picture (subjects with similarity)', async (req, reply) => {
      const q = faceQuery(req.query as Query);
      const { image, faces } = await analyse(reply, await fileOf(req, 'file'), q, true);
      const s = scale();
      const result = faces.map((f) => ({
        ...faceResult(f, image, q),
        subjects: gallery()
          .search(f.embedding!, q.predictionCount)
          .map((c) => ({ subject: c.name, similarity: s.toConfidence(c.similarity) })),
      }));
      return { result, ...pluginsVersions(q) };
    });

    route('POST', '/api/v1/recognition/faces', 'write', 'CompreFace: add an example (picture) of a subject, creating the subject when new', async (req, reply) => {
      const query = req.query as Query;
      const subject = query.subject?.trim();
      if (!subject) throw new FacestreamError('BAD_REQUEST', 'subject is required', { field: 'subject' });
      const q = faceQuery(query);
      const file = await fileOf(req, 'file');
      const report = await gated(ctx, reply, async () => {
        if (q.detProbThreshold > 0) await facesOf(await decodeUpload(ctx, file), q, false);
        return ctx.enroller.enrollPictures({ name: subject }, [file], { allowLargest: true });
      });
      if (report.added.length === 0) {
        const r = report.rejected[0];
        // The same picture again: CompreFace would store a second copy; the stored one stands for it.
        const hash = contentHash(file.data);
        const same =
          r.code === 'DUPLICATE_TEMPLATE' && report.identity
            ? ((r.duplicateOf ? gallery().getTemplate(r.duplicateOf) : undefined) ?? gallery().listTemplates(report.identity.id).find((t) => t.contentHash === hash))
            : undefined;
        if (same) return { image_id: same.id, subject: report.identity!.name };
        throw new FacestreamError(r.code, r.code === 'NO_FACE' ? NO_FACE_MESSAGE : r.reason, { subject });
      }
      reply.code(201);
      return { image_id: report.added[0].id, subject: report.identity!.name };
    });

    route('GET', '/api/v1/recognition/faces', 'read', 'CompreFace: list examples (image_id, subject), paged', async (req) => {
      const query = req.query as Query;
      const page = numberField(query.page, 'page', 0, 0, 1e9);
      const size = numberField(query.size, 'size', 20, 1, 10_000);
      const start = page * size;
      const faces: { image_id: string; subject: string }[] = [];
      let total: number;
      if (query.subject) {
        const identity = subjectOf(query.subject);
        const templates = gallery().listTemplates(identity.id);
        total = templates.length;
        for (const t of templates.slice(start, start + size)) faces.push({ image_id: t.id, subject: identity.name });
      } else {
        total = gallery().counts().templates;
        // Walk identities in name order, reading templates only of those on the page.
        let seen = 0;
        for (let offset = 0; faces.length < size && seen < start + size; offset += 500) {
          const batch = gallery().listIdentities({ offset, limit: 500 });
          if (batch.length === 0) break;
          for (const identity of batch) {
            if (seen + identity.templates > start && faces.length < size) {
              for (const t of gallery().listTemplates(identity.id).slice(Math.max(0, start - seen), Math.max(0, start - seen) + size - faces.length)) faces.push({ image_id: t.id, subject: identity.name });
            }
            seen += identity.templates;
            if (faces.length >= size) break;
          }
        }
      }
      return { faces, page_number: page, page_size: size, total_pages: Math.ceil(total / size), total_elements: total };
    });

    const removeExamples = async (identity: IdentityRecord): Promise<number> => {
      const templates = gallery().listTemplates(identity.id);
      for (const t of templates) await ctx.galleryWriter.removeTemplate(t.id);
      return templates.length;
    };

    route('DELETE', '/api/v1/recognition/faces', 'write', 'CompreFace: delete all examples of a subject (of every subject without one)', async (req) => {
      const subject = (req.query as Query).subject;
      if (subject) return { deleted: await removeExamples(subjectOf(subject)) };
      let deleted = 0;
      for (const identity of gallery().listIdentities()) deleted += await removeExamples(identity);
      return { deleted };
    });

    route('DELETE', '/api/v1/recognition/faces/:image_id', 'write', 'CompreFace: delete one example', async (req) => {
      const t = templateOf((req.params as { image_id: string }).image_id);
      const identity = gallery().getIdentityById(t.identityId);
      await ctx.galleryWriter.removeTemplate(t.id);
      return { image_id: t.id, subject: identity?.name ?? null };
    });

    // Face crops are biometric data: a write key, as for the native crop route.
    route('GET', '/api/v1/recognition/faces/:image_id/img', 'write', 'CompreFace: the stored picture of an example (facestream keeps the face crop)', async (req, reply) => {
      const t = templateOf((req.params as { image_id: string }).image_id);
      const crop = gallery().templateCrop(t.id);
      if (!crop) throw new FacestreamError('TEMPLATE_NOT_FOUND', `Image with id ${t.id} has no stored picture`, { image_id: t.id });
      reply.type(crop.format === 'png' ? 'image/png' : 'image/jpeg');
      return crop.data;
    });

    route('POST', '/api/v1/recognition/faces/:image_id/verify', 'read', 'CompreFace: compare the faces of a picture with one example', async (req, reply) => {
      const t = templateOf((req.params as { image_id: string }).image_id);
      const q = faceQuery(req.query as Query);
      const { image, faces } = await analyse(reply, await fileOf(req, 'file'), q, true);
      const reference = gallery().templateEmbedding(t.id);
      const s = scale();
      return { result: faces.map((f) => ({ ...faceResult(f, image, q), similarity: s.toConfidence(cosineSimilarity(f.embedding!, reference)) })), ...pluginsVersions(q) };
    });

    route('GET', '/api/v1/recognition/subjects', 'read', 'CompreFace: list subjects', async () => ({ subjects: gallery().listIdentities().map((i) => i.name) }));

    const subjectBody = (req: FastifyRequest): string => {
      const subject = (req.body as { subject?: unknown } | undefined)?.subject;
      if (typeof subject !== 'string' || !subject.trim()) throw new FacestreamError('BAD_REQUEST', 'subject is required', { field: 'subject' });
      return subject.trim();
    };

    route('POST', '/api/v1/recognition/subjects', 'write', 'CompreFace: add a subject', async (req, reply) => {
      const subject = subjectBody(req);
      if (gallery().getIdentity(subject)) throw new FacestreamError('IDENTITY_EXISTS', `Subject ${subject} already exists`, { subject });
      reply.code(201);
      return { subject: (await ctx.galleryWriter.createIdentity({ name: subject })).name };
    });

    route('PUT', '/api/v1/recognition/subjects/:subject', 'write', 'CompreFace: rename a subject', async (req) => {
      const identity = subjectOf((req.params as { subject: string }).subject);
      const name = subjectBody(req);
      const other = gallery().getIdentity(name);
      if (other && other.id !== identity.id) throw new FacestreamError('IDENTITY_EXISTS', `Subject ${name} already exists; facestream does not merge subjects`, { subject: name });
      await ctx.galleryWriter.updateIdentity(identity.id, { name });
      return { updated: true };
    });

    route('DELETE', '/api/v1/recognition/subjects/:subject', 'write', 'CompreFace: delete a subject and its examples', async (req) => {
      const identity = subjectOf((req.params as { subject: string }).subject);
      await ctx.galleryWriter.removeIdentity(identity.id);
      return { subject: identity.name };
    });

    route('DELETE', '/api/v1/recognition/subjects', 'write', 'CompreFace: delete every subject', async () => {
      const all = gallery().listIdentities();
      for (const identity of all) await ctx.galleryWriter.removeIdentity(identity.id);
      return { deleted: all.length };
    });

    // ------------------------------------------------------------ detection and verification services

    route('POST', '/api/v1/detection/detect', 'read', 'CompreFace: detect faces (box, and the requested plugins)', async (req, reply) => {
      const q = faceQuery(req.query as Query);
      const { image, faces } = await analyse(reply, await fileOf(req, 'file'), q, false);
      return { result: faces.map((f) => faceResult(f, image, q)), ...pluginsVersions(q) };
    });

    route('POST', '/api/v1/verification/verify', 'read', 'CompreFace: compare the largest face of source_image with the faces of target_image', async (req, reply) => {
      const q = faceQuery(req.query as Query);
      const form = await readCompatForm(req, ['source_image', 'target_image'], 2);
      const [sourceFile, targetFile] = ['source_image', 'target_image'].map((field) => {
        const file = form.files.find((f) => f.field === field);
        if (!file) throw new FacestreamError('BAD_REQUEST', `${field} is required`, { field });
        return file;
      });
      const { source, sourceFace, target, targets } = await gated(ctx, reply, async () => {
        const [source, target] = await Promise.all([decodeUpload(ctx, sourceFile), decodeUpload(ctx, targetFile)]);
        const sourceFace = largestFace(await facesOf(source, { ...q, limit: 0 }, true))!;
        return { source, sourceFace, target, targets: await facesOf(target, q, true) };
      });
      const s = scale();
      return {
        result: [
          {
            source_image_face: faceResult(sourceFace, source, q),
            face_matches: targets.map((f) => ({ ...faceResult(f, target, q), similarity: s.toConfidence(cosineSimilarity(sourceFace.embedding!, f.embedding!)) })),
            ...pluginsVersions(q),
          },
        ],
      };
    });
  };
}
