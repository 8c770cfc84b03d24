import type { KV } from 'nats';
import { streamFromToken, streamToken } from './nats/subjects.js';

/**
 * Stream leases in a JetStream KV bucket whose max age is the lease TTL (src/cluster/nats/kv.ts).
 * Acquire = create (fails when anyone holds the key); renew = update with the revision we wrote
 * last (fails when the key expired or someone else holds it now); release = delete with that
 * revision. Nothing here decides who should hold what (src/cluster/assignment.ts does); NATS's
 * compare-and-set on the key is what makes one holder at a time.
 */
export class LeaseTable {
  constructor(
    private readonly kv: KV,
    readonly nodeId: string,
  ) {}

  /**
   * Takes the lease of a stream nobody holds; the revision, or null when someone holds it. A lease
   * still held under this node's id (this node restarted with a fixed cluster.nodeId before it
   * expired) is taken back at once.
   */
  async acquire(streamId: string): Promise<number | null> {
    const key = streamToken(streamId);
    try {
      return await this.kv.create(key, new TextEncoder().encode(this.nodeId));
    } catch (err) {
      if (!isCasFailure(err)) throw err;
    }
    const e = await this.kv.get(key);
    if (!e || e.operation !== 'PUT' || e.string() !== this.nodeId) return null;
    return this.renew(streamId, e.revision);
  }

  /** Renews a lease held at `revision`; the new revision, or null when it was lost (expired, taken). */
  async renew(streamId: string, revision: number): Promise<number | null> {
    try {
      return await this.kv.update(streamToken(streamId), new TextEncoder().encode(this.nodeId), revision);
    } catch (err) {
      if (isCasFailure(err)) return null;
      throw err;
    }
  }

  /** Gives a lease up (only if still held at `revision`), so another worker can take it at once. */
  async release(streamId: string, revision: number): Promise<void> {
    try {
      await this.kv.delete(streamToken(streamId), { previousSeq: revision });
    } catch (err) {
      if (!isCasFailure(err)) throw err;
    }
  }

  /** Every live lease: stream id -> holder node id (expired ones are gone from the bucket). */
  async holders(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const keys: string[] = [];
    for await (const k of await this.kv.keys()) keys.push(k);
    await Promise.all(
      keys.map(async (k) => {
        const e = await this.kv.get(k);
        if (e && e.operation === 'PUT' && e.value.length) out.set(streamFromToken(k), e.string());
      }),
    );
    return out;
  }
}

/** NATS's answer when an expected revision does not match ("wrong last sequence") or a create finds the key. */
export function isCasFailure(err: unknown): boolean {
  const m = String((err as Error)?.message ?? err);
  return /wrong last sequence|key exists|10071/i.test(m);
}
