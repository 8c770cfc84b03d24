import { FacestreamError } from '../../errors.js';
import type { Role } from '../../server/auth.js';
import { ChangeListeners, type ApiKeyStore, type StreamDefinitionStore } from '../../server/definition-stores.js';
import { streamDefinition, streamOptionsOf, type StreamDefinition } from '../../server/store.js';
import { SCHEMA, type PostgresDatabase } from './database.js';

/**
 * Stream definitions and API key hashes in the cluster's PostgreSQL. Every write logs a change,
 * and the node's change feed calls `changed` for each one, from this node or any other: that is
 * when `onChange` listeners run (after the commit, once per change).
 */

interface PgStream {
  id: string;
  name: string;
  url: string;
  enabled: boolean;
  options: Record<string, unknown>;
  created_at: Date;
  updated_at: Date;
}

const STREAM_COLUMNS = 'id, name, url, enabled, options, created_at, updated_at';

function fromRow(row: PgStream): StreamDefinition {
  return streamDefinition({ ...row, created_at: row.created_at.toISOString(), updated_at: row.updated_at.toISOString() });
}

export class PostgresStreamDefinitionStore implements StreamDefinitionStore {
  private readonly changes = new ChangeListeners<[string]>();

  constructor(private readonly db: PostgresDatabase) {}

  async list(): Promise<StreamDefinition[]> {
    return (await this.db.query<PgStream>('listing streams', `SELECT ${STREAM_COLUMNS} FROM ${SCHEMA}.streams ORDER BY position, id`)).rows.map(fromRow);
  }

  async get(id: string): Promise<StreamDefinition | undefined> {
    const row = (await this.db.query<PgStream>('reading a stream', `SELECT ${STREAM_COLUMNS} FROM ${SCHEMA}.streams WHERE id = $1`, [id])).rows[0];
    return row ? fromRow(row) : undefined;
  }

  async insert(def: StreamDefinition): Promise<void> {
    await this.db.write(`creating stream "${def.id}"`, async (tx) => {
      const r = await tx.query(
        `INSERT INTO ${SCHEMA}.streams (id, name, url, enabled, options, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
        [def.id, def.name, def.url, def.enabled, JSON.stringify(streamOptionsOf(def)), def.createdAt, def.updatedAt],
      );
      if (r.rowCount === 0) throw new FacestreamError('STREAM_EXISTS', `stream "${def.id}" already exists`, { streamId: def.id });
      await tx.logChange('stream', def.id);
    });
  }

  async update(def: StreamDefinition): Promise<void> {
    await this.db.write(`updating stream "${def.id}"`, async (tx) => {
      const r = await tx.query(`UPDATE ${SCHEMA}.streams SET name = $2, url = $3, enabled = $4, options = $5, updated_at = $6 WHERE id = $1`, [
        def.id,
        def.name,
        def.url,
        def.enabled,
        JSON.stringify(streamOptionsOf(def)),
        def.updatedAt,
      ]);
      if (r.rowCount) await tx.logChange('stream', def.id);
    });
  }

  async delete(id: string): Promise<boolean> {
    const { result } = await this.db.write(`removing stream "${id}"`, async (tx) => {
      const r = await tx.query(`DELETE FROM ${SCHEMA}.streams WHERE id = $1`, [id]);
      if (r.rowCount) await tx.logChange('stream', id);
      return (r.rowCount ?? 0) > 0;
    });
    return result;
  }

  onChange(listener: (id: string) => void): () => void {
    return this.changes.add(listener);
  }

  /** Called by the change feed for each change of a stream definition. */
  changed(id: string): void {
    this.changes.fire(id);
  }
}

export class PostgresApiKeyStore implements ApiKeyStore {
  private readonly changes = new ChangeListeners<[]>();

  constructor(private readonly db: PostgresDatabase) {}

  async list(): Promise<{ hash: Buffer; role: Role }[]> {
    return (await this.db.query<{ hash: Buffer; role: Role }>('reading API keys', `SELECT hash, role FROM ${SCHEMA}.api_keys`)).rows;
  }

  async replace(hash: Buffer, role: Role): Promise<void> {
    await this.db.write('replacing the API key', async (tx) => {
      await tx.query(`DELETE FROM ${SCHEMA}.api_keys`);
      await tx.query(`INSERT INTO ${SCHEMA}.api_keys (hash, role, created_at) VALUES ($1, $2, now())`, [hash, role]);
      await tx.logChange('api_keys', '');
    });
  }

  onChange(listener: () => void): () => void {
    return this.changes.add(listener);
  }

  /** Called by the change feed when the stored keys were replaced. */
  changed(): void {
    this.changes.fire();
  }
}
