import crypto from 'node:crypto';
import { FacestreamError } from '../../errors.js';
import { TemplateIds } from '../../index/template-ids.js';
import { isUnreachable, SCHEMA, type PostgresDatabase } from './database.js';

/**
 * facestream's tables in PostgreSQL (schema `facestream`), created or migrated when a node
 * starts, and the facts every node must agree on (facestream.meta): which database this is, the
 * embedding model and dimension of the gallery, and the key that makes template ids unguessable.
 *
 * Vectors are bytea (little-endian float32, as in the SQLite gallery): pgvector is not assumed,
 * since search runs on each node's HNSW replica, not in PostgreSQL.
 */

export const PG_SCHEMA_VERSION = 1;

/** Migrations by the version they lead to; each runs in one transaction. */
const MIGRATIONS: Record<number, string> = {
  1: `
CREATE TABLE ${SCHEMA}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE ${SCHEMA}.identities (
  pk bigserial PRIMARY KEY,
  id text NOT NULL UNIQUE,
  name text NOT NULL,
  metadata json,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE INDEX identities_name ON ${SCHEMA}.identities (name);
CREATE TABLE ${SCHEMA}.templates (
  id bigserial PRIMARY KEY,
  identity bigint NOT NULL REFERENCES ${SCHEMA}.identities (pk) ON DELETE CASCADE,
  source text NOT NULL,
  content_hash text,
  detection_score double precision,
  face_size double precision,
  model_id text NOT NULL,
  embedding bytea NOT NULL,
  crop bytea,
  crop_format text,
  crop_geometry json,
  created_at timestamptz NOT NULL
);
CREATE INDEX templates_identity ON ${SCHEMA}.templates (identity);
CREATE UNIQUE INDEX templates_identity_hash ON ${SCHEMA}.templates (identity, content_hash) WHERE content_hash IS NOT NULL;
CREATE TABLE ${SCHEMA}.changes (
  seq bigserial PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('identity', 'template', 'stream', 'api_keys')),
  ref text NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE ${SCHEMA}.streams (
  id text PRIMARY KEY,
  name text NOT NULL,
  url text NOT NULL,
  enabled boolean NOT NULL,
  options json NOT NULL,
  position bigserial,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE TABLE ${SCHEMA}.api_keys (
  hash bytea PRIMARY KEY,
  role text NOT NULL,
  created_at timestamptz NOT NULL
);
`,
};

/** Lock key serialising schema migrations of nodes starting together ("fsmg"). */
const MIGRATION_LOCK = 0x66736d67;

/** What every node of a cluster shares. */
export interface ClusterMeta {
  /** Random id of this database, made at its first start: a replica built from another database is rebuilt. */
  databaseId: string;
  modelId: string;
  dimension: number;
  /** 32 hex digits: the key of the template ids (see src/index/template-ids.ts); never leaves PostgreSQL and the replicas. */
  templateIdKey: string;
}

/**
 * Creates or migrates the schema, then reads (on first start: writes) the cluster's facts.
 * Throws GALLERY_MODEL_MISMATCH when the cluster's gallery holds another model's embeddings, and
 * GALLERY_CORRUPT when the schema is newer than this facestream.
 */
export async function prepareSchema(db: PostgresDatabase, model: { modelId: string; dimension: number }): Promise<ClusterMeta> {
  const client = await db.connect('opening the cluster store');
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
      const exists = await client.query(`SELECT to_regclass('${SCHEMA}.meta') IS NOT NULL AS ok`);
      let version = 0;
      if (exists.rows[0].ok) {
        const r = await client.query<{ value: string }>(`SELECT value FROM ${SCHEMA}.meta WHERE key = 'schema_version'`);
        version = Number(r.rows[0]?.value ?? 0);
      }
      if (version > PG_SCHEMA_VERSION) {
        throw new FacestreamError('GALLERY_CORRUPT', `the cluster's PostgreSQL (${db.where}) has facestream schema version ${version}; this facestream reads up to ${PG_SCHEMA_VERSION}: upgrade this node`, { store: db.where, version });
      }
      for (let v = version + 1; v <= PG_SCHEMA_VERSION; v++) {
        await client.query('BEGIN');
        await client.query(MIGRATIONS[v]);
        await client.query(`INSERT INTO ${SCHEMA}.meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [String(v)]);
        await client.query('COMMIT');
      }
      const defaults: Record<string, string> = {
        database_id: crypto.randomUUID(),
        model_id: model.modelId,
        dimension: String(model.dimension),
        template_id_key: TemplateIds.newKey(),
        created_at: new Date().toISOString(),
      };
      for (const [key, value] of Object.entries(defaults)) await client.query(`INSERT INTO ${SCHEMA}.meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, [key, value]);
      const rows = await client.query<{ key: string; value: string }>(`SELECT key, value FROM ${SCHEMA}.meta`);
      const meta = new Map(rows.rows.map((r) => [r.key, r.value]));
      const cluster: ClusterMeta = { databaseId: meta.get('database_id')!, modelId: meta.get('model_id')!, dimension: Number(meta.get('dimension')), templateIdKey: meta.get('template_id_key')! };
      if (cluster.modelId !== model.modelId || cluster.dimension !== model.dimension) {
        throw new FacestreamError(
          'GALLERY_MODEL_MISMATCH',
          `the cluster's gallery in PostgreSQL (${db.where}) holds embeddings of "${cluster.modelId}" (${cluster.dimension}-d) but this node uses "${model.modelId}" (${model.dimension}-d); ` +
            `every node of a cluster must use the same embedding model: set embedding.model to "${cluster.modelId}"`,
          { store: db.where, galleryModel: cluster.modelId, galleryDimension: cluster.dimension, model: model.modelId, dimension: model.dimension },
        );
      }
      return cluster;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    }
  } catch (err) {
    throw isUnreachable(err) ? db.unavailable('opening the cluster store', err) : err;
  } finally {
    client.release();
  }
}
