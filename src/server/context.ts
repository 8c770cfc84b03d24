import type { ClusterNode } from '../cluster/node.js';
import type { Config } from '../config/schema.js';
import type { AppearanceHistory } from '../history/history.js';
import type { Enroller } from '../index/enroll.js';
import type { Gallery } from '../index/gallery.js';
import type { GalleryWriter } from '../index/gallery-writer.js';
import type { Logger } from '../log.js';
import type { FaceAnalyzer } from '../pipeline/analyzer.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { Access, ApiKeys } from './auth.js';
import type { LiveHub } from './live/hub.js';
import type { PictureGate } from './picture-gate.js';
import type { ServerMetrics } from './metrics.js';
import type { StreamManager } from './streams.js';

/** Readiness facts the server flips as it starts (and back when shutting down). */
export interface Readiness {
  /** Every model loaded and one warm-up batch run. */
  models: boolean;
  gallery: boolean;
  /** Stored streams restored (started or marked failed). */
  streams: boolean;
  shuttingDown: boolean;
}

/** Everything routes use; built by startServer (or by tests) and handed to buildApp. */
export interface ServerContext {
  config: Config;
  logger: Logger;
  analyzer: FaceAnalyzer;
  pipeline: Pipeline;
  /** Reads and searches (in cluster mode: this node's replica of PostgreSQL's gallery). */
  gallery: Gallery;
  /** Every gallery write goes through it: the embedded gallery, or PostgreSQL (cluster mode). */
  galleryWriter: GalleryWriter;
  enroller: Enroller;
  streams: StreamManager;
  hub: LiveHub;
  metrics: ServerMetrics;
  /** Bounds the pictures decoded and analysed at once (every route that takes pictures runs its work through it). */
  pictureGate: PictureGate;
  keys: ApiKeys;
  readiness: Readiness;
  /** The appearance history and face library (undefined: history.enabled is off). */
  history?: AppearanceHistory;
  /** The server's data directory (temporary files for export/import go under it). */
  dataDir: string;
  version: string;
  /** Cluster mode: this node's part over NATS (role, leases, results); undefined in embedded mode. */
  cluster?: ClusterNode;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route (see auth.ts); GET defaults to 'read', other methods to 'write'. */
    access?: Access;
  }
  interface FastifyRequest {
    /** The caller's role once authenticated (null: no key). */
    role: 'read' | 'write' | null;
  }
}
