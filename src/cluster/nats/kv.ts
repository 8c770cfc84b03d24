import { StorageType, type KV, type NatsConnection } from 'nats';
import { errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';

/**
 * Opens (creating when missing) a JetStream KV bucket whose entries expire `ttlMs` after their last
 * write (the bucket's max age: NATS 2.9 has no per-key TTL, so every entry of a bucket shares it).
 * File storage: a NATS restart keeps the leases, so running streams stay where they are.
 * A bucket created earlier with another TTL is used as it is, with a warning: its TTL wins (read it
 * with bucketTtlMs).
 * `timeoutMs`: how long one KV operation may wait for an answer.
 */
export async function openTtlBucket(nc: NatsConnection, name: string, ttlMs: number, logger: Logger, timeoutMs = 5000): Promise<KV> {
  // Operations fail after timeoutMs instead of waiting out a NATS outage: a worker must notice
  // within about a heartbeat that it cannot renew its leases (see ownership.ts).
  const js = nc.jetstream({ timeout: timeoutMs });
  let kv: KV;
  try {
    kv = await js.views.kv(name, { ttl: ttlMs, history: 1, storage: StorageType.File });
  } catch (err) {
    logger.warn({ bucket: name, err: errorMessage(err) }, `KV bucket ${name} exists with other settings; using it as it is (its max age is every node's lease TTL: keep cluster.leaseTtlMs the same on every node)`);
    kv = await js.views.kv(name, { bindOnly: true });
  }
  // An existing bucket keeps the max age it was created with (the client does not change it), so
  // a node configured with another TTL would otherwise believe its own value in silence.
  const actual = await bucketTtlMs(kv);
  if (actual !== ttlMs) {
    logger.warn(
      { bucket: name, bucketTtlMs: actual, leaseTtlMs: ttlMs },
      `KV bucket ${name} has a max age of ${actual} ms, set by the node that created it; this node's cluster.leaseTtlMs is ${ttlMs} ms: using ${actual} ms. Keep cluster.leaseTtlMs the same on every node`,
    );
  }
  return kv;
}

/** The max age of a bucket's entries (ms): the lease TTL every node of the cluster lives by. */
export async function bucketTtlMs(kv: KV): Promise<number> {
  return (await kv.status()).ttl;
}
