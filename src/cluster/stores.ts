import type { GalleryConfig } from '../config/sections/gallery.js';
import type { Gallery } from '../index/gallery.js';
import type { GalleryWriter } from '../index/gallery-writer.js';
import type { Logger } from '../log.js';
import type { ApiKeyStore, StreamDefinitionStore } from '../server/definition-stores.js';

export type { GalleryWriter, AddedToIdentity } from '../index/gallery-writer.js';
export { EmbeddedGalleryWriter } from '../index/gallery-writer.js';
export type { ApiKeyStore, StreamDefinitionStore } from '../server/definition-stores.js';
export { SqliteApiKeyStore, SqliteStreamDefinitionStore } from '../server/definition-stores.js';

/** Options of the cluster's stores; the factory does not read the config file (the `cluster` config section passes these). */
export interface ClusterStoreOptions {
  /** The system of record, e.g. postgres://facestream@127.0.0.1:5432/facestream. */
  postgresUrl: string;
  /** This node's local replica (SQLite + HNSW cache), rebuilt from PostgreSQL when missing or stale. */
  cacheDir: string;
  /** The embedding model of this node; PostgreSQL records the cluster's and refuses another. */
  modelId: string;
  dimension: number;
  /** cfg.gallery */
  galleryConfig: GalleryConfig;
  defaultMinSimilarity?: number;
  logger: Logger;
  /** How long PostgreSQL may take before it counts as unreachable (defaults in STORE_TIMEOUTS; tests shorten them). */
  timeouts?: Partial<StoreTimeouts>;
}

/** Bounds on waiting for PostgreSQL (ms). */
export interface StoreTimeouts {
  /** Opening a connection. */
  connectMs: number;
  /** One statement's answer: a partitioned server otherwise hangs a write until TCP gives up. */
  queryMs: number;
  /** Interval of the change feed's liveness check (its answer may take queryMs, capped at 5 s). */
  heartbeatMs: number;
  /**
   * How long a starting node keeps trying to reach PostgreSQL before it gives up. Nodes and their
   * database are often started together (compose's depends_on waits for the container, not for
   * PostgreSQL to accept connections), so a first refusal must not end the node; the same window
   * as NATS's first connection (nats/connection.ts).
   */
  startMs: number;
}

export const STORE_TIMEOUTS: StoreTimeouts = { connectMs: 3000, queryMs: 15_000, heartbeatMs: 10_000, startMs: 15_000 };

/** The stores of one cluster node. */
export interface ClusterStores {
  /** This node's replica: every read and search is local and synchronous (the existing Gallery API). Never write to it directly. */
  gallery: Gallery;
  /** Writes go to PostgreSQL and resolve after this node's replica has applied them (read-your-writes). */
  galleryWriter: GalleryWriter;
  streams: StreamDefinitionStore;
  apiKeys: ApiKeyStore;
  /** Resolves when the replica has applied every change committed up to now (tests, the bench). */
  caughtUp(): Promise<void>;
  /** Whether PostgreSQL is reachable now (for readiness and metrics). */
  connected(): boolean;
  close(): Promise<void>;
}

/**
 * Opens this node's stores on PostgreSQL: creates or migrates the schema, opens (or rebuilds)
 * the local replica under cacheDir, catches it up and starts following the change feed.
 * Throws FacestreamError STORE_UNAVAILABLE when PostgreSQL cannot be reached, and
 * GALLERY_MODEL_MISMATCH when the cluster's gallery holds another model's embeddings.
 */
export async function openClusterStores(opts: ClusterStoreOptions): Promise<ClusterStores> {
  const { openPostgresStores } = await import('./postgres/open.js');
  return openPostgresStores(opts);
}
