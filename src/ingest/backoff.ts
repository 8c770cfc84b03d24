import type { ReconnectConfig } from '../config/sections/ingest.js';

/**
 * Wait before reconnect attempt `attempt` (1 = first retry): exponential, capped, with jitter so
 * that streams which failed together do not retry together.
 */
export function backoffDelay(attempt: number, cfg: Pick<ReconnectConfig, 'initialDelayMs' | 'maxDelayMs' | 'factor' | 'jitter'>, random: () => number = Math.random): number {
  const base = Math.min(cfg.maxDelayMs, cfg.initialDelayMs * cfg.factor ** Math.max(0, attempt - 1));
  const spread = cfg.jitter * (2 * random() - 1);
  return Math.max(0, Math.round(base * (1 + spread)));
}

/**
 * Failed attempts in a row after a connection ended, for the backoff: a connection that delivered
 * frames for at least `stableAfterMs` was a success and starts the count afresh; a short-lived one
 * (a camera that accepts, sends a frame or two, and drops the connection) counts as a failure, so
 * the wait between such connections grows instead of hammering the camera every half second.
 */
export function attemptsAfterConnection(attempts: number, connection: { frames: number; firstFrameAt?: number; endedAt: number }, stableAfterMs: number): number {
  const stable = connection.frames > 0 && connection.firstFrameAt !== undefined && connection.endedAt - connection.firstFrameAt >= stableAfterMs;
  return stable ? 1 : attempts + 1;
}
