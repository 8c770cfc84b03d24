import type { NatsConnection } from 'nats';
import { afterAll, beforeAll } from 'vitest';
import { startNats, type NatsServer } from './nats.js';

/**
 * One nats-server for a test file: registers beforeAll (start) and afterAll (close every connection
 * pushed on `connections`, then stop). The returned server is usable inside the tests.
 */
export function natsForFile(): NatsServer & { connections: NatsConnection[] } {
  let server: NatsServer | undefined;
  const connections: NatsConnection[] = [];
  beforeAll(async () => {
    server = await startNats();
  }, 30_000);
  afterAll(async () => {
    for (const c of connections) await c.close().catch(() => undefined);
    await server?.stop();
  });
  const live = () => {
    if (!server) throw new Error('nats-server not started: use natsForFile() at the top of a test file');
    return server;
  };
  return {
    get url() {
      return live().url;
    },
    get port() {
      return live().port;
    },
    restart: (opts) => live().restart(opts),
    stop: () => live().stop(),
    connections,
  };
}
