import type { FastifyInstance } from 'fastify';
import { problem, sendProblem } from '../server/problem.js';

/** What a worker-only node answers: liveness, readiness and metrics (its pipelines' health). */
const WORKER_PATHS = new Set(['/health', '/ready', '/metrics']);

/**
 * Refuses everything but health and metrics on a node with cluster.role 'worker' (421: the
 * request went to the wrong node): REST, WebSocket and viewer are the api nodes' job, and a
 * worker's cores belong to its pipelines.
 */
export function workerOnlyRoutes(app: FastifyInstance, nodeId: string): void {
  app.addHook('onRequest', async (req, reply) => {
    const url = req.url.split('?')[0];
    if (WORKER_PATHS.has(url)) return;
    return sendProblem(reply, problem('WRONG_NODE', 421, `node ${nodeId} is a cluster worker (cluster.role: worker): it serves only /health, /ready and /metrics; send API and viewer requests to an api node`));
  });
}
