import { Transform } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { FacestreamError } from '../errors.js';

export interface UploadedPicture {
  name: string;
  data: Buffer;
  /** The multipart field (or JSON key) it came in. */
  field?: string;
}

export interface Uploads {
  pictures: UploadedPicture[];
  /** Non-file multipart fields (or the JSON body's string fields). */
  fields: Record<string, string>;
}

/** Base64 or a data: URL to bytes; anything that is not base64 is refused, not silently skipped. */
export function fromBase64(value: string, name: string): Buffer {
  const b64 = value.startsWith('data:') ? value.slice(value.indexOf(',') + 1) : value;
  const clean = b64.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(clean)) throw new FacestreamError('BAD_REQUEST', `${name} is not base64`, { field: name });
  const data = Buffer.from(clean, 'base64');
  if (data.length === 0) throw new FacestreamError('EMPTY_FILE', `${name} is empty`, { field: name });
  return data;
}

/**
 * The pictures of a request: multipart files (read one at a time; @fastify/multipart stops each
 * at limits.fileSize; a file part past `maxFiles` fails the request before it is read), or JSON
 * `image` / `images[]` in base64. `maxFiles` bounds the JSON form too.
 */
export async function readUploads(request: FastifyRequest, maxFiles: number): Promise<Uploads> {
  const pictures: UploadedPicture[] = [];
  const fields: Record<string, string> = {};
  if (request.isMultipart()) {
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        // Refuse the first file past what the route takes before reading a byte of it: the
        // rest of the body is never held, and the connection is closed after the answer.
        if (pictures.length >= maxFiles) throw new FacestreamError('TOO_MANY_FILES', `at most ${maxFiles} picture${maxFiles === 1 ? '' : 's'} in this request (${part.fieldname} is one more)`, { limit: maxFiles });
        const data = await part.toBuffer();
        if (data.length === 0) throw new FacestreamError('EMPTY_FILE', `${part.filename || part.fieldname} is empty (0 bytes)`, { field: part.fieldname });
        pictures.push({ name: part.filename || part.fieldname, data, field: part.fieldname });
      } else if (typeof part.value === 'string') {
        fields[part.fieldname] = part.value;
      }
    }
    return { pictures, fields };
  }
  const body = (request.body ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(body)) if (typeof v === 'string' && !['image', 'image1', 'image2'].includes(k)) fields[k] = v;
  for (const key of ['image', 'image1', 'image2']) {
    if (typeof body[key] === 'string') pictures.push({ name: key, data: fromBase64(body[key], key) });
  }
  if (Array.isArray(body.images)) {
    if (body.images.length > maxFiles) throw new FacestreamError('TOO_MANY_FILES', `at most ${maxFiles} pictures per request`, { limit: maxFiles });
    body.images.forEach((img: { name?: string; data: string }, i: number) => pictures.push({ name: img.name ?? `images[${i}]`, data: fromBase64(img.data, `images[${i}]`) }));
  }
  return { pictures, fields };
}

export function bodyTooLarge(limit: number): FacestreamError {
  return new FacestreamError('BODY_TOO_LARGE', `the request body is over the ${limit}-byte limit`, { limit });
}

/** Passes bytes through until `limit`, then fails: a streamed upload never grows past its limit on disk or in memory. */
export function byteLimit(limit: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > limit) done(bodyTooLarge(limit));
      else done(null, chunk);
    },
  });
}
