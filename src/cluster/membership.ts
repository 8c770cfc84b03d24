import crypto from 'node:crypto';
import type { KV } from 'nats';
import type { ClusterRole } from '../config/sections/cluster.js';
import { FacestreamError } from '../errors.js';

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
  /** Which process wrote it (a random id per start; set by Membership): tells two nodes of one id apart. */
  instance?: string;
}

/**
 * Cluster membership in a JetStream KV bucket with the lease TTL as max age: a node is live while
 * its entry is there; a node killed with -9 drops out one TTL after its last heartbeat.
 */
export class Membership {
  /** This process's instance id, written in every beat. */
  readonly instance = crypto.randomUUID();

  constructor(private readonly kv: KV) {}

  async beat(b: NodeBeat): Promise<void> {
    await this.kv.put(b.nodeId, new TextEncoder().encode(JSON.stringify({ ...b, instance: this.instance })));
  }

  /**
   * At start: refuses (CONFIG_INVALID) a node id that a running node already uses. Two nodes of one
   * id would each renew and lose the other's leases forever, restarting streams every few seconds.
   * An entry left by this id's previous process (killed, within the TTL) is told apart by waiting
   * 1.5 heartbeats: a running node rewrites its entry by then, a dead one does not. So a restart
   * with a fixed node id waits that long only when its old entry is still there.
   */
  async claim(nodeId: string, heartbeatMs: number): Promise<void> {
    const before = await this.kv.get(nodeId);
    if (!before || before.operation !== 'PUT' || !before.value.length) return;
    await new Promise((r) => setTimeout(r, Math.round(heartbeatMs * 1.5) + 250));
    const after = await this.kv.get(nodeId);
    if (!after || after.operation !== 'PUT' || after.revision === before.revision) return;
    let other: Partial<NodeBeat> = {};
    try {
      other = JSON.parse(after.string()) as NodeBeat;
    } catch {
      // an unreadable entry is still someone else's heartbeat
    }
    if (other.instance === this.instance) return;
    throw new FacestreamError(
      'CONFIG_INVALID',
      `node id "${nodeId}" is in use by another running node (role ${other.role ?? 'unknown'}${other.url ? `, ${other.url}` : ''}): give every node its own cluster.nodeId (FACESTREAM_NODE_ID)`,
      { nodeId },
    );
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
