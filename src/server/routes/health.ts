import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.js';
import { responses } from '../schemas.js';

const readySchema = {
  type: 'object',
  properties: {
    ready: { type: 'boolean' },
    checks: {
      type: 'object',
      properties: {
        models: { type: 'boolean' },
        gallery: { type: 'boolean' },
        streams: { type: 'boolean' },
        shuttingDown: { type: 'boolean' },
      },
    },
    streams: {
      type: 'object',
      properties: { total: { type: 'integer' }, live: { type: 'integer' }, failed: { type: 'integer' }, other: { type: 'integer' } },
    },
  },
} as const;

/** Liveness (the process answers) and readiness (models warm, gallery open, streams restored). */
export function healthRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get(
    '/health',
    {
      config: { access: 'public' },
      schema: {
        tags: ['health'],
        summary: 'Liveness: the server process answers',
        response: responses({ 200: { type: 'object', properties: { status: { type: 'string' }, version: { type: 'string' }, uptimeSeconds: { type: 'number' } } } }),
      },
    },
    async () => ({ status: 'ok', version: ctx.version, uptimeSeconds: process.uptime() }),
  );

  app.get(
    '/ready',
    {
      config: { access: 'public' },
      schema: {
        tags: ['health'],
        summary: 'Readiness: models loaded and warmed up, gallery open, stored streams restored (503 until then)',
        description: 'Failed streams are reported but do not make the server unready: one broken camera must not take the others off a load balancer.',
        response: responses({ 200: readySchema, 503: readySchema }),
      },
    },
    async (_req, reply) => {
      const r = ctx.readiness;
      const ready = r.models && r.gallery && r.streams && !r.shuttingDown;
      const list = ctx.streams.list();
      const live = list.filter((s) => s.state === 'live').length;
      const failed = list.filter((s) => s.state === 'failed').length;
      reply.code(ready ? 200 : 503);
      return { ready, checks: { ...r }, streams: { total: list.length, live, failed, other: list.length - live - failed } };
    },
  );
}
