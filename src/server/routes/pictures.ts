import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FacestreamError } from '../../errors.js';
import { toPicturePixels } from '../../image/budget.js';
import { decodeImage, type DecodedImage } from '../../image/decode.js';
import { largestFace, type AnalyzedFace } from '../../pipeline/analyzer.js';
import { faceIdentification } from '../../index/search.js';
import { cosineSimilarity } from '../../pipeline/embed/vector.js';
import type { ServerContext } from '../context.js';
import { base64Picture, boxSchema, IDENTITY_ID_PATTERN, multipartBody, pointSchema, responses } from '../schemas.js';
import { clientGoneSignal } from '../picture-gate.js';
import { readUploads, type UploadedPicture } from '../uploads.js';
import { rateLimitOf } from './streams.js';

/** P-Net's window: the smallest face MTCNN finds without enlarging the picture. */
const MIN_DETECTABLE_FACE = 12;

const faceBase = {
  box: boxSchema,
  score: { type: 'number' },
  landmarks: { type: 'array', items: pointSchema },
} as const;

const attributes = {
  age: { type: ['number', 'null'] },
  gender: { type: ['string', 'null'] },
  genderScore: { type: ['number', 'null'] },
} as const;

/** A face's identity and each candidate: FaceIdentity (src/index/search.ts), named the same in the CLI and on the WebSocket. */
const candidate = { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' }, similarity: { type: 'number' }, templateId: { type: 'string' } } } as const;

const pictureResult = (faceProps: Record<string, unknown>) => ({
  type: 'object',
  properties: { width: { type: 'integer' }, height: { type: 'integer' }, faces: { type: 'array', items: { type: 'object', properties: faceProps } } },
});

const oneImageJson = { type: 'object', additionalProperties: false, required: ['image'], properties: { image: base64Picture } } as const;

const query = {
  type: 'object',
  additionalProperties: false,
  properties: { minFaceSize: { type: 'number', minimum: 12, maximum: 4096, description: 'smallest face to look for (px); default the server\'s detector.minFaceSize' } },
} as const;

/** Single pictures: detect, analyze (age/gender), identify (top-k), verify (1:1). */
export function pictureRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { analyzer, metrics } = ctx;
  const limits = ctx.config.limits;
  const common = { bodyLimit: ctx.config.server.limits.pictureBodyBytes, config: { access: 'read' as const, rateLimit: rateLimitOf(ctx) } };

  const decode = async (p: UploadedPicture): Promise<DecodedImage> => {
    const started = performance.now();
    const img = await decodeImage(p.data, limits, p.name);
    metrics.observeStage('decode', performance.now() - started);
    return img;
  };

  /** The request's one picture, read, then decoded and analysed by `work` with a turn of the picture gate. */
  const onePicture = async <T>(req: FastifyRequest, reply: FastifyReply, work: (img: DecodedImage) => Promise<T>): Promise<T> => {
    const { pictures } = await readUploads(req, 1);
    if (pictures.length !== 1) throw new FacestreamError('BAD_REQUEST', `send exactly one picture (got ${pictures.length})`, { pictures: pictures.length });
    return ctx.pictureGate.run(clientGoneSignal(reply), async () => work(await decode(pictures[0])));
  };

  /**
   * The smallest face asked for, in decoded pixels (pictures larger than limits.maxDecodeSide are
   * shrunk), never below the 12 px of P-Net's window: smaller would enlarge the picture again.
   */
  const minFace = (req: FastifyRequest, img: DecodedImage) => {
    const asked = (req.query as { minFaceSize?: number }).minFaceSize;
    return asked === undefined ? undefined : Math.max(MIN_DETECTABLE_FACE, asked / img.scale);
  };

  const body = (description: string) => ({ content: { 'application/json': { schema: oneImageJson }, 'multipart/form-data': { schema: multipartBody(description) } } });

  app.post(
    '/api/v1/detect',
    {
      ...common,
      schema: { tags: ['pictures'], summary: 'Find faces in a picture (boxes, scores, 5 landmarks)', querystring: query, body: body('one picture file'), response: responses({ 200: pictureResult(faceBase) }) },
    },
    async (req, reply) =>
      onePicture(req, reply, async (img) => {
        const [faces] = await analyzer.detect([img], { minFaceSize: minFace(req, img), stillPictures: true });
        return { width: img.originalWidth, height: img.originalHeight, faces: faces.map((f) => toPicturePixels(f, img.scale)) };
      }),
  );

  app.post(
    '/api/v1/analyze',
    {
      ...common,
      schema: { tags: ['pictures'], summary: 'Faces with estimated age and gender', querystring: query, body: body('one picture file'), response: responses({ 200: pictureResult({ ...faceBase, ...attributes }) }) },
    },
    async (req, reply) =>
      onePicture(req, reply, async (img) => {
        const [faces] = await analyzer.analyze([img], { embed: false, minFaceSize: minFace(req, img), stillPictures: true });
        return {
          width: img.originalWidth,
          height: img.originalHeight,
          faces: faces.map((f) => toPicturePixels({ ...f, age: f.attributes?.age ?? null, gender: f.attributes?.gender ?? null, genderScore: f.attributes?.genderScore ?? null }, img.scale)),
        };
      }),
  );

  app.post(
    '/api/v1/identify',
    {
      ...common,
      schema: {
        tags: ['pictures'],
        summary: 'Who is in a picture: each face\'s best gallery match (null: unknown) and the top-k candidates',
        querystring: { ...query, properties: { ...query.properties, k: { type: 'integer', minimum: 1, maximum: 100, default: 5 } } },
        body: body('one picture file'),
        response: responses({ 200: pictureResult({ ...faceBase, ...attributes, identity: { anyOf: [candidate, { type: 'null' }] }, candidates: { type: 'array', items: candidate } }) }),
      },
    },
    async (req, reply) =>
      onePicture(req, reply, async (img) => {
        const k = (req.query as { k: number }).k;
        const [faces] = await analyzer.analyze([img], { minFaceSize: minFace(req, img), stillPictures: true });
        const started = performance.now();
        const out = faces.map((f) => {
          return toPicturePixels({ ...f, age: f.attributes?.age ?? null, gender: f.attributes?.gender ?? null, genderScore: f.attributes?.genderScore ?? null, ...faceIdentification(ctx.gallery.identify(f.embedding!, k)) }, img.scale);
        });
        if (faces.length) metrics.observeStage('match', performance.now() - started);
        return { width: img.originalWidth, height: img.originalHeight, faces: out };
      }),
  );

  const verifySchema = {
    type: 'object',
    properties: {
      similarity: { type: 'number' },
      match: { type: 'boolean' },
      minSimilarity: { type: 'number' },
      faces: { type: 'array', items: { type: 'object', properties: { picture: { type: 'string' }, box: boxSchema, score: { type: 'number' } } } },
      identityId: { type: ['string', 'null'] },
      templateId: { type: ['string', 'null'] },
    },
  } as const;

  app.post(
    '/api/v1/verify',
    {
      ...common,
      schema: {
        tags: ['pictures'],
        summary: 'Same person? Two pictures (image1, image2), or one picture and an identity (image, identityId). The largest face of each picture is compared.',
        body: {
          content: {
            'application/json': {
              schema: {
                type: 'object',
                additionalProperties: false,
                properties: { image1: base64Picture, image2: base64Picture, image: base64Picture, identityId: { type: 'string', pattern: IDENTITY_ID_PATTERN } },
                oneOf: [{ required: ['image1', 'image2'] }, { required: ['image', 'identityId'] }],
              },
            },
            'multipart/form-data': { schema: multipartBody('two picture files, or one and a field identityId', { identityId: { type: 'string' } }) },
          },
        },
        response: responses({ 200: verifySchema }),
      },
    },
    async (req, reply) => {
      const { pictures, fields } = await readUploads(req, 2);
      const identityId = fields.identityId;
      const want = identityId ? 1 : 2;
      if (pictures.length !== want) throw new FacestreamError('BAD_REQUEST', identityId ? 'send one picture with identityId' : 'send two pictures (or one picture and identityId)', { pictures: pictures.length });
      const { images, analyzed } = await ctx.pictureGate.run(clientGoneSignal(reply), async () => {
        const decoded = await Promise.all(pictures.map(decode));
        return { images: decoded, analyzed: await analyzer.analyze(decoded, { attributes: false, stillPictures: true }) };
      });
      const chosen = analyzed.map((faces, i) => {
        const face = largestFace(faces) as AnalyzedFace | undefined;
        if (!face) throw new FacestreamError('NO_FACE', `no face found in ${pictures[i].name}`, { picture: pictures[i].name });
        return face;
      });
      const minSimilarity = ctx.gallery.minSimilarity;
      const faces = chosen.map((f, i) => ({ picture: pictures[i].name, box: toPicturePixels(f, images[i].scale).box, score: f.score }));
      if (identityId) {
        const r = ctx.gallery.identitySimilarity(identityId, chosen[0].embedding!);
        return { similarity: r.similarity, match: r.similarity >= minSimilarity, minSimilarity, faces, identityId: ctx.gallery.requireIdentity(identityId).id, templateId: r.templateId };
      }
      const similarity = cosineSimilarity(chosen[0].embedding!, chosen[1].embedding!);
      return { similarity, match: similarity >= minSimilarity, minSimilarity, faces, identityId: null, templateId: null };
    },
  );
}

/** A face found in a shrunk picture, in the picture's own pixels (the compat routes answer with it too). */
export const inPicture = toPicturePixels;
