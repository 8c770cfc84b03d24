import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ClusterNode } from '../cluster/node.js';
import { openClusterStores, type ClusterStores } from '../cluster/stores.js';
import type { Config } from '../config/schema.js';
import { errorMessage, FacestreamError } from '../errors.js';
import { startHistory } from '../history/service.js';
import { Enroller } from '../index/enroll.js';
import { EmbeddedGalleryWriter } from '../index/gallery-writer.js';
import { Gallery } from '../index/gallery.js';
import { startMqtt } from '../integrations/mqtt/index.js';
import { rootLogger, type Logger } from '../log.js';
import { BUNDLED_MANIFEST, loadManifest } from '../models/manifest.js';
import { ModelRuntime } from '../models/runtime.js';
import { ModelStore } from '../models/store.js';
import { PACKAGE_ROOT } from '../paths.js';
import { FaceAnalyzer } from '../pipeline/analyzer.js';
import type { DetectedFace } from '../pipeline/detect/mtcnn.js';
import { Pipeline } from '../pipeline/pipeline.js';
import { buildApp } from './app.js';
import { ApiKeys, generateKey, hashKey, parseConfiguredKey, type Role } from './auth.js';
import { SqliteStreamDefinitionStore, type ApiKeyStore } from './definition-stores.js';
import type { Readiness, ServerContext } from './context.js';
import { LiveHub } from './live/hub.js';
import { PipelineLiveSource } from './live/source.js';
import { PictureGate } from './picture-gate.js';
import { ServerMetrics } from './metrics.js';
import { ServerStore } from './store.js';
import { StreamManager } from './streams.js';

export interface StartServerOptions {
  logger?: Logger;
  /** A loaded analyzer to share (tests, benchmarks); otherwise the server loads its own. */
  analyzer?: FaceAnalyzer;
  /** Listen on config.server.host/port (default true); false: build only, for app.inject(). */
  listen?: boolean;
  /** Replace the stored generated key with a new one (printed once). */
  resetKey?: boolean;
  /** Extra directories file sources may come from (the demo video's). */
  extraSourceDirs?: string[];
  /**
   * Cluster mode: this node's stores on PostgreSQL (openClusterStores, src/cluster/stores.ts).
   * The server then reads and searches the node's replica, writes the gallery, stream definitions
   * and generated API key through them, and keeps none of these in its own directories. The caller
   * opened them and closes them after the server.
   */
  stores?: ClusterStores;
}

export interface RunningServer {
  app: FastifyInstance;
  ctx: ServerContext;
  /** http://host:port once listening. */
  url: string;
  /** The key generated at this start (first start, or resetKey): shown once, never stored. */
  generatedKey?: string;
  /** Where the keys in force come from. */
  keySource: 'config' | 'stored' | 'generated';
  close(): Promise<void>;
}

export function packageVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/**
 * API keys in force: the configured ones, else the stored hash of a generated key, else a new
 * key generated now (returned once so it can be printed; only its hash is stored). Configured
 * read-only keys without a configured write key keep the stored (or a new generated) write key:
 * adding a read key for a dashboard must not leave the server with no key that may write.
 * `readOnlyOnly` says that happened, so the start can say where the write key comes from.
 */
export function resolveKeys(config: Config['server'], store: ServerStore, resetKey = false): ResolvedKeys {
  const { toStore, ...resolved } = chooseKeys(config, store.apiKeys(), resetKey);
  if (toStore) store.replaceApiKeys(toStore.hash, toStore.role);
  return resolved;
}

/** resolveKeys with the stored keys in an ApiKeyStore (cluster mode: PostgreSQL, shared by every node). */
export async function resolveStoredKeys(config: Config['server'], store: ApiKeyStore, resetKey = false): Promise<ResolvedKeys> {
  const { toStore, ...resolved } = chooseKeys(config, await store.list(), resetKey);
  if (toStore) await store.replace(toStore.hash, toStore.role);
  return resolved;
}

export interface ResolvedKeys {
  keys: ApiKeys;
  generated?: string;
  source: RunningServer['keySource'];
  readOnlyOnly: boolean;
}

/** The keys in force given the stored ones; `toStore`: the hash of a key generated now, to store in place of the others. */
function chooseKeys(config: Config['server'], stored: { hash: Buffer; role: Role }[], resetKey: boolean): ResolvedKeys & { toStore?: { hash: Buffer; role: Role } } {
  const write = config.auth.keys.map((k) => parseConfiguredKey(k, 'write'));
  const read = config.auth.readOnlyKeys.map((k) => parseConfiguredKey(k, 'read'));
  if (write.length) return { keys: new ApiKeys([...write, ...read]), source: 'config', readOnlyOnly: false };
  if (stored.length && !resetKey) return { keys: new ApiKeys([...stored, ...read]), source: 'stored', readOnlyOnly: read.length > 0 };
  const key = generateKey();
  const toStore = { hash: hashKey(key), role: 'write' as const };
  return { keys: new ApiKeys([toStore, ...read]), generated: key, source: 'generated', readOnlyOnly: read.length > 0, toStore };
}

/** Runs each model once so the first camera frame does not pay for session warm-up (readiness waits for it). */
async function warmUp(analyzer: FaceAnalyzer): Promise<void> {
  const size = 160;
  const image = { width: size, height: size, data: new Uint8Array(size * size * 3).fill(128) };
  const face: DetectedFace = { box: [40, 40, 120, 120], score: 1, landmarks: [[65, 70], [95, 70], [80, 85], [68, 100], [92, 100]] };
  await analyzer.detect([image]);
  await analyzer.embedder.embedFaces([{ image, face }]);
  if (analyzer.attributes) await analyzer.attributes.estimate([{ image, face }]);
}

/** Builds and starts the whole server: models, gallery, pipeline, streams, HTTP + WebSocket. */
export async function startServer(config: Config, opts: StartServerOptions = {}): Promise<RunningServer> {
  const logger = opts.logger ?? rootLogger();
  const version = packageVersion();
  const cfg: Config = opts.extraSourceDirs?.length
    ? { ...config, server: { ...config.server, sources: { ...config.server.sources, allowedDirs: [...config.server.sources.allowedDirs, ...opts.extraSourceDirs] } } }
    : config;
  const readiness: Readiness = { models: false, gallery: false, streams: false, shuttingDown: false };
  const metrics = new ServerMetrics({ version, nodeId: cfg.cluster?.nodeId });
  const cleanup: (() => Promise<void> | void)[] = [];
  const runCleanup = async () => {
    for (const fn of cleanup.reverse()) {
      try {
        await fn();
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'shutdown step failed');
      }
    }
    cleanup.length = 0;
  };

  cleanup.push(() => metrics.close());
  try {
    // Cluster mode (docs/cluster.md): NATS first, so that a wrong URL fails the start before models load.
    const cluster = cfg.cluster ? await ClusterNode.start(cfg.cluster, { registry: metrics.registry, logger }) : undefined;
    if (cluster) cleanup.push(() => cluster.close());
    const dataDir = path.resolve(cfg.server.dataDir);
    const store = new ServerStore(dataDir);
    cleanup.push(() => store.close());
    // With PostgreSQL stores the generated key lives there (shared by every node): resolved once the stores are open.
    const embeddedKeys = cfg.cluster || opts.stores ? undefined : resolveKeys(cfg.server, store, opts.resetKey);

    let analyzer = opts.analyzer;
    if (!analyzer) {
      const runtime = new ModelRuntime(new ModelStore(loadManifest(cfg.models.manifest ?? BUNDLED_MANIFEST), path.resolve(cfg.models.dir)), cfg.runtime, logger);
      cleanup.push(() => runtime.close());
      analyzer = await FaceAnalyzer.create(runtime, cfg);
    }
    analyzer.runtime.observer = metrics.inferenceObserver;
    await warmUp(analyzer);
    readiness.models = true;

    const defaultMinSimilarity = cfg.embedding.minSimilarity ?? analyzer.embedder.defaultMinSimilarity;
    let stores: ClusterStores | undefined = opts.stores;
    if (!stores && cfg.cluster) {
      // Cluster mode: the gallery is this node's replica of PostgreSQL (src/cluster/stores.ts); the local cache lives under gallery.dir.
      const opened = await openClusterStores({ postgresUrl: cfg.cluster.postgres, cacheDir: path.resolve(cfg.gallery.dir), modelId: analyzer.embedder.modelId, dimension: analyzer.embedder.dimension, galleryConfig: cfg.gallery, defaultMinSimilarity, logger });
      cleanup.push(() => opened.close());
      stores = opened;
    }
    const gallery = stores
      ? stores.gallery
      : await Gallery.open(path.resolve(cfg.gallery.dir), { modelId: analyzer.embedder.modelId, dimension: analyzer.embedder.dimension, config: cfg.gallery, logger, defaultMinSimilarity });
    if (!stores) cleanup.push(() => gallery.close());
    const { keys, generated, source, readOnlyOnly } = embeddedKeys ?? (await resolveStoredKeys(cfg.server, stores!.apiKeys, opts.resetKey));
    if (readOnlyOnly) {
      logger.warn(
        { keySource: source },
        `only read-only API keys are configured (server.auth.readOnlyKeys); the write key is the ${source === 'generated' ? 'one generated now' : `generated one stored in ${stores ? 'PostgreSQL' : store.dir}`}. Set server.auth.keys to use your own.`,
      );
    }
    readiness.gallery = true;
    metrics.galleryCounts(gallery.counts());
    const galleryWriter = stores?.galleryWriter ?? new EmbeddedGalleryWriter(gallery);
    const enroller = new Enroller(gallery, analyzer, cfg.gallery, { limits: cfg.limits, writer: galleryWriter });

    // Opened before the pipeline so that it closes after it: the appearances still open are written.
    const history = await startHistory(cfg, { dataDir, modelId: analyzer.embedder.modelId, dimension: analyzer.embedder.dimension, clusterSimilarity: analyzer.embedder.defaultClusterSimilarity, gallery, logger, registry: metrics.registry });
    if (history) cleanup.push(() => history.close());

    const pipeline = new Pipeline(analyzer, cfg.pipeline, { gallery, logger, observer: metrics.pipelineObserver });
    cleanup.push(() => pipeline.close());
    history?.attach(pipeline.bus);
    metrics.fpsSource = (id) => pipeline.streamStats(id)?.fps;
    metrics.queueSource = () => {
      const q = pipeline.queueDepths();
      return { 'in-flight': q.inFlight, waiting: q.waiting, detect: q.detect, embed: q.embed, attributes: q.attributes };
    };

    const streams = new StreamManager(stores?.streams ?? new SqliteStreamDefinitionStore(store), pipeline, cfg, logger, cluster?.placement);
    cleanup.push(() => streams.close());
    await streams.load();
    streams.on('change', ({ type, stream }) => {
      if (type === 'removed') return metrics.streamRemoved(stream.id);
      if (type === 'added') metrics.streamAdded(stream.id);
      metrics.setStreamState(stream.id, stream.state);
    });
    streams.on('restart', (id, n) => metrics.ffmpegRestarts(id, n));
    for (const s of streams.list()) {
      metrics.streamAdded(s.id);
      metrics.setStreamState(s.id, s.state);
    }

    // What viewers and MQTT see: this process's pipeline, or in cluster mode every worker's results over NATS.
    // (A worker-only node serves no viewers: its routes are refused, see app.ts; its hub shows its own streams.)
    const live = cluster?.liveSource() ?? new PipelineLiveSource(pipeline, streams);
    cleanup.push(() => live.close());

    if (cfg.mqtt.url && cluster?.servesClients !== false) {
      // Closed before the streams (cleanup runs in reverse): subscribers see them stopped, then "offline".
      const mqtt = startMqtt({ config: { ...cfg.mqtt, url: cfg.mqtt.url }, source: live, streams, gallery, logger, version, graceMs: cfg.pipeline.appearanceGraceMs, registry: metrics.registry, history });
      cleanup.push(() => mqtt.close());
    }

    const hub = new LiveHub({ source: live, gallery: () => gallery, metrics, config: cfg.server.websocket, logger, history });

    const pictureGate = new PictureGate(cfg.server.limits.concurrentPictures, cfg.server.limits.queuedPictures);
    const ctx: ServerContext = { config: cfg, logger, analyzer, pipeline, gallery, galleryWriter, enroller, streams, hub, metrics, pictureGate, keys, readiness, dataDir, version, history, cluster };
    if (stores && source !== 'config') {
      // Another node reset the generated key: this one accepts the new key too.
      const keyStore = stores.apiKeys;
      const stop = keyStore.onChange(() => {
        resolveStoredKeys(cfg.server, keyStore).then(
          (r) => (ctx.keys = r.keys),
          (err: unknown) => logger.warn({ err: errorMessage(err) }, 'reloading the stored API keys failed'),
        );
      });
      cleanup.push(stop);
    }
    const app = await buildApp(ctx);
    cleanup.push(() => app.close());
    // Runs before app.close(): clients get a clean 1001 close instead of a dropped connection.
    cleanup.push(() => hub.close());

    let url = '';
    if (opts.listen !== false) {
      try {
        url = await app.listen({ host: cfg.server.host, port: cfg.server.port });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why = code === 'EADDRINUSE' ? 'the port is in use (another server?)' : code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : code === 'EADDRNOTAVAIL' ? 'no such address on this machine' : errorMessage(err);
        throw new FacestreamError('CONFIG_INVALID', `cannot listen on ${cfg.server.host}:${cfg.server.port}: ${why} (server.host / server.port, --host / --port)`, { host: cfg.server.host, port: cfg.server.port }, { cause: err });
      }
      const address = app.server.address();
      if (address && typeof address === 'object') url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
    } else {
      await app.ready();
    }
    await streams.restore();
    // The definitions in memory follow PostgreSQL's (StreamManager.load), so the assignment goes on while PostgreSQL is away.
    if (cluster) await cluster.attach({ streams, pipeline, url: () => url || undefined, wanted: async () => streams.list().filter((s) => s.enabled).map((s) => s.id) });
    readiness.streams = true;
    logger.info({ url, streams: streams.list().length, identities: gallery.counts().identities }, 'facestream server ready');

    let closing: Promise<void> | undefined;
    return {
      app,
      ctx,
      url,
      generatedKey: generated,
      keySource: source,
      close: () => {
        closing ??= (async () => {
          readiness.shuttingDown = true;
          await runCleanup();
        })();
        return closing;
      },
    };
  } catch (err) {
    await runCleanup();
    throw err;
  }
}
