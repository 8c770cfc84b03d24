import type { NatsConnection } from 'nats';
import type { Registry } from 'prom-client';
import type { ClusterConfig } from '../config/sections/cluster.js';
import { FacestreamError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { LiveSource } from '../server/live/source.js';
import type { StreamManager, StreamPlacement } from '../server/streams.js';
import { LeaseTable } from './leases.js';
import { Membership } from './membership.js';
import { ClusterMetrics } from './metrics.js';
import { connectNats } from './nats/connection.js';
import { ensureEventStream } from './nats/event-outbox.js';
import { bucketTtlMs, openTtlBucket } from './nats/kv.js';
import { NatsLiveSource } from './nats/remote-results.js';
import { ResultPublisher } from './nats/results-publisher.js';
import { ClusterNames } from './nats/subjects.js';
import { StreamOwnership } from './ownership.js';

export interface ClusterNodeDeps {
  registry: Registry;
  logger: Logger;
}

/**
 * This node's part in the cluster over NATS (docs/cluster.md): the connection, the names, the
 * lease-driven placement of streams (workers), the results publisher (workers) and the live source
 * fed from NATS (api nodes). Built in two steps because the StreamManager needs the placement and
 * the rest needs the StreamManager: startClusterNode(), then attach().
 */
export class ClusterNode {
  readonly metrics: ClusterMetrics;
  readonly names: ClusterNames;
  private ownership: StreamOwnership | undefined;
  private publisher: ResultPublisher | undefined;
  private source: NatsLiveSource | undefined;
  private streams: StreamManager | undefined;
  private urlOf: () => string | undefined = () => undefined;

  private constructor(
    readonly config: ClusterConfig,
    readonly nc: NatsConnection,
    private readonly leases: LeaseTable,
    private readonly membership: Membership,
    private readonly deps: ClusterNodeDeps,
  ) {
    this.metrics = new ClusterMetrics(deps.registry);
    this.names = new ClusterNames(config.prefix);
  }

  static async start(config: ClusterConfig, deps: ClusterNodeDeps): Promise<ClusterNode> {
    const nc = await connectNats(config.nats, config.nodeId, deps.logger);
    try {
      const names = new ClusterNames(config.prefix);
      await ensureEventStream(nc, names.eventStream, names.allEvents, deps.logger);
      const timeout = Math.max(1000, config.heartbeatMs);
      const leaseKv = await openTtlBucket(nc, names.leaseBucket, config.leaseTtlMs, deps.logger, timeout);
      const membership = new Membership(await openTtlBucket(nc, names.memberBucket, config.leaseTtlMs, deps.logger, timeout));
      await membership.claim(config.nodeId, config.heartbeatMs);
      // The bucket's max age is when leases really expire: a worker must give its streams up by
      // that clock, not by its own setting, or two workers would run a stream at once after a cut.
      const leaseTtlMs = await bucketTtlMs(leaseKv);
      if (config.heartbeatMs * 2 > leaseTtlMs) {
        throw new FacestreamError(
          'CONFIG_INVALID',
          `the cluster's lease TTL is ${leaseTtlMs} ms (KV bucket ${names.leaseBucket}, created by the first node), but this node's cluster.heartbeatMs is ${config.heartbeatMs} ms: it must be at most half of the TTL, or its leases expire between heartbeats. Set cluster.leaseTtlMs to ${leaseTtlMs} and cluster.heartbeatMs to at most ${Math.floor(leaseTtlMs / 2)} (cluster.heartbeatMs)`,
          { leaseTtlMs, heartbeatMs: config.heartbeatMs },
        );
      }
      const leases = new LeaseTable(leaseKv, config.nodeId);
      return new ClusterNode({ ...config, leaseTtlMs }, nc, leases, membership, deps);
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw err;
    }
  }

  get runsPipelines(): boolean {
    return this.config.role !== 'api';
  }

  get servesClients(): boolean {
    return this.config.role !== 'worker';
  }

  /** For the StreamManager: run a stream here only while holding its lease; show the others as their workers report them. */
  readonly placement: StreamPlacement = {
    runsHere: (id) => this.ownership?.runsHere(id) ?? false,
    remoteInfo: (id) => this.source?.remoteInfo(id),
  };

  /** What the hub and MQTT read: every worker's results from NATS (undefined on a worker-only node). */
  liveSource(): LiveSource | undefined {
    if (!this.servesClients) return undefined;
    this.source ??= new NatsLiveSource({ nc: this.nc, names: this.names, streams: () => this.streams!, staleAfterMs: Math.max(3000, this.config.heartbeatMs * 2), metrics: this.metrics, logger: this.deps.logger });
    return this.source;
  }

  /** Leases held by this node (tests, the bench, /ready). */
  heldStreams(): string[] {
    return this.ownership?.heldStreams() ?? [];
  }

  /**
   * Starts the node's cluster work: reading events (api), publishing results and taking leases
   * (worker). `wanted` lists the streams that should run (enabled definitions, from PostgreSQL).
   */
  async attach(opts: { streams: StreamManager; pipeline: Pipeline; wanted: () => Promise<string[]>; url: () => string | undefined }): Promise<void> {
    this.streams = opts.streams;
    this.urlOf = opts.url;
    if (this.source) await this.source.start();
    if (!this.runsPipelines) return;
    const { pipeline, streams } = opts;
    this.publisher = new ResultPublisher({ nc: this.nc, names: this.names, pipeline, streams, config: this.config, metrics: this.metrics, logger: this.deps.logger });
    this.ownership = new StreamOwnership({
      config: this.config,
      leases: this.leases,
      membership: this.membership,
      wanted: opts.wanted,
      costs: () => {
        // ms of pipeline work per second: smoothed cost of one frame x processed frames per second.
        const out: Record<string, number> = {};
        for (const id of this.heldStreams()) {
          const perFrame = pipeline.streamCostMs(id) ?? 0;
          const fps = pipeline.streamStats(id)?.fps ?? 0;
          if (perFrame > 0 && fps > 0) out[id] = perFrame * fps;
        }
        return out;
      },
      apply: (id) => streams.applyPlacement(id),
      url: () => this.urlOf(),
      logger: this.deps.logger,
      onChange: (_id, held) => {
        this.metrics.leaseChanges.inc({ change: held ? 'acquired' : 'released' });
        this.metrics.leasesHeld.set(this.heldStreams().length);
      },
    });
    this.ownership.start();
  }

  /** Gives every lease up (the other workers take the streams at once), stops publishing, closes NATS. */
  async close(): Promise<void> {
    await this.ownership?.close();
    await this.publisher?.close();
    this.source?.close();
    await this.nc.drain().catch(() => this.nc.close());
  }
}
