import { FacestreamError, isFacestreamError } from '../../errors.js';
import { TemplateIds } from '../../index/template-ids.js';
import { STORE_TIMEOUTS, type ClusterStoreOptions, type ClusterStores } from '../stores.js';
import { ChangeFeed } from './change-feed.js';
import { redactText } from '../../redact.js';
import { PostgresDatabase, type ChangeRow } from './database.js';
import { PostgresApiKeyStore, PostgresStreamDefinitionStore } from './definitions.js';
import { PostgresGalleryWriter } from './gallery-writer.js';
import { applyChanges, openReplica } from './replica.js';
import { prepareSchema } from './schema.js';

/** How long caughtUp() waits for the replica (ms). */
const CATCH_UP_TIMEOUT_MS = 30_000;

/**
 * A node's stores on PostgreSQL (see ../stores.ts): schema, replica, change feed, writers.
 * Stream and API key listeners hear of changes made after this open; the replica applies every
 * change since the one it last applied.
 */
export async function openPostgresStores(opts: ClusterStoreOptions): Promise<ClusterStores> {
  const db = new PostgresDatabase(opts.postgresUrl, opts.logger, { ...STORE_TIMEOUTS, ...opts.timeouts });
  let feed: ChangeFeed | undefined;
  let gallery: Awaited<ReturnType<typeof openReplica>>['gallery'] | undefined;
  try {
    const cluster = await prepareSchemaAtStart(db, { modelId: opts.modelId, dimension: opts.dimension });
    const replica = await openReplica(db, { cacheDir: opts.cacheDir, cluster, galleryConfig: opts.galleryConfig, defaultMinSimilarity: opts.defaultMinSimilarity, logger: opts.logger });
    gallery = replica.gallery;
    const opened = await db.lastChange();
    const streams = new PostgresStreamDefinitionStore(db);
    const apiKeys = new PostgresApiKeyStore(db);
    const replicaGallery = gallery;
    const apply = async (changes: ChangeRow[], through: number) => {
      await applyChanges(db, replicaGallery, changes, through);
      for (const c of changes) {
        if (c.seq <= opened) continue;
        if (c.kind === 'stream') streams.changed(c.ref);
        else if (c.kind === 'api_keys') apiKeys.changed();
      }
    };
    feed = new ChangeFeed({ db, logger: opts.logger, from: replica.seq, apply });
    await feed.start();
    opts.logger.info(
      { store: db.where, cacheDir: opts.cacheDir, applied: feed.applied, rebuilt: replica.rebuilt ?? false, ...gallery.counts() },
      'cluster stores open: gallery replica current with PostgreSQL',
    );
    const following = feed;
    let closing: Promise<void> | undefined;
    return {
      gallery,
      galleryWriter: new PostgresGalleryWriter(db, gallery, feed, TemplateIds.fromKey(cluster.templateIdKey)),
      streams,
      apiKeys,
      caughtUp: async () => following.waitFor(await db.lastChange(), CATCH_UP_TIMEOUT_MS, 'catching up'),
      connected: () => following.connected,
      close: () => {
        closing ??= (async () => {
          await following.close();
          await replicaGallery.close();
          await db.close();
        })();
        return closing;
      },
    };
  } catch (err) {
    await feed?.close();
    await gallery?.close();
    await db.close();
    throw err;
  }
}

/**
 * prepareSchema, retried every 500 ms while PostgreSQL cannot be reached, for up to
 * `db.timeouts.startMs`; then STORE_UNAVAILABLE saying that the node could not start (not the
 * running node's "reads keep working" advice: a starting node has no replica to read from yet).
 */
async function prepareSchemaAtStart(db: PostgresDatabase, model: { modelId: string; dimension: number }): ReturnType<typeof prepareSchema> {
  const deadline = Date.now() + db.timeouts.startMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await prepareSchema(db, model);
    } catch (err) {
      if (!isFacestreamError(err) || err.code !== 'STORE_UNAVAILABLE') throw err;
      if (Date.now() >= deadline) {
        const reason = (err.cause as Error | undefined)?.message ?? err.message;
        throw new FacestreamError(
          'STORE_UNAVAILABLE',
          `cannot reach the cluster's PostgreSQL (${db.where}) to start this node: ${redactText(reason)} (cluster.postgres; tried ${attempt} times in ${Math.round(db.timeouts.startMs / 1000)} s)`,
          { store: db.where, attempts: attempt },
          { cause: err },
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
