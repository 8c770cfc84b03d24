import os from 'node:os';
import { z } from 'zod';

/**
 * Cluster mode (docs/cluster.md): several facestream nodes share one gallery and one set of
 * streams through PostgreSQL (the system of record) and NATS with JetStream (leases, membership,
 * results). Absent: today's embedded single-process mode, unchanged. See schema.ts for conventions.
 */

/** The default node id: hostname and process id. Set `nodeId` to keep one across restarts (its leases and its durable event consumer). */
export function defaultNodeId(): string {
  return `${os.hostname()}-${process.pid}`.replace(/[^A-Za-z0-9_-]/g, '-');
}

/** The message for a missing cluster URL: what to give, and the environment variable that gives it. */
function requiredIn(what: string, env: string) {
  return (issue: { input: unknown }) => (issue.input === undefined ? `required in cluster mode: ${what}, in the config file or ${env}` : undefined);
}

export const clusterRoles = ['worker', 'api', 'both'] as const;
export type ClusterRole = (typeof clusterRoles)[number];

export const clusterSchema = z
  .strictObject({
    /** PostgreSQL URL (postgres://user:password@host:5432/db): identities, templates, stream definitions, API keys. Also FACESTREAM_CLUSTER_POSTGRES. */
    postgres: z.string({ error: requiredIn('a PostgreSQL URL (postgres://user:password@host:5432/db)', 'FACESTREAM_CLUSTER_POSTGRES') }).regex(/^postgres(ql)?:\/\/[^\s]+$/i, 'a PostgreSQL URL starts with postgres:// or postgresql://'),
    /** NATS URL(s), comma-separated for a NATS cluster (nats://host:4222): leases, membership, results. Also FACESTREAM_CLUSTER_NATS. */
    nats: z.string({ error: requiredIn('a NATS URL (nats://host:4222)', 'FACESTREAM_CLUSTER_NATS') }).regex(/^(nats|tls):\/\/[^\s]+$/i, 'a NATS URL starts with nats:// or tls://'),
    /**
     * What this node does. 'worker': runs the pipelines of the streams it holds leases on, with
     * /metrics and health; 'api': REST, WebSocket, viewer and MQTT for every camera of the
     * cluster (it still loads the models: enrollment embeds pictures); 'both' (default): a node
     * that does everything, which is what a first or second machine should be.
     */
    role: z.enum(clusterRoles).default('both'),
    /**
     * This node's name in leases, membership, metrics (`node` label) and subjects. Letters,
     * digits, - and _. Default hostname-pid, new at each start; a fixed one lets a restarted
     * worker take back at once the leases it still holds (instead of waiting for them to expire),
     * and keeps its metrics' `node` label across restarts. A node whose id a running node uses is
     * refused at start. Also FACESTREAM_NODE_ID.
     */
    nodeId: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, 'a node id has 1-64 letters, digits, - or _')
      .default(() => defaultNodeId()),
    /**
     * How long a lease and a membership entry live without renewal (ms): the JetStream KV
     * buckets' max age. A worker that dies (kill -9, network cut) loses its streams this long
     * after its last heartbeat, and they start elsewhere one assignment round later; bound on
     * failover ~ leaseTtlMs + heartbeatMs + stream start. 6 s keeps failover well inside 15 s
     * while tolerating a few missed heartbeats of a loaded machine. Every node must use the
     * same value (the buckets are created by the first node; a node with another value warns).
     */
    leaseTtlMs: z.int().min(1000).max(600_000).default(6000),
    /**
     * Each worker renews its leases, publishes its membership and measured per-stream cost, and
     * re-runs the assignment this often (ms). A third of the TTL or less: two heartbeats may be
     * lost (a GC pause, a slow disk) before a lease expires.
     */
    heartbeatMs: z.int().min(200).max(200_000).default(2000),
    /**
     * Streams move only when that lowers the most loaded worker's cost by more than this share
     * (hysteresis): measured costs vary by a few per cent from second to second, and each move
     * costs a stream restart (a second or two without results).
     */
    rebalanceThreshold: z.number().min(0).max(1).default(0.2),
    /**
     * Per-frame results a node keeps for a slow NATS connection before it drops (and counts) the
     * oldest; frames are lossy by design, the pipeline never waits for the broker.
     */
    maxQueuedFrames: z.int().min(1).max(100_000).default(200),
    /**
     * Events (appearances, stream state) held while JetStream is away; past this the oldest is
     * dropped and counted (facestream_cluster_events_dropped_total).
     */
    maxQueuedEvents: z.int().min(1).max(1_000_000).default(10_000),
    /**
     * Viewer pictures: each worker publishes a JPEG of a stream's frames at most this often while
     * some viewer asks for pictures (0: never; the viewer then draws overlays only). Per stream.
     */
    jpegFps: z.number().min(0).max(30).default(5),
    /** Width (px) of those JPEGs; viewers asking for less get them resized on the api node. */
    jpegWidth: z.int().min(16).max(4096).default(640),
    /** The NATS subject prefix and bucket-name prefix: two clusters may share one NATS under different prefixes. */
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,32}$/, 'a prefix has 1-32 letters, digits, - or _')
      .default('facestream'),
  })
  .refine((c) => c.heartbeatMs * 2 <= c.leaseTtlMs, { message: 'cluster.heartbeatMs must be at most half of cluster.leaseTtlMs: a lease must survive one missed heartbeat', path: ['heartbeatMs'] });

export type ClusterConfig = z.infer<typeof clusterSchema>;
