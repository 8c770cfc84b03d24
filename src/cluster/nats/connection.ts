import { connect, type NatsConnection } from 'nats';
import { errorMessage, FacestreamError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { redactUrl } from '../../redact.js';

/**
 * Connects to NATS and keeps reconnecting for as long as the node runs (a NATS restart must not
 * end a node: its pipelines go on and results flow again once NATS is back). The first connection
 * is waited for up to `firstTimeoutMs` so that a wrong URL fails the start with a clear error.
 */
export async function connectNats(url: string, nodeId: string, logger: Logger, firstTimeoutMs = 15_000): Promise<NatsConnection> {
  const servers = url.split(',').map((s) => s.trim()).filter(Boolean);
  const deadline = Date.now() + firstTimeoutMs;
  for (let attempt = 1; ; attempt++) {
    try {
      const nc = await connect({
        servers,
        name: `facestream-${nodeId}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        reconnectJitter: 200,
        pingInterval: 5000,
        maxPingOut: 2,
        waitOnFirstConnect: false,
      });
      void (async () => {
        for await (const s of nc.status()) {
          if (s.type === 'disconnect' || s.type === 'reconnect') logger.warn({ nats: redactUrl(String(s.data)) }, `NATS ${s.type}`);
          else if (s.type === 'error') logger.warn({ err: String(s.data) }, 'NATS error');
        }
      })().catch(() => undefined);
      return nc;
    } catch (err) {
      if (Date.now() >= deadline) {
        throw new FacestreamError('CONFIG_INVALID', `cannot connect to NATS at ${servers.map(redactUrl).join(', ')}: ${errorMessage(err)} (cluster.nats)`, { attempts: attempt }, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
