import { Writable } from 'node:stream';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { FacestreamError } from '../src/errors.js';
import { createLogger } from '../src/log.js';
import { installProblemHandlers } from '../src/server/problem.js';

describe('how failed requests are logged', () => {
  it('logs a refusal by design (503) as one warning without a stack, and a fault as an error with its stack', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const app = Fastify();
    installProblemHandlers(app, createLogger('info', sink));
    app.get('/busy', async () => {
      throw new FacestreamError('OVERLOADED', 'the server is busy; retry shortly');
    });
    app.get('/fault', async () => {
      throw new Error('a bug');
    });
    try {
      const busy = await app.inject({ method: 'GET', url: '/busy' });
      expect(busy.statusCode).toBe(503);
      expect(busy.json()).toMatchObject({ code: 'OVERLOADED', detail: 'the server is busy; retry shortly' });
      const fault = await app.inject({ method: 'GET', url: '/fault' });
      expect(fault.statusCode).toBe(500);
      expect(fault.json()).toMatchObject({ code: 'INTERNAL', detail: 'internal server error' });
    } finally {
      await app.close();
    }
    const refused = lines.filter((l) => l.url === '/busy');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ level: 40, code: 'OVERLOADED', msg: 'request refused: the server is busy; retry shortly' });
    expect(JSON.stringify(refused[0])).not.toContain('stack');
    const failed = lines.filter((l) => l.url === '/fault');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ level: 50, msg: 'request failed' });
    expect((failed[0].err as { stack?: string }).stack).toContain('a bug');
  });
});
