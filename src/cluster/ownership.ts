import type { ClusterConfig } from '../config/sections/cluster.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { assignStreams } from './assignment.js';
import type { LeaseTable } from './leases.js';
import type { Membership, NodeBeat } from './membership.js';

export interface OwnershipDeps {
  config: Pick<ClusterConfig, 'nodeId' | 'role' | 'leaseTtlMs' | 'heartbeatMs' | 'rebalanceThreshold'>;
  leases: LeaseTable;
  membership: Membership;
  /** Ids of the streams that should run somewhere (enabled definitions). */
  wanted(): Promise<string[]>;
  /** Measured cost of each stream this node runs (ms of work per second). */
  costs(): Record<string, number>;
  /** Makes the node's readers match runsHere() for a stream (StreamManager.refresh). */
  apply(streamId: string): Promise<void>;
  /** This node's HTTP address, published in its membership entry. */
  url?: () => string | undefined;
  logger: Logger;
  /** Told of every lease gained or lost (metrics, logs). */
  onChange?(streamId: string, held: boolean): void;
}

interface Held {
  revision: number;
  /** Epoch ms (this node's clock) of the last successful renewal. */
  renewedAt: number;
}

/**
 * Drives which streams this node runs in cluster mode. Every heartbeat: publish this node's
 * membership and costs, renew its leases, compute the assignment (src/cluster/assignment.ts) from
 * what NATS says, take the leases of streams assigned here that nobody holds, and give up those
 * assigned elsewhere (the other worker takes them on its next heartbeat). A lease that cannot be
 * renewed for a whole TTL (NATS away) is treated as lost and its stream stopped: another worker may
 * hold it by then, and a stream must not run twice for long.
 */
export class StreamOwnership {
  private readonly held = new Map<string, Held>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  /** Ticks completed (tests and the bench wait on it). */
  ticks = 0;
  lastError: string | undefined;

  constructor(private readonly deps: OwnershipDeps) {}

  get isWorker(): boolean {
    return this.deps.config.role !== 'api';
  }

  runsHere(streamId: string): boolean {
    return this.held.has(streamId);
  }

  heldStreams(): string[] {
    return [...this.held.keys()].sort();
  }

  start(): void {
    const loop = () => {
      if (this.closed) return;
      this.running = this.tick()
        .catch((err) => {
          this.lastError = errorMessage(err);
          this.deps.logger.warn({ err: this.lastError }, 'cluster heartbeat failed');
        })
        .finally(() => {
          this.running = undefined;
          if (!this.closed) this.timer = setTimeout(loop, this.deps.config.heartbeatMs);
        });
    };
    loop();
  }

  /** One heartbeat (public for tests). */
  async tick(): Promise<void> {
    const { config, leases, membership, logger } = this.deps;
    const now = Date.now();
    const beat: NodeBeat = { nodeId: config.nodeId, role: config.role, at: now, url: this.deps.url?.(), costs: this.isWorker ? this.deps.costs() : {} };
    let nats = true;
    try {
      await membership.beat(beat);
    } catch (err) {
      nats = false;
      this.lastError = errorMessage(err);
    }

    for (const [id, h] of [...this.held]) {
      let rev: number | null | undefined;
      try {
        rev = nats ? await leases.renew(id, h.revision) : undefined;
      } catch (err) {
        this.lastError = errorMessage(err);
        rev = undefined;
      }
      if (rev) {
        h.revision = rev;
        h.renewedAt = Date.now();
      } else if (rev === null || Date.now() - h.renewedAt > config.leaseTtlMs) {
        logger.warn({ stream: id, reason: rev === null ? 'taken or expired' : 'NATS unreachable for a lease TTL' }, `lost the lease of stream ${id}; stopping it here`);
        await this.drop(id);
      }
    }
    if (!nats || !this.isWorker || this.closed) {
      this.ticks++;
      return;
    }

    const [beats, holders, wanted] = await Promise.all([membership.live(), leases.holders(), this.deps.wanted()]);
    const workers = beats.filter((b) => b.role !== 'api').map((b) => b.nodeId);
    if (!workers.includes(config.nodeId)) workers.push(config.nodeId);
    const costs = new Map<string, number>();
    for (const b of beats) for (const [s, c] of Object.entries(b.costs ?? {})) if (holders.get(s) === b.nodeId || !costs.has(s)) costs.set(s, c);
    const { owners } = assignStreams({ streams: wanted, workers, current: holders, costs, threshold: config.rebalanceThreshold });

    const wantedSet = new Set(wanted);
    for (const id of [...this.held.keys()]) {
      const owner = owners.get(id);
      if (!wantedSet.has(id) || (owner !== undefined && owner !== config.nodeId)) {
        const h = this.held.get(id)!;
        logger.info({ stream: id, to: owner ?? null }, owner ? `handing stream ${id} over to ${owner}` : `stream ${id} no longer runs; releasing its lease`);
        await this.drop(id);
        await leases.release(id, h.revision).catch((err) => logger.warn({ stream: id, err: errorMessage(err) }, 'lease release failed; it expires by itself'));
      }
    }
    for (const [id, owner] of owners) {
      if (owner !== config.nodeId || this.held.has(id) || this.closed) continue;
      const holder = holders.get(id);
      if (holder !== undefined && holder !== config.nodeId) continue; // its holder gives it up on its own heartbeat
      const rev = await leases.acquire(id);
      if (rev === null) continue;
      this.held.set(id, { revision: rev, renewedAt: Date.now() });
      logger.info({ stream: id }, `took the lease of stream ${id}`);
      this.deps.onChange?.(id, true);
      await this.deps.apply(id);
    }
    this.ticks++;
  }

  private async drop(id: string): Promise<void> {
    this.held.delete(id);
    this.deps.onChange?.(id, false);
    await this.deps.apply(id);
  }

  /** Stops the heartbeat, stops and releases every held stream and leaves the membership: the others take over at once. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.running;
    const held = [...this.held];
    for (const [id, h] of held) {
      await this.drop(id);
      await this.deps.leases.release(id, h.revision).catch(() => undefined);
    }
    await this.deps.membership.leave(this.deps.config.nodeId).catch(() => undefined);
  }
}
