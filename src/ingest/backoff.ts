import type { ReconnectConfig } from '../config/sections/ingest.js';

/**
 * Wait before reconnect attempt `attempt` (1 = first retry): exponential, capped, with jitter so
 * that streams which failed together do not retry together.
 */
export function backoffDelay(attempt: number, cfg: ReconnectConfig, random: () => number = Math.random): number {
  const base = Math.min(cfg.maxDelayMs, cfg.initialDelayMs * cfg.factor ** Math.max(0, attempt - 1));
  const spread = cfg.jitter * (2 * random() - 1);
  return Math.max(0, Math.round(base * (1 + spread)));
}
