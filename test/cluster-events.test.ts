import { describe, expect, it } from 'vitest';
import type { NatsConnection } from 'nats';
import { connectNats } from '../src/cluster/nats/connection.js';
import { ensureEventStream, EventOutbox } from '../src/cluster/nats/event-outbox.js';
import { ClusterNames } from '../src/cluster/nats/subjects.js';
import { createLogger } from '../src/log.js';
import { natsForFile } from './helpers/nats-suite.js';
import { pollUntil } from './helpers/serve-process.js';

/**
 * Events that must not be lost (appearances, stream states) through a NATS restart, on a real
 * nats-server with JetStream: the outbox keeps them in order while NATS is away and JetStream
 * delivers each once (message ids); with a full outbox the oldest are dropped and counted, and
 * pushing never waits.
 */

const logger = createLogger('silent');
const names = new ClusterNames('evt');
const nats = natsForFile();
const conns = nats.connections;

async function readAll(nc: NatsConnection, expected: number, ms = 15_000): Promise<number[]> {
  const consumer = await nc.jetstream().consumers.get(names.eventStream, { filterSubjects: names.allEvents, opt_start_seq: 1 });
  const out: number[] = [];
  const end = Date.now() + ms;
  while (out.length < expected && Date.now() < end) {
    const batch = await consumer.fetch({ max_messages: 100, expires: 1000 });
    for await (const m of batch) out.push((m.json() as { n: number }).n);
  }
  return out;
}

const until = (what: string, cond: () => boolean, ms: number) => pollUntil(what, cond, ms, 50);

describe('event outbox on JetStream', () => {
  it('keeps events in order through a NATS restart and delivers each once; drops the oldest past its bound', async () => {
    const nc = await connectNats(nats.url, 'outbox-test', logger);
    conns.push(nc);
    await ensureEventStream(nc, names.eventStream, names.allEvents, logger);
    await ensureEventStream(nc, names.eventStream, names.allEvents, logger); // a second node finds it there
    let dropped = 0;
    const outbox = new EventOutbox(nc, 1000, logger, (n) => (dropped += n));
    for (let n = 0; n < 5; n++) outbox.push(names.events('cam.1', 'appearance'), { n });
    await until('the first five acknowledged', () => outbox.published === 5, 10_000);

    // NATS goes away for a while; events keep coming and are kept, pushing never blocks.
    const restarting = nats.restart({ downMs: 1500 });
    await new Promise((r) => setTimeout(r, 300));
    const t = performance.now();
    for (let n = 5; n < 15; n++) outbox.push(names.events('cam-2', 'stream'), { n });
    expect(performance.now() - t).toBeLessThan(100);
    await restarting;
    await until('every event acknowledged after the restart', () => outbox.published === 15, 20_000);
    expect(dropped).toBe(0);

    const reader = await connectNats(nats.url, 'reader', logger);
    conns.push(reader);
    expect(await readAll(reader, 15)).toEqual(Array.from({ length: 15 }, (_, i) => i));

    // A small outbox while NATS is down: the oldest go, counted.
    const small = new EventOutbox(nc, 3, logger, (n) => (dropped += n));
    const down = nats.restart({ downMs: 1500 });
    await new Promise((r) => setTimeout(r, 300));
    for (let n = 100; n < 106; n++) small.push(names.events('cam-3', 'appearance'), { n });
    expect(small.dropped).toBeGreaterThanOrEqual(2);
    await down;
    await until('the kept ones acknowledged', () => small.queued === 0, 20_000);
    const all = await readAll(reader, 15 + small.published);
    const tail = all.slice(15);
    expect(tail).toEqual([...tail].sort((a, b) => a - b));
    expect(tail[tail.length - 1]).toBe(105);
    expect(dropped).toBe(small.dropped);
    await outbox.close();
    await small.close();
  }, 60_000);
});
