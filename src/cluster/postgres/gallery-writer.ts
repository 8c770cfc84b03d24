import crypto from 'node:crypto';
import { FacestreamError } from '../../errors.js';
import type { Gallery } from '../../index/gallery.js';
import type { AddedToIdentity, GalleryWriter } from '../../index/gallery-writer.js';
import { checkMetadata } from '../../index/metadata.js';
import { ambiguousNameError, checkIdentityId, claimPicture, normalizedLookupName, type IdentityRecord, type IdentityRef, type Template } from '../../index/records.js';
import type { NewTemplate } from '../../index/store.js';
import type { TemplateIds } from '../../index/template-ids.js';
import { checkEmbedding, vectorToBlob } from '../../index/vectors.js';
import { normalizeIdentityName } from '../../identity-name.js';
import type { ChangeFeed } from './change-feed.js';
import { SCHEMA, type PostgresDatabase, type WriteTransaction } from './database.js';

/** How long a write waits for this node's replica to apply it before answering STORE_UNAVAILABLE. */
const APPLY_TIMEOUT_MS = 10_000;

interface IdentityKey {
  pk: string;
  id: string;
  name: string;
}

/**
 * Gallery writes of a cluster node: one PostgreSQL transaction each (ids assigned by
 * PostgreSQL, so every replica holds the same ones), then a wait until this node's replica has
 * applied the change, so the caller reads its own write. The checks and errors are the embedded
 * gallery's (identity ids, names, metadata, unit embeddings of the cluster's dimension, one
 * template per picture and identity).
 */
export class PostgresGalleryWriter implements GalleryWriter {
  constructor(
    private readonly db: PostgresDatabase,
    private readonly replica: Gallery,
    private readonly feed: ChangeFeed,
    private readonly templateIds: TemplateIds,
  ) {}

  async current(): Promise<void> {
    await this.applied(await this.db.lastChange(), 'catching up with the cluster\'s gallery');
  }

  private async applied(seq: number, what: string): Promise<void> {
    if (seq > 0) await this.feed.waitFor(seq, APPLY_TIMEOUT_MS, what);
  }

  /** An identity by id, or else by name when exactly one identity has it (the embedded rule). */
  private async findIdentity(tx: WriteTransaction, ref: string): Promise<IdentityKey | undefined> {
    const byId = await tx.query<IdentityKey>(`SELECT pk, id, name FROM ${SCHEMA}.identities WHERE id = $1`, [ref]);
    if (byId.rows[0]) return byId.rows[0];
    const byName = async (name: string) => (await tx.query<IdentityKey>(`SELECT pk, id, name FROM ${SCHEMA}.identities WHERE name = $1 ORDER BY pk`, [name])).rows;
    let rows = await byName(ref);
    const normalized = rows.length === 0 ? normalizedLookupName(ref) : undefined;
    if (normalized) rows = await byName(normalized);
    if (rows.length > 1) throw ambiguousNameError(ref, rows.map((r) => r.id));
    return rows[0];
  }

  private async requireIdentity(tx: WriteTransaction, ref: string): Promise<IdentityKey> {
    const row = await this.findIdentity(tx, ref);
    if (!row) throw new FacestreamError('IDENTITY_NOT_FOUND', `no identity "${ref}" in the cluster's gallery`, { identity: ref });
    return row;
  }

  private async insertIdentity(tx: WriteTransaction, id: string, name: string, metadata: unknown, at: Date): Promise<IdentityKey> {
    checkIdentityId(id);
    checkMetadata(metadata);
    const r = await tx.query<IdentityKey>(
      `INSERT INTO ${SCHEMA}.identities (id, name, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id) DO NOTHING RETURNING pk, id, name`,
      [id, name, metadata === undefined ? null : JSON.stringify(metadata), at],
    );
    if (!r.rows[0]) throw new FacestreamError('IDENTITY_EXISTS', `identity "${id}" already exists`, { id });
    await tx.logChange('identity', r.rows[0].pk);
    return r.rows[0];
  }

  /** The replica's record of an identity just written (it has applied the change). */
  private record(id: string): IdentityRecord {
    const record = this.replica.getIdentityById(id);
    if (!record) throw new FacestreamError('IDENTITY_NOT_FOUND', `identity "${id}" was removed meanwhile`, { identity: id });
    return record;
  }

  async createIdentity(input: { id?: string; name: string; metadata?: unknown }): Promise<IdentityRecord> {
    const name = normalizeIdentityName(input.name);
    const id = input.id ?? crypto.randomUUID();
    const { seq } = await this.db.write('creating an identity', (tx) => this.insertIdentity(tx, id, name, input.metadata, new Date()));
    await this.applied(seq, `identity "${id}" created`);
    return this.record(id);
  }

  async updateIdentity(ref: string, fields: { name?: string; metadata?: unknown }): Promise<IdentityRecord> {
    const name = fields.name === undefined ? undefined : normalizeIdentityName(fields.name);
    checkMetadata(fields.metadata);
    const { result: row, seq } = await this.db.write('updating an identity', async (tx) => {
      const row = await this.requireIdentity(tx, ref);
      await tx.query(
        `UPDATE ${SCHEMA}.identities SET name = coalesce($2, name), metadata = CASE WHEN $3::boolean THEN $4::json ELSE metadata END, updated_at = $5 WHERE pk = $1`,
        [row.pk, name ?? null, fields.metadata !== undefined, fields.metadata === undefined ? null : JSON.stringify(fields.metadata), new Date()],
      );
      await tx.logChange('identity', row.pk);
      return row;
    });
    await this.applied(seq, `identity "${row.id}" updated`);
    return this.record(row.id);
  }

  async removeIdentity(ref: string): Promise<IdentityRecord> {
    const { result, seq } = await this.db.write('removing an identity', async (tx) => {
      const row = await this.requireIdentity(tx, ref);
      const gone = await tx.query<{ id: string }>(`DELETE FROM ${SCHEMA}.templates WHERE identity = $1 RETURNING id`, [row.pk]);
      const identity = await tx.query<{ metadata: string | null; created_at: Date; updated_at: Date }>(
        `DELETE FROM ${SCHEMA}.identities WHERE pk = $1 RETURNING metadata::text AS metadata, created_at, updated_at`,
        [row.pk],
      );
      for (const t of gone.rows) await tx.logChange('template', t.id);
      await tx.logChange('identity', row.pk);
      const r = identity.rows[0];
      return {
        id: row.id,
        name: row.name,
        metadata: r.metadata === null ? null : (JSON.parse(r.metadata) as unknown),
        createdAt: r.created_at.toISOString(),
        updatedAt: r.updated_at.toISOString(),
        templates: gone.rows.length,
      } satisfies IdentityRecord;
    });
    await this.applied(seq, `identity "${result.id}" removed`);
    return result;
  }

  addTemplates(ref: IdentityRef, templates: readonly NewTemplate[]): Promise<AddedToIdentity> {
    return this.addTemplatesBatch([{ identity: ref, templates }]).then((r) => r[0]);
  }

  async addTemplatesBatch(entries: readonly { identity: IdentityRef; templates: readonly NewTemplate[] }[]): Promise<AddedToIdentity[]> {
    for (const e of entries) {
      if (!e.identity.id && !e.identity.name) throw new FacestreamError('BAD_REQUEST', 'an identity id or name is needed', {});
      for (const t of e.templates) this.checkVector(t.embedding);
    }
    const at = new Date();
    const { result: written, seq } = await this.db.write('adding templates', (tx) => this.insertTemplates(tx, entries, at));
    await this.applied(seq, 'templates added');
    return written.map(({ identity, ids, created }) => ({
      identity: this.record(identity.id),
      templates: ids.map((id) => {
        const template = this.replica.getTemplate(this.templateIds.encode(id));
        if (!template) throw new FacestreamError('TEMPLATE_NOT_FOUND', `template ${this.templateIds.encode(id)} was removed meanwhile`, {});
        return template;
      }),
      created,
    }));
  }

  private async insertTemplates(tx: WriteTransaction, entries: readonly { identity: IdentityRef; templates: readonly NewTemplate[] }[], at: Date) {
    const written: { identity: IdentityKey; ids: number[]; created: boolean }[] = [];
    for (const { identity: ref, templates } of entries) {
      let row = ref.id
        ? (await tx.query<IdentityKey>(`SELECT pk, id, name FROM ${SCHEMA}.identities WHERE id = $1`, [ref.id])).rows[0]
        : await this.findIdentity(tx, ref.name!);
      const created = !row;
      row ??= await this.insertIdentity(tx, ref.id ?? crypto.randomUUID(), normalizeIdentityName(ref.name ?? ref.id!), ref.metadata, at);
      const hashes = new Set(
        created ? [] : (await tx.query<{ content_hash: string }>(`SELECT content_hash FROM ${SCHEMA}.templates WHERE identity = $1 AND content_hash IS NOT NULL`, [row.pk])).rows.map((r) => r.content_hash),
      );
      const ids: number[] = [];
      for (const t of templates) {
        claimPicture(hashes, t, row);
        const r = await tx.query<{ id: string }>(
          `INSERT INTO ${SCHEMA}.templates (identity, source, content_hash, detection_score, face_size, model_id, embedding, crop, crop_format, crop_geometry, created_at) ` +
            'VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id',
          [row.pk, t.source, t.contentHash ?? null, t.detectionScore ?? null, t.faceSize ?? null, this.replica.modelId, vectorToBlob(t.embedding), t.crop?.data ?? null, t.crop?.format ?? null, t.crop ? JSON.stringify(t.crop.geometry) : null, at],
        );
        ids.push(Number(r.rows[0].id));
        await tx.logChange('template', r.rows[0].id);
      }
      if (!created && ids.length) {
        await tx.query(`UPDATE ${SCHEMA}.identities SET updated_at = $2 WHERE pk = $1`, [row.pk, at]);
        await tx.logChange('identity', row.pk);
      }
      written.push({ identity: row, ids, created });
    }
    return written;
  }

  async removeTemplate(templateId: string): Promise<Template> {
    const label = this.templateIds.decode(templateId);
    const notFound = () => new FacestreamError('TEMPLATE_NOT_FOUND', `no template "${templateId}" in the cluster's gallery`, { templateId });
    if (!label) throw notFound();
    const { result, seq } = await this.db.write('removing a template', async (tx) => {
      const r = await tx.query<{ identity_id: string; source: string; content_hash: string | null; detection_score: number | null; face_size: number | null; model_id: string; created_at: Date }>(
        `DELETE FROM ${SCHEMA}.templates t USING ${SCHEMA}.identities i WHERE t.id = $1 AND i.pk = t.identity ` +
          'RETURNING i.id AS identity_id, t.source, t.content_hash, t.detection_score, t.face_size, t.model_id, t.created_at',
        [label],
      );
      const row = r.rows[0];
      if (!row) throw notFound();
      await tx.logChange('template', label);
      return {
        id: templateId,
        identityId: row.identity_id,
        source: row.source,
        contentHash: row.content_hash,
        detectionScore: row.detection_score,
        faceSize: row.face_size,
        modelId: row.model_id,
        createdAt: row.created_at.toISOString(),
      } satisfies Template;
    });
    await this.applied(seq, `template ${templateId} removed`);
    return result;
  }

  private checkVector(vector: Float32Array): void {
    try {
      checkEmbedding(vector, this.replica.dimension, 'template');
    } catch (err) {
      throw new FacestreamError('BAD_REQUEST', `${(err as Error).message} (the cluster's gallery holds ${this.replica.dimension}-d unit embeddings of "${this.replica.modelId}")`, {
        dimension: vector.length,
        expected: this.replica.dimension,
      });
    }
  }
}
