import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FacestreamError } from '../../errors.js';
import { decodeImage, type DecodedImage } from '../../image/decode.js';
import type { Box, Point } from '../../image/types.js';
import { allows, type Access } from '../auth.js';
import type { ServerContext } from '../context.js';
import { clientGoneSignal } from '../picture-gate.js';
import { inPicture } from '../routes/pictures.js';
import { fromBase64, readUploads } from '../uploads.js';

/** A picture from a compat request, with the form field (or JSON key) it came in. */
export interface FormFile {
  field: string;
  name: string;
  data: Buffer;
}

export interface CompatForm {
  files: FormFile[];
  /** Text fields: multipart, urlencoded, or the JSON body's non-picture strings and numbers. */
  fields: Record<string, string>;
}

/**
 * The form of a compat request, whichever way its client sends it: multipart (DeepStack's and
 * CompreFace's clients, curl -F), urlencoded (Python requests' `data=` without files), or JSON with
 * base64 pictures under `pictureKeys` (CompreFace's base64 mode). Multipart files are read as the
 * native routes read them (readUploads: one at a time, under the upload limits, the file past
 * `maxFiles` refused before it is read).
 */
export async function readCompatForm(req: FastifyRequest, pictureKeys: readonly string[], maxFiles: number): Promise<CompatForm> {
  if (req.isMultipart()) {
    const { pictures, fields } = await readUploads(req, maxFiles);
    return { files: pictures.map((p) => ({ field: p.field ?? p.name, name: p.name, data: p.data })), fields };
  }
  const files: FormFile[] = [];
  const fields: Record<string, string> = {};
  const body = req.body;
  if (body && typeof body === 'object' && !Buffer.isBuffer(body)) {
    for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
      if (typeof v === 'string' && pictureKeys.includes(k) && req.headers['content-type']?.startsWith('application/json')) files.push({ field: k, name: k, data: fromBase64(v, k) });
      else if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') fields[k] = String(v);
    }
  }
  return { files, fields };
}

/** Parses urlencoded bodies (no pictures in them) for the compat routes only. */
export function acceptUrlencoded(app: FastifyInstance, bodyLimit: number): void {
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
}

/**
 * Checks a compat request's key against the server's keys, the way the native API does (same
 * keys, same read/write roles, same openRead). `presented` is the key as the client's API carries
 * it (DeepStack's api_key form field, CompreFace's x-api-key header, or Authorization: Bearer).
 */
export function checkCompatKey(ctx: ServerContext, presented: string | undefined, access: Access): void {
  const role = ctx.keys.check(presented || undefined);
  if (allows(role, access)) return;
  if (access === 'read' && ctx.config.server.auth.openRead) return;
  if (role === null) throw new FacestreamError('UNAUTHORIZED', presented ? 'the API key is not valid' : 'an API key is needed', {});
  throw new FacestreamError('FORBIDDEN', 'this API key may only read; this call needs a write key', {});
}

/** The key in `Authorization: Bearer <key>`, if any. */
export function bearerKey(req: FastifyRequest): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return m?.[1];
}

/**
 * Cosine similarity on the 0..1 confidence scale of DeepStack and CompreFace clients, piecewise
 * linear: 0 (and below) -> 0, the gallery threshold -> `atThreshold`, 1 -> 1. Their clients then
 * agree with the server about who is known when they keep their default thresholds.
 */
export class ConfidenceScale {
  private readonly t: number;

  constructor(
    threshold: number,
    private readonly atThreshold: number,
  ) {
    this.t = Math.min(0.99, Math.max(0.01, threshold));
  }

  toConfidence(similarity: number): number {
    if (!(similarity > 0)) return 0;
    if (similarity >= 1) return 1;
    const c = this.atThreshold;
    const v = similarity < this.t ? (similarity / this.t) * c : c + ((similarity - this.t) / (1 - this.t)) * (1 - c);
    return Math.round(v * 1e5) / 1e5;
  }

  /** The similarity a confidence stands for (inverse of toConfidence on 0..1). */
  toSimilarity(confidence: number): number {
    const c = this.atThreshold;
    if (confidence <= 0) return 0;
    if (confidence >= 1) return 1;
    return confidence < c ? (confidence / c) * this.t : this.t + ((confidence - c) / (1 - c)) * (1 - this.t);
  }
}

/**
 * A face's box (and landmarks) in the uploaded picture's own whole pixels: decoding may have
 * shrunk a large picture (limits.maxDecodeSide), and both APIs give integer corners inside it.
 */
export function pictureFace(face: { box: Box; landmarks: Point[] }, image: DecodedImage): { box: { x_min: number; y_min: number; x_max: number; y_max: number }; landmarks: number[][] } {
  const f = inPicture({ box: [...face.box], landmarks: face.landmarks.map((p) => [...p]) }, image.scale);
  const clamp = (v: number, hi: number) => Math.min(hi, Math.max(0, Math.round(v)));
  const [w, h] = [image.originalWidth, image.originalHeight];
  return {
    box: { x_min: clamp(f.box[0], w), y_min: clamp(f.box[1], h), x_max: clamp(f.box[2], w), y_max: clamp(f.box[3], h) },
    landmarks: f.landmarks!.map(([x, y]) => [clamp(x, w), clamp(y, h)]),
  };
}

/**
 * Runs picture work (decode, analysis, enrollment) with a turn of the server's picture gate, as
 * the native picture routes do: bounded concurrency, OVERLOADED when too many wait, dropped when
 * the client has gone.
 */
export function gated<T>(ctx: ServerContext, reply: FastifyReply, work: () => Promise<T>): Promise<T> {
  return ctx.pictureGate.run(clientGoneSignal(reply), work);
}

/** A number from a form or query field; `fallback` when absent or empty, an error when not a number in [min, max]. */
export function numberField(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined || value === null || value === '') return fallback;
  const n = typeof value === 'number' ? value : Number(String(value).trim());
  if (!Number.isFinite(n) || n < min || n > max) throw new FacestreamError('BAD_REQUEST', `${name} must be a number from ${min} to ${max}`, { field: name });
  return n;
}

/** Decodes an uploaded picture under the server's image limits (and times it like the native routes). */
export async function decodeUpload(ctx: ServerContext, file: FormFile): Promise<DecodedImage> {
  const started = performance.now();
  const image = await decodeImage(file.data, ctx.config.limits, file.name);
  ctx.metrics.observeStage('decode', performance.now() - started);
  return image;
}

/** The one picture of a request sent under `field` (or the only picture sent, whatever its field name). */
export function onePicture(form: CompatForm, field: string, missing: string): FormFile {
  const file = form.files.find((f) => f.field === field) ?? (form.files.length === 1 ? form.files[0] : undefined);
  if (!file) throw new FacestreamError('BAD_REQUEST', missing, { field });
  return file;
}
