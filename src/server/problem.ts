import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FacestreamError, type ErrorCode } from '../errors.js';
import { sqliteDamage } from '../index/store.js';
import type { Logger } from '../log.js';
import { redactText } from '../redact.js';

/**
 * Every error leaves the server as an RFC 9457 problem object (application/problem+json) with a
 * stable `code`: clients match on the code, the `detail` is for people.
 */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  /** Request validation: which field is wrong and why. */
  errors?: { path: string; message: string }[];
  /** Machine-readable facts from the error (limits, ids). */
  details?: Record<string, unknown>;
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';

export function problemType(code: string): string {
  return `urn:facestream:problem:${code.toLowerCase().replace(/_/g, '-')}`;
}

/** "IDENTITY_NOT_FOUND" -> "Identity not found". */
export function problemTitle(code: string): string {
  const words = code.toLowerCase().replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function problem(code: ErrorCode | string, status: number, detail: string, extra: Partial<Problem> = {}): Problem {
  return { type: problemType(code), title: problemTitle(code), status, detail, code, ...extra };
}

/** Details worth showing a client: plain values only, never stacks or nested objects that might carry secrets. */
function publicDetails(details: Record<string, unknown>): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(details)) {
    if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) out[k] = v;
    else if (Array.isArray(v) && v.every((x) => ['string', 'number'].includes(typeof x))) out[k] = v;
  }
  return Object.keys(out).length ? out : undefined;
}

/** Fastify's own error codes that mean "your request is wrong", mapped to ours. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_REQ_FILE_TOO_LARGE: 'IMAGE_TOO_LARGE',
  FST_FILES_LIMIT: 'TOO_MANY_FILES',
  FST_PARTS_LIMIT: 'TOO_MANY_FILES',
  FST_FIELDS_LIMIT: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_VALIDATION: 'BAD_REQUEST',
};

export function toProblem(err: unknown, instance?: string): Problem {
  if (err instanceof FacestreamError) {
    // Messages may quote a source or an ffmpeg line: never with its credentials.
    return problem(err.code, err.status, redactText(err.message), { instance, details: publicDetails(err.details) });
  }
  const fe = err as FastifyError & { validation?: { instancePath?: string; params?: Record<string, unknown>; message?: string }[]; validationContext?: string };
  if (fe && Array.isArray(fe.validation)) {
    const errors = fe.validation.map((v) => {
      const extra = v.params?.additionalProperty ? `/${String(v.params.additionalProperty)}` : v.params?.missingProperty ? `/${String(v.params.missingProperty)}` : '';
      return { path: `${fe.validationContext ?? 'body'}${v.instancePath ?? ''}${extra}`, message: v.message ?? 'invalid' };
    });
    return problem('BAD_REQUEST', 400, `invalid request: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`, { instance, errors });
  }
  if (fe && fe.statusCode === 429) return problem('RATE_LIMITED', 429, fe.message || 'too many requests', { instance });
  const mapped = fe?.code ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped) {
    const status = fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500 ? fe.statusCode : new FacestreamError(mapped, '').status;
    return problem(mapped, status, fe.message, { instance });
  }
  if (fe && typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return problem('BAD_REQUEST', fe.statusCode, fe.message, { instance });
  }
  // The gallery database went bad under a running server: say so instead of "internal error".
  if (sqliteDamage(err)) return problem('GALLERY_CORRUPT', 500, 'the gallery database is damaged; stop the server and run `facestream gallery check --repair`', { instance });
  return problem('INTERNAL', 500, 'internal server error', { instance });
}

export function sendProblem(reply: FastifyReply, p: Problem): FastifyReply {
  return reply.code(p.status).type(PROBLEM_CONTENT_TYPE).send(p);
}

/** Installs the error and not-found handlers that turn everything into problem objects. */
export function installProblemHandlers(app: FastifyInstance, logger: Logger): void {
  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const p = toProblem(err, request.url.split('?')[0]);
    if (p.status === 503 && err instanceof FacestreamError) {
      // A refusal by design (busy, not ready, a model or store unavailable): under load there is one
      // per refused request, so one warning line each, without a stack that says nothing.
      logger.warn({ code: p.code, method: request.method, url: request.routeOptions.url }, `request refused: ${p.detail}`);
    } else if (p.status >= 500) {
      logger.error({ err, method: request.method, url: request.routeOptions.url }, 'request failed');
    }
    if (p.code === 'RATE_LIMITED') {
      const retry = reply.getHeader('retry-after');
      if (retry !== undefined) p.details = { retryAfterSeconds: Number(retry) };
    }
    return sendProblem(reply, p);
  });
  app.setNotFoundHandler((request, reply) => sendProblem(reply, problem('ROUTE_NOT_FOUND', 404, `no route ${request.method} ${request.url.split('?')[0]}`)));
}

/** JSON schema of a problem object, for route response declarations. */
export const problemSchema = {
  $id: 'Problem',
  type: 'object',
  description: 'RFC 9457 problem details; match on `code`.',
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    code: { type: 'string' },
    instance: { type: 'string' },
    errors: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } } },
    details: { type: 'object', additionalProperties: true },
  },
  required: ['type', 'title', 'status', 'detail', 'code'],
} as const;
