import path from 'node:path';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import multipart from '@fastify/multipart';
import rateLimit from '@fastify/rate-limit';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import websocket from '@fastify/websocket';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import { workerOnlyRoutes } from '../cluster/worker-routes.js';
import { PACKAGE_ROOT } from '../paths.js';
import { allows, ApiKeys, presentedKey, WS_PROTOCOL, type Access } from './auth.js';
import { comprefaceRoutes } from './compat/compreface.js';
import { deepstackRoutes } from './compat/deepstack.js';
import type { ServerContext } from './context.js';
import { installProblemHandlers, problem, problemSchema, sendProblem } from './problem.js';
import { galleryRoutes, registerImportParsers } from './routes/gallery.js';
import { healthRoutes } from './routes/health.js';
import { historyRoutes } from './routes/history.js';
import { liveRoutes } from './routes/live.js';
import { pictureRoutes } from './routes/pictures.js';
import { streamRoutes } from './routes/streams.js';
import { identitySchema, streamSchema, templateSchema } from './schemas.js';

/** The viewer's files (plain HTML/JS/CSS, no build step), found from the package root so dist/ and src/ runs both serve them. */
export const PUBLIC_DIR = path.join(PACKAGE_ROOT, 'src', 'server', 'public');

/** What a route needs when it does not say: API reads need a read key, API writes a write key, the rest is public. */
function accessOf(req: FastifyRequest): Access {
  const declared = req.routeOptions.config?.access;
  if (declared) return declared;
  const url = req.routeOptions.url ?? req.url;
  if (!url.startsWith('/api/')) return 'public';
  return req.method === 'GET' || req.method === 'HEAD' ? 'read' : 'write';
}

/**
 * Builds the HTTP server (not listening): routes, validation, auth, limits, docs, viewer.
 * Tests call `app.inject()` on it; startServer() listens.
 */
export async function buildApp(ctx: ServerContext): Promise<FastifyInstance> {
  const cfg = ctx.config.server;
  const app = Fastify({
    loggerInstance: ctx.logger.child({ component: 'http' }) as FastifyBaseLogger,
    // Per-request lines are written by our onResponse hook at debug level (the viewer polls; info would flood).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: cfg.limits.jsonBodyBytes,
    trustProxy: cfg.trustProxy,
    forceCloseConnections: true,
    return503OnClosing: true,
    // Unknown fields are an error, not silently removed; multipart bodies are documented, not validated.
    ajv: { customOptions: { removeAdditional: false, strictTypes: false } },
  }) as unknown as FastifyInstance;
  app.decorateRequest('role', null);
  app.removeContentTypeParser('text/plain');
  acceptEmptyJsonBodies(app);
  registerImportParsers(app);
  installProblemHandlers(app, ctx.logger);
  for (const s of [problemSchema, streamSchema, identitySchema, { ...templateSchema }]) app.addSchema(s);

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'facestream',
        version: ctx.version,
        description:
          'Real-time face recognition for video streams. Authenticate with `Authorization: Bearer <key>`: read keys may call GET routes, the picture routes and the WebSocket; write keys may do everything. Errors are RFC 9457 problem objects (application/problem+json) with a stable `code`. Live results: WebSocket at /api/v1/live (subprotocol facestream.v1; see the live tag).',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  // The viewer holds a key in its page: no inline or foreign scripts, no framing (clickjacking),
  // no MIME sniffing, no referrer leaking URLs. /docs sets its own CSP with hashes (staticCSP).
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:', 'blob:'],
        connectSrc: ["'self'"],
        fontSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    // Plain HTTP on a LAN is the common setup; a TLS proxy in front sets HSTS itself.
    strictTransportSecurity: false,
  });
  if (cfg.docs) await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true });

  const origins = cfg.cors.origins;
  await app.register(cors, { origin: origins.length === 0 ? false : origins.includes('*') ? true : origins, methods: ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE'], maxAge: 600 });
  await app.register(rateLimit, {
    global: false,
    // A valid key is one client wherever it connects from; anything else (no key, or a made-up
    // one with openRead on) counts against its address, so inventing keys buys no requests.
    keyGenerator: (req) => {
      const key = presentedKey(req.headers);
      return key && ctx.keys.check(key) ? `key:${ApiKeys.fingerprint(key)}` : `ip:${req.ip}`;
    },
  });
  await app.register(multipart, {
    throwFileSizeLimit: true,
    limits: { fileSize: ctx.config.limits.maxImageBytes, files: cfg.limits.maxFiles, fields: 20, fieldSize: 64 * 1024, parts: cfg.limits.maxFiles + 20, headerPairs: 100 },
  });
  await app.register(websocket, {
    options: {
      maxPayload: 64 * 1024,
      // Browsers send the key as a second subprotocol; only facestream.v1 is ever echoed back.
      handleProtocols: (protocols: Set<string>) => (protocols.has(WS_PROTOCOL) ? WS_PROTOCOL : false),
    },
  });

  if (ctx.cluster && !ctx.cluster.servesClients) workerOnlyRoutes(app, ctx.cluster.config.nodeId);
  app.addHook('onRequest', async (req, reply) => {
    const access = accessOf(req);
    const key = presentedKey(req.headers);
    req.role = ctx.keys.check(key);
    if (access === 'public' || allows(req.role, access)) return;
    if (access === 'read' && cfg.auth.openRead) return;
    if (req.role === null) {
      reply.header('www-authenticate', 'Bearer realm="facestream"');
      return sendProblem(reply, problem('UNAUTHORIZED', 401, key ? 'the API key is not valid' : 'an API key is needed: Authorization: Bearer <key>'));
    }
    return sendProblem(reply, problem('FORBIDDEN', 403, 'this API key may only read; this route needs a write key'));
  });

  app.addHook('onResponse', async (req, reply) => {
    ctx.metrics.httpRequest(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    req.log.debug({ method: req.method, url: req.routeOptions.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
  });

  healthRoutes(app, ctx);
  streamRoutes(app, ctx);
  galleryRoutes(app, ctx);
  pictureRoutes(app, ctx);
  liveRoutes(app, ctx);
  if (ctx.history) historyRoutes(app, ctx, ctx.history);
  // Other servers' APIs, each in its own scope (own error format, urlencoded forms): src/server/compat.
  if (cfg.compat.deepstack) await app.register(deepstackRoutes(ctx));
  if (cfg.compat.compreface) await app.register(comprefaceRoutes(ctx));

  app.get(
    '/metrics',
    { config: { access: cfg.auth.openMetrics ? 'public' : 'read' }, schema: { tags: ['health'], summary: 'Prometheus metrics (text exposition format)', response: { 200: { type: 'string' } } } },
    async (_req, reply) => {
      reply.type(ctx.metrics.contentType());
      return ctx.metrics.text();
    },
  );

  app.get('/openapi.json', { config: { access: 'public' }, schema: { hide: true } }, async () => app.swagger());

  await app.register(fastifyStatic, { root: PUBLIC_DIR, prefix: '/', index: ['index.html'], cacheControl: true, maxAge: 0 });
  return app;
}

/**
 * JSON bodies as fastify parses them, except that an empty one is no body: clients (and
 * libraries) send `Content-Type: application/json` on DELETE or POST .../start with nothing
 * after it. Routes that need a body still refuse its absence through their schema (400).
 */
function acceptEmptyJsonBodies(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (typeof body === 'string' && body.trim() === '') return done(null, undefined);
    return parse(req, body as string, done);
  });
}
