import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.js';
import { problem, sendProblem } from '../problem.js';
import { responses } from '../schemas.js';

const liveQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    streams: { type: 'string', pattern: `^(\\*|[A-Za-z0-9._-]{1,64}(,[A-Za-z0-9._-]{1,64})*)$`, description: 'comma-separated stream ids; default every stream' },
    jpeg: { type: 'boolean', description: 'also send frames as JPEG (binary messages with their results)' },
    fps: { type: 'number', exclusiveMinimum: 0, maximum: 60, description: 'pictures per second per stream (clamped to server.websocket.maxJpegFps)' },
    width: { type: 'integer', minimum: 16, maximum: 7680, description: 'picture width (never above the frame\'s)' },
    quality: { type: 'integer', minimum: 10, maximum: 100 },
  },
} as const;

/** The live WebSocket (protocol: src/server/live/protocol.ts). */
export function liveRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get(
    '/api/v1/live',
    {
      websocket: true,
      config: { access: 'read' },
      // Browsers let any page open a WebSocket to any server, with the user's cookies and a key the
      // page may hold: a connection from a browser must come from this server's own pages or an
      // origin listed in server.cors.origins. Clients that are not browsers send no Origin.
      preValidation: async (req, reply) => {
        const origin = req.headers.origin;
        if (origin === undefined || originAllowed(origin, req.host, ctx.config.server.cors.origins)) return;
        return sendProblem(reply, problem('FORBIDDEN', 403, `WebSocket connections from ${origin} are not allowed (server.cors.origins)`));
      },
      schema: {
        tags: ['live'],
        summary: 'WebSocket (subprotocol facestream.v1): per-frame results, optional JPEG frames, stream/appearance/gallery events',
        description:
          'Authenticate with Authorization: Bearer <key>, or from a browser with the subprotocols ["facestream.v1", "facestream.key.<key>"]. Messages are JSON objects { v: 1, type, ... }: hello (current state), frame, stream, stats, appearance, gallery, dropped, error; binary messages hold a frame with its JPEG (4-byte header length, JSON header, JPEG). Send { type: "subscribe", streams: [...] | "*", jpeg: false | { fps, width, quality } } to change the subscription.',
        querystring: liveQuery,
        response: responses({}),
      },
    },
    (socket, req) => {
      const q = req.query as { streams?: string; jpeg?: boolean; fps?: number; width?: number; quality?: number };
      const streams = !q.streams || q.streams === '*' ? null : q.streams.split(',');
      const jpeg = q.jpeg ? ctx.hub.jpegOptions({ fps: q.fps, width: q.width, quality: q.quality }) : null;
      ctx.hub.attach(socket, req.role ?? 'open', { streams, jpeg });
    },
  );
}

/**
 * Whether a browser's Origin may use this server: its own origin (same host and port as the
 * request's Host), or one listed in server.cors.origins ("*": any). "null" origins (sandboxed
 * frames, file: pages) are only allowed by "*".
 */
export function originAllowed(origin: string, host: string, corsOrigins: readonly string[]): boolean {
  if (corsOrigins.includes('*')) return true;
  if (corsOrigins.includes(origin)) return true;
  try {
    const u = new URL(origin);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.host === host.toLowerCase();
  } catch {
    return false;
  }
}
