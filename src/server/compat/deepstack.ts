import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FacestreamError } from '../../errors.js';
import { largestFace, type AnalyzedFace } from '../../pipeline/analyzer.js';
import { cosineSimilarity } from '../../pipeline/embed/vector.js';
import type { Access } from '../auth.js';
import type { ServerContext } from '../context.js';
import { toProblem } from '../problem.js';
import { rateLimitOf } from '../routes/streams.js';
import { acceptUrlencoded, bearerKey, checkCompatKey, ConfidenceScale, decodeUpload, gated, numberField, onePicture, pictureFace, readCompatForm, type CompatForm } from './common.js';

/** DeepStack's default min_confidence for recognition (its documentation, "Setting Minimum Confidence"). */
const DEEPSTACK_DEFAULT_MIN_CONFIDENCE = 0.67;

/**
 * The DeepStack face API (also served by CodeProject.AI), as its clients call it: Double Take's
 * "deepstack" detector, Home Assistant's deepstack_face integration, Node-RED deepstack nodes.
 * POST multipart forms under /v1/vision/face; the key in the `api_key` form field (or
 * Authorization: Bearer); every answer is 200 `{success: true, ...}` or an error status with
 * `{success: false, error}`. A DeepStack "userid" is a gallery identity's name.
 *
 * Responses (DeepStack's documentation): detect `{success, predictions: [{confidence, x_min,
 * y_min, x_max, y_max}]}`; recognize adds `userid` ("unknown" below min_confidence, confidence 0);
 * register `{success, message: "face added"}`; list `{success, faces: [userid]}`; delete
 * `{success}`; match `{success, similarity}`. Confidences are on the ConfidenceScale (see
 * compat.confidenceAtThreshold).
 */
export function deepstackRoutes(ctx: ServerContext) {
  return async (app: FastifyInstance): Promise<void> => {
    const { analyzer } = ctx;
    const scale = () => new ConfidenceScale(ctx.gallery.minSimilarity, ctx.config.server.compat.confidenceAtThreshold);
    acceptUrlencoded(app, ctx.config.server.limits.jsonBodyBytes);
    app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
      const p = toProblem(err, req.url.split('?')[0]);
      if (p.status >= 500) ctx.logger.error({ err, url: req.routeOptions.url }, 'request failed');
      return reply.code(p.status).send({ success: false, error: p.detail, code: p.status, duration: 0 });
    });

    /**
     * Registers a route whose form is read first (the key may be one of its fields); with
     * `pictures`, the handler runs with a turn of the picture gate.
     */
    const route = (url: string, access: Access, pictures: boolean, summary: string, handler: (form: CompatForm) => Promise<Record<string, unknown>>) =>
      app.post(
        url,
        {
          bodyLimit: ctx.config.server.limits.pictureBodyBytes,
          // The global hook cannot see a key in the form; checkCompatKey below applies the same rules.
          config: { access: 'public', rateLimit: rateLimitOf(ctx) },
          schema: { tags: ['deepstack'], summary, description: 'DeepStack-compatible (multipart form; key in the api_key field or Authorization: Bearer). See the README\'s compatibility table.' },
        },
        async (req, reply) => {
          const started = performance.now();
          const form = await readCompatForm(req, [], ctx.config.server.limits.maxFiles);
          checkCompatKey(ctx, bearerKey(req) ?? form.fields.api_key, access);
          const out = pictures ? await gated(ctx, reply, () => handler(form)) : await handler(form);
          return { success: true, ...out, duration: Math.round(performance.now() - started) };
        },
      );

    const analyzeOne = async (form: CompatForm, field: string, embed: boolean) => {
      const file = onePicture(form, field, 'No valid image file found');
      const image = await decodeUpload(ctx, file);
      const [faces] = embed ? await analyzer.analyze([image], { attributes: false }) : await analyzer.detect([image]);
      return { image, faces: faces as AnalyzedFace[] };
    };

    route('/v1/vision/face', 'read', true, 'DeepStack: detect faces', async (form) => {
      const minConfidence = numberField(form.fields.min_confidence, 'min_confidence', 0, 0, 1);
      const { image, faces } = await analyzeOne(form, 'image', false);
      return { predictions: faces.filter((f) => f.score >= minConfidence).map((f) => ({ confidence: f.score, ...pictureFace(f, image).box })) };
    });

    route('/v1/vision/face/recognize', 'read', true, 'DeepStack: who is each face (userid, confidence; "unknown" below min_confidence)', async (form) => {
      const minConfidence = numberField(form.fields.min_confidence, 'min_confidence', DEEPSTACK_DEFAULT_MIN_CONFIDENCE, 0, 1);
      const { image, faces } = await analyzeOne(form, 'image', true);
      const s = scale();
      const predictions = faces.map((f) => {
        const [best] = ctx.gallery.search(f.embedding!, 1);
        const confidence = best ? s.toConfidence(best.similarity) : 0;
        const known = best !== undefined && confidence >= minConfidence;
        return { userid: known ? best.name : 'unknown', confidence: known ? confidence : 0, ...pictureFace(f, image).box };
      });
      return { predictions };
    });

    route('/v1/vision/face/register', 'write', true, 'DeepStack: register pictures (one or more files) under a userid', async (form) => {
      const userid = form.fields.userid?.trim();
      if (!userid) throw new FacestreamError('BAD_REQUEST', 'user id not specified', { field: 'userid' });
      if (form.files.length === 0) throw new FacestreamError('BAD_REQUEST', 'No valid image file found', { field: 'image' });
      const report = await ctx.enroller.enrollPictures({ name: userid }, form.files, { allowLargest: true });
      // Registering a picture again (Double Take retrains) is not an error in DeepStack.
      const failed = report.rejected.filter((r) => r.code !== 'DUPLICATE_TEMPLATE');
      if (report.added.length === 0 && failed.length) throw new FacestreamError(failed[0].code, failed.map((r) => r.reason).join('; '), { userid });
      return { message: 'face added' };
    });

    route('/v1/vision/face/list', 'read', false, 'DeepStack: registered userids', async () => ({ faces: ctx.gallery.listIdentities().map((i) => i.name) }));

    route('/v1/vision/face/delete', 'write', false, 'DeepStack: delete a userid and its pictures', async (form) => {
      const userid = form.fields.userid?.trim();
      if (!userid) throw new FacestreamError('BAD_REQUEST', 'user id not specified', { field: 'userid' });
      // DeepStack answers success for a userid it does not know: deleting is idempotent.
      await ctx.galleryWriter.current();
      if (ctx.gallery.getIdentity(userid)) await ctx.galleryWriter.removeIdentity(userid);
      return {};
    });

    route('/v1/vision/face/match', 'read', true, 'DeepStack: similarity of the largest faces of image1 and image2', async (form) => {
      const pictures = ['image1', 'image2'].map((field) => {
        const file = form.files.find((f) => f.field === field);
        if (!file) throw new FacestreamError('BAD_REQUEST', `${field} not found`, { field });
        return file;
      });
      const images = await Promise.all(pictures.map((p) => decodeUpload(ctx, p)));
      const analyzed = await analyzer.analyze(images, { attributes: false });
      const chosen = analyzed.map((faces, i) => {
        const face = largestFace(faces);
        if (!face) throw new FacestreamError('NO_FACE', `No face found in ${pictures[i].field}`, { field: pictures[i].field });
        return face;
      });
      return { similarity: scale().toConfidence(cosineSimilarity(chosen[0].embedding!, chosen[1].embedding!)) };
    });
  };
}
