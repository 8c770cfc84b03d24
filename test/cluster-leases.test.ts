import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LeaseTable } from '../src/cluster/leases.js';
import { Membership } from '../src/cluster/membership.js';
import { connectNats } from '../src/cluster/nats/connection.js';
import { openTtlBucket } from '../src/cluster/nats/kv.js';
import { ClusterNode } from '../src/cluster/node.js';
import { StreamOwnership } from '../src/cluster/ownership.js';
import { clusterSchema } from '../src/config/sections/cluster.js';
import { isFacestreamError } from '../src/errors.js';
import { createLogger } from '../src/log.js';
import { natsForFile } from './helpers/nats-suite.js';
import { pollUntil } from './helpers/serve-process.js';

/**
 * Stream leases and ownership on a real nats-server with JetStream: two "workers" (StreamOwnership
 * instances with their own connections) share four streams; one dies without releasing anything
 * (its heartbeat stops, as with kill -9) and the other takes its streams once the leases expire;
 * it comes back and the streams spread again. The whole-process version is test/cluster.test.ts.
 */

const TTL = 2000;
const BEAT = 400;
const logger = createLogger('silent');
const STREAMS = ['cam-1', 'cam-2', 'cam.3', 'cam-4'];
const nats = natsForFile();
const conns = nats.connections;

async function worker(nodeId: string) {
  const nc = await connectNats(nats.url, nodeId, logger);
  conns.push(nc);
  const leases = new LeaseTable(await openTtlBucket(nc, 'test_leases', TTL, logger, 1000), nodeId);
  const membership = new Membership(await openTtlBucket(nc, 'test_members', TTL, logger, 1000));
  const running = new Set<string>();
  const ownership: StreamOwnership = new StreamOwnership({
    config: { nodeId, role: 'worker', leaseTtlMs: TTL, heartbeatMs: BEAT, rebalanceThreshold: 0.2 },
    leases,
    membership,
    wanted: async () => STREAMS,
    costs: () => Object.fromEntries([...running].map((s) => [s, 100])),
    apply: async (id) => void (ownership.runsHere(id) ? running.add(id) : running.delete(id)),
    logger,
  });
  return { nc, leases, ownership, running };
}

const until = (what: string, cond: () => boolean, ms = 20_000) => pollUntil(what, cond, ms, 100);

describe('stream leases on JetStream KV', () => {
  it('one holder at a time; renew needs the current revision; release frees at once', async () => {
    const nc = await connectNats(nats.url, 'a', logger);
    conns.push(nc);
    const kv = await openTtlBucket(nc, 'unit_leases', TTL, logger);
    const a = new LeaseTable(kv, 'a');
    const b = new LeaseTable(kv, 'b');
    const rev = await a.acquire('s.1');
    expect(rev).toBeGreaterThan(0);
    expect(await b.acquire('s.1')).toBeNull();
    expect(await b.renew('s.1', rev! + 100)).toBeNull();
    const rev2 = await a.renew('s.1', rev!);
    expect(rev2).toBeGreaterThan(rev!);
    expect(await a.renew('s.1', rev!)).toBeNull(); // a stale revision is refused
    expect((await a.holders()).get('s.1')).toBe('a');
    // A restarted node with the same id takes its own lease back.
    expect(await new LeaseTable(kv, 'a').acquire('s.1')).toBeGreaterThan(rev2!);
    await a.release('s.1', rev!); // a stale revision releases nothing
    expect((await a.holders()).get('s.1')).toBe('a');
    const held = await kv.get('s=2E1');
    await a.release('s.1', held!.revision);
    expect(await b.acquire('s.1')).toBeGreaterThan(0);
    // Nobody renews: the bucket's max age ends the lease.
    const end = Date.now() + TTL * 4;
    let gone = false;
    while (!gone && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
      gone = !(await a.holders()).has('s.1');
    }
    expect(gone).toBe(true);
    expect(await a.acquire('s.1')).toBeGreaterThan(0);
  }, 30_000);

  it('spreads streams over two workers, fails over when one dies, spreads again when it returns', async () => {
    const w1 = await worker('w1');
    w1.ownership.start();
    await until('w1 runs all four', () => w1.running.size === 4);
    const w2 = await worker('w2');
    w2.ownership.start();
    await until('two each', () => w1.running.size === 2 && w2.running.size === 2);
    expect([...w1.running, ...w2.running].sort()).toEqual([...STREAMS].sort());

    // w2 dies: no release, no goodbye (its connection closes as a killed process's would).
    const w2Streams = [...w2.running];
    await w2.nc.close();
    // Its leases expire within the TTL; w1 takes them on a following heartbeat.
    await until('w1 runs all four again', () => w1.running.size === 4, TTL * 4 + 5000);
    expect(w2Streams.every((s) => w1.running.has(s))).toBe(true);

    const w3 = await worker('w3');
    w3.ownership.start();
    await until('two each after w3 joins', () => w1.running.size === 2 && w3.running.size === 2);
    // Never two runners of one stream.
    expect([...w1.running].filter((s) => w3.running.has(s))).toEqual([]);
    await w3.ownership.close();
    await until('w1 takes w3 streams after its clean leave', () => w1.running.size === 4, BEAT * 10);
    await w1.ownership.close();
    expect((await w1.leases.holders()).size).toBe(0);
  }, 60_000);

  it('a worker cut off from NATS for longer than the TTL stops its streams itself, and takes them again when NATS is back', async () => {
    const w = await worker('w4');
    w.ownership.start();
    await until('w4 runs all four', () => w.running.size === 4);
    const down = nats.restart({ downMs: TTL * 3 });
    // Fenced within TTL + a heartbeat + one KV timeout (1 s here), while NATS is still down.
    const cut = Date.now();
    await until('w4 to stop its streams', () => w.running.size === 0, TTL * 3);
    console.log(`self-fenced ${Date.now() - cut} ms after NATS went away (TTL ${TTL} ms)`);
    await down;
    await until('w4 runs all four again', () => w.running.size === 4, 20_000);
    await w.ownership.close();
  }, 60_000);
});

describe('a node configured with another lease TTL than the cluster', () => {
  it('warns, and lives by the TTL of the bucket the first node created; refuses a heartbeat that TTL cannot survive', async () => {
    const prefix = 'ttlmix';
    const first = await ClusterNode.start(clusterSchema.parse({ postgres: 'postgres://x@127.0.0.1/x', nats: nats.url, nodeId: 'first', prefix, leaseTtlMs: 3000, heartbeatMs: 1000 }), { registry: new Registry(), logger });
    let lines = '';
    const sink = new Writable({ write: (chunk, _enc, done) => void ((lines += chunk.toString()), done()) });
    const second = await ClusterNode.start(clusterSchema.parse({ postgres: 'postgres://x@127.0.0.1/x', nats: nats.url, nodeId: 'second', prefix, leaseTtlMs: 20_000, heartbeatMs: 1000 }), {
      registry: new Registry(),
      logger: createLogger('info', sink),
    });
    try {
      expect(second.config.leaseTtlMs).toBe(3000);
      expect(lines).toMatch(/KV bucket ttlmix_leases has a max age of 3000 ms.*this node's cluster\.leaseTtlMs is 20000 ms: using 3000 ms/);
      const err = await ClusterNode.start(clusterSchema.parse({ postgres: 'postgres://x@127.0.0.1/x', nats: nats.url, nodeId: 'third', prefix, leaseTtlMs: 10_000, heartbeatMs: 2000 }), { registry: new Registry(), logger }).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(isFacestreamError(err, 'CONFIG_INVALID')).toBe(true);
      expect(err!.message).toMatch(/lease TTL is 3000 ms .*cluster\.heartbeatMs is 2000 ms/);
    } finally {
      await second.close();
      await first.close();
    }
  }, 30_000);
});

describe('node ids', () => {
  it('a node id used by a running node is refused; one left by a killed node is taken back', async () => {
    const nc = await connectNats(nats.url, 'ids', logger);
    conns.push(nc);
    const kv = await openTtlBucket(nc, 'ids_members', 5000, logger, 1000);
    const running = new Membership(kv);
    const beat = () => running.beat({ nodeId: 'twin', role: 'worker', at: Date.now(), url: 'http://10.0.0.1:8080', costs: {} });
    await beat();
    const timer = setInterval(() => void beat(), BEAT);
    try {
      const err = await new Membership(kv).claim('twin', BEAT).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(isFacestreamError(err, 'CONFIG_INVALID')).toBe(true);
      expect(err!.message).toMatch(/node id "twin" is in use by another running node \(role worker, http:\/\/10\.0\.0\.1:8080\)/);
      await running.claim('twin', BEAT); // its own entry
    } finally {
      clearInterval(timer);
    }
    // The entry stays until the TTL, as after kill -9: a new process of that id starts.
    await new Membership(kv).claim('twin', BEAT);
    await new Membership(kv).claim('nobody-yet', BEAT);
  }, 30_000);
});
