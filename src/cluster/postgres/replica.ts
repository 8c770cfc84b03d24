import fs from 'node:fs';
import path from 'node:path';
import type { GalleryConfig } from '../../config/sections/gallery.js';
import { errorMessage } from '../../errors.js';
import { Gallery, type ReplicatedChanges } from '../../index/gallery.js';
import { DB_FILE, GalleryStore, SCHEMA_VERSION, type CropGeometry, type IdentityRow, type TemplateRow } from '../../index/store.js';
import { TEMPLATE_ID_KEY_META } from '../../index/template-ids.js';
import type { Logger } from '../../log.js';
import { ensurePrivateDir } from '../../private-files.js';
import { SCHEMA, type ChangeRow, type PostgresDatabase } from './database.js';
import type { ClusterMeta } from './schema.js';

/**
 * This node's replica of the cluster's gallery: an ordinary Gallery (SQLite + HNSW) under
 * cacheDir/gallery, holding PostgreSQL's rows with PostgreSQL's ids, so template and identity
 * ids are the same on every node. Its meta records which database it copies (`pg_database_id`)
 * and the last change applied (`pg_change_seq`); a replica that is missing, half-built, of
 * another database or of another model is thrown away and built again from PostgreSQL.
 */

export const REPLICA_DIR = 'gallery';
const META_DATABASE = 'pg_database_id';
const META_SEQ = 'pg_change_seq';
/** Templates per page of a rebuild (embeddings and crops: a few MB). */
const REBUILD_PAGE = 2000;

export interface ReplicaOptions {
  cacheDir: string;
  cluster: ClusterMeta;
  galleryConfig: GalleryConfig;
  defaultMinSimilarity?: number;
  logger: Logger;
}

interface PgIdentity {
  pk: string;
  id: string;
  name: string;
  metadata: string | null;
  created_at: Date;
  updated_at: Date;
}

interface PgTemplate {
  id: string;
  identity: string;
  source: string;
  content_hash: string | null;
  detection_score: number | null;
  face_size: number | null;
  model_id: string;
  embedding: Buffer;
  crop: Buffer | null;
  crop_format: string | null;
  crop_geometry: string | null;
  created_at: Date;
}

const IDENTITY_COLUMNS = 'pk, id, name, metadata::text AS metadata, created_at, updated_at';
const TEMPLATE_COLUMNS = 'id, identity, source, content_hash, detection_score, face_size, model_id, embedding, crop, crop_format, crop_geometry::text AS crop_geometry, created_at';

function identityRow(r: PgIdentity): IdentityRow {
  return { pk: Number(r.pk), id: r.id, name: r.name, metadata: r.metadata, created_at: r.created_at.toISOString(), updated_at: r.updated_at.toISOString() };
}

function templateEntry(r: PgTemplate): ReplicatedChanges['templates'][number] {
  const row: TemplateRow = {
    id: Number(r.id),
    identity: Number(r.identity),
    source: r.source,
    content_hash: r.content_hash,
    detection_score: r.detection_score,
    face_size: r.face_size,
    model_id: r.model_id,
    created_at: r.created_at.toISOString(),
  };
  const crop = r.crop && r.crop_geometry ? { data: r.crop, format: r.crop_format === 'png' ? ('png' as const) : ('jpeg' as const), geometry: JSON.parse(r.crop_geometry) as CropGeometry } : null;
  return { row, embedding: r.embedding, crop };
}

/** Why an existing replica cannot be kept, or undefined when it can. */
function staleBecause(dir: string, cluster: ClusterMeta, log: { first: number; last: number }): string | undefined {
  if (!fs.existsSync(path.join(dir, DB_FILE))) return 'no replica yet';
  let store: GalleryStore | undefined;
  try {
    store = new GalleryStore(dir, { readOnly: true });
    const database = store.getMeta(META_DATABASE);
    const model = store.getMeta('model_id');
    const dimension = Number(store.getMeta('dimension'));
    const seq = store.getMeta(META_SEQ);
    if (database !== cluster.databaseId) return `it copies another database (${database ?? 'none recorded'}, this one is ${cluster.databaseId})`;
    if (model !== cluster.modelId || dimension !== cluster.dimension) return `it holds embeddings of "${model}" (${dimension}-d), the cluster's gallery "${cluster.modelId}" (${cluster.dimension}-d)`;
    if (seq === undefined) return 'it was not completely built';
    if (Number(seq) > log.last) return `it has applied change ${seq}, past the database's last (${log.last}): the database was restored from an older backup, or its change log emptied`;
    if (log.first > Number(seq) + 1) return `it has applied change ${seq}, but the change log now starts at ${log.first} (pruned)`;
    if (store.getMeta(TEMPLATE_ID_KEY_META) !== cluster.templateIdKey) return 'its template id key differs from the cluster\'s';
    return undefined;
  } catch (err) {
    return `it cannot be read (${errorMessage(err)})`;
  } finally {
    store?.close();
  }
}

/** Opens the replica under cacheDir, building it from PostgreSQL when it cannot be kept; returns it and the last change it holds. */
export async function openReplica(db: PostgresDatabase, opts: ReplicaOptions): Promise<{ gallery: Gallery; seq: number; rebuilt: string | undefined }> {
  const dir = path.join(opts.cacheDir, REPLICA_DIR);
  const stale = staleBecause(dir, opts.cluster, { first: await db.firstChange(), last: await db.lastChange() });
  if (stale) {
    if (stale !== 'no replica yet') opts.logger.warn({ dir, store: db.where }, `rebuilding this node's gallery replica from PostgreSQL: ${stale}`);
    fs.rmSync(dir, { recursive: true, force: true });
    ensurePrivateDir(dir);
    const store = new GalleryStore(dir, { durability: opts.galleryConfig.durability });
    try {
      store.transaction(() => {
        store.setMeta('schema_version', SCHEMA_VERSION);
        store.setMeta('model_id', opts.cluster.modelId);
        store.setMeta('dimension', opts.cluster.dimension);
        store.setMeta('created_at', new Date().toISOString());
        store.setMeta(TEMPLATE_ID_KEY_META, opts.cluster.templateIdKey);
        store.setMeta(META_DATABASE, opts.cluster.databaseId);
      });
    } finally {
      store.close();
    }
  }
  const gallery = await Gallery.open(dir, {
    modelId: opts.cluster.modelId,
    dimension: opts.cluster.dimension,
    config: opts.galleryConfig,
    logger: opts.logger,
    defaultMinSimilarity: opts.defaultMinSimilarity,
    replica: true,
  });
  try {
    if (stale) await copyAll(db, gallery);
    return { gallery, seq: Number(gallery.meta(META_SEQ)), rebuilt: stale };
  } catch (err) {
    await gallery.close();
    throw err;
  }
}

/** Copies every identity and template in one snapshot, then records the change it is current to. */
async function copyAll(db: PostgresDatabase, gallery: Gallery): Promise<void> {
  const client = await db.connect('building the gallery replica');
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const seq = Number((await client.query<{ seq: string }>(`SELECT coalesce(max(seq), 0) AS seq FROM ${SCHEMA}.changes`)).rows[0].seq);
    const identities = (await client.query<PgIdentity>(`SELECT ${IDENTITY_COLUMNS} FROM ${SCHEMA}.identities ORDER BY pk`)).rows.map(identityRow);
    gallery.applyReplicated({ identities, removedIdentities: [], templates: [], removedTemplates: [], meta: {} });
    for (let after = 0; ; ) {
      const page = (await client.query<PgTemplate>(`SELECT ${TEMPLATE_COLUMNS} FROM ${SCHEMA}.templates WHERE id > $1 ORDER BY id LIMIT $2`, [after, REBUILD_PAGE])).rows;
      if (page.length === 0) break;
      gallery.applyReplicated({ identities: [], removedIdentities: [], templates: page.map(templateEntry), removedTemplates: [], meta: {} });
      after = Number(page[page.length - 1].id);
    }
    await client.query('COMMIT');
    gallery.applyReplicated({ identities: [], removedIdentities: [], templates: [], removedTemplates: [], meta: { [META_SEQ]: String(seq) } });
    await gallery.save();
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * Applies a page of the change log to the replica: reads the current rows of the identities and
 * templates it names (one present is inserted or updated, one absent is removed) and records
 * `through` as applied, all in one SQLite transaction. Reading current rows rather than diffs
 * makes it idempotent, and a later change of the same row is applied again harmlessly.
 */
export async function applyChanges(db: PostgresDatabase, gallery: Gallery, changes: readonly ChangeRow[], through: number): Promise<void> {
  const identityPks = [...new Set(changes.filter((c) => c.kind === 'identity').map((c) => Number(c.ref)))];
  const templateIds = [...new Set(changes.filter((c) => c.kind === 'template').map((c) => Number(c.ref)))];
  const identities = identityPks.length
    ? (await db.query<PgIdentity>('reading changed identities', `SELECT ${IDENTITY_COLUMNS} FROM ${SCHEMA}.identities WHERE pk = ANY($1::bigint[])`, [identityPks])).rows.map(identityRow)
    : [];
  const templates = templateIds.length
    ? (await db.query<PgTemplate>('reading changed templates', `SELECT ${TEMPLATE_COLUMNS} FROM ${SCHEMA}.templates WHERE id = ANY($1::bigint[])`, [templateIds])).rows.map(templateEntry)
    : [];
  const presentIdentities = new Set(identities.map((r) => r.pk));
  const presentTemplates = new Set(templates.map((t) => t.row.id));
  gallery.applyReplicated({
    identities,
    removedIdentities: identityPks.filter((pk) => !presentIdentities.has(pk)),
    templates,
    removedTemplates: templateIds.filter((id) => !presentTemplates.has(id)),
    meta: { [META_SEQ]: String(through) },
  });
}
