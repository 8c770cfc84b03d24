import type { KV } from 'nats';
import type { ClusterRole } from '../config/sections/cluster.js';

/** What a node says about itself at each heartbeat (the membership bucket's value). */
export interface NodeBeat {
  nodeId: string;
  role: ClusterRole;
  /** Epoch ms on the node's clock when written (for people; liveness is the bucket's max age). */
  at: number;
  /** This node's HTTP address, when it listens (for people and the bench). */
  url?: string;
  /** Measured cost of each stream it runs: ms of pipeline work per second (smoothed frame cost x fps). */
  costs: Record<string, number>;
}

/**
 * Cluster membership in a JetStream KV bucket with the lease TTL as max age: a node is live while
 * its entry is there; a node killed with -9 drops out one TTL after its last heartbeat.
 */
export class Membership {
  constructor(private readonly kv: KV) {}

  async beat(b: NodeBeat): Promise<void> {
    await this.kv.put(b.nodeId, new TextEncoder().encode(JSON.stringify(b)));
  }

  /** Says goodbye at a clean shutdown: the others need not wait for the TTL. */
  async leave(nodeId: string): Promise<void> {
    await this.kv.delete(nodeId);
  }

  async live(): Promise<NodeBeat[]> {
    const keys: string[] = [];
    for await (const k of await this.kv.keys()) keys.push(k);
    const beats = await Promise.all(
      keys.map(async (k) => {
        const e = await this.kv.get(k);
        if (!e || e.operation !== 'PUT' || !e.value.length) return undefined;
        try {
          return JSON.parse(e.string()) as NodeBeat;
        } catch {
          return undefined;
        }
      }),
    );
    return beats.filter((b): b is NodeBeat => b !== undefined);
  }
}
