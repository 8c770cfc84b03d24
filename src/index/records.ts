import crypto from 'node:crypto';
import { FacestreamError } from '../errors.js';
import { normalizeIdentityName } from '../identity-name.js';
import type { TemplateIds } from './template-ids.js';
import { type GalleryStore, type IdentityRow, type NewTemplate, type StoredCrop, type TemplateRow } from './store.js';

/**
 * The gallery's records: identities and their templates as SQLite holds them, plus the small
 * in-memory view searches need (which identity owns each template, and each identity's name).
 * Every write is one SQLite transaction; the in-memory view changes only after the commit.
 * Knows nothing of the search index: callers feed the index with what these methods return.
 */

export interface IdentityRecord {
  id: string;
  name: string;
  metadata: unknown;
  createdAt: string;
  updatedAt: string;
  templates: number;
}

export interface Template {
  id: string;
  identityId: string;
  source: string;
  contentHash: string | null;
  detectionScore: number | null;
  faceSize: number | null;
  modelId: string;
  createdAt: string;
}

/** Who a template is added to: an existing identity (by id, or by a unique name) or a new one. */
export interface IdentityRef {
  id?: string;
  name?: string;
  metadata?: unknown;
}

/** What one entry of addTemplatesBatch wrote: the identity, the new templates and their numeric ids (index labels). */
export interface AddedTemplates {
  identity: IdentityRecord;
  templates: Template[];
  created: boolean;
  /** Identity primary key and the new templates' labels, for the index. */
  pk: number;
  labels: number[];
}

const IDENTITY_ID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

/** Refuses an identity id that is not 1-128 characters of letters, digits and . _ : @ - (FacestreamError BAD_REQUEST). */
export function checkIdentityId(id: string): void {
  if (!IDENTITY_ID.test(id)) {
    throw new FacestreamError('BAD_REQUEST', `identity id "${id}" must be 1-128 characters of letters, digits and . _ : @ - (starting with a letter or digit)`, { id });
  }
}

/**
 * Records a template's picture among the identity's (content hashes), refusing one it already
 * holds: FacestreamError DUPLICATE_TEMPLATE. Templates without a hash are not checked.
 */
export function claimPicture(hashes: Set<string>, t: Pick<NewTemplate, 'source' | 'contentHash'>, identity: { id: string; name: string }): void {
  if (!t.contentHash) return;
  if (hashes.has(t.contentHash)) {
    throw new FacestreamError('DUPLICATE_TEMPLATE', `${t.source}: identity "${identity.name}" already has this picture`, { source: t.source, identityId: identity.id, contentHash: t.contentHash });
  }
  hashes.add(t.contentHash);
}

/** Another spelling of a name to look up when the name as given finds nobody (NFC, spaces collapsed), or undefined when it is the same. */
export function normalizedLookupName(ref: string): string | undefined {
  const normalized = ref.normalize('NFC').trim().replace(/\p{Zs}+/gu, ' ');
  return normalized === ref ? undefined : normalized;
}

/** The error for a name several identities share. */
export function ambiguousNameError(ref: string, ids: string[]): FacestreamError {
  return new FacestreamError('BAD_REQUEST', `${ids.length} identities are named "${ref}" (${ids.join(', ')}); use an id`, { name: ref, ids });
}

/** Changes of a system of record as a replica applies them (cluster mode): rows with the record's own pks and ids. */
export interface ReplicatedChanges {
  /** Identities present in the record: inserted, or updated in place. */
  identities: IdentityRow[];
  /** Identity pks gone from the record (their templates go with them). */
  removedIdentities: number[];
  /** Templates present in the record; one the replica holds already is left as it is. */
  templates: { row: TemplateRow; embedding: Buffer; crop: StoredCrop | null }[];
  /** Template ids gone from the record. */
  removedTemplates: number[];
  /** Meta entries written in the same transaction (the change sequence applied). */
  meta: Record<string, string>;
}

/** What applying replicated changes did, for the index and the gallery's events. */
export interface AppliedChanges {
  created: IdentityRecord[];
  updated: { identity: IdentityRecord; previousName: string }[];
  removed: IdentityRecord[];
  added: { label: number; template: Template; identity: { id: string; name: string } }[];
  removedTemplates: { label: number; templateId: string; identityId: string }[];
}

export function now(): string {
  return new Date().toISOString();
}

export class GalleryRecords {
  /** Template id -> identity pk (0: none). Template ids are dense, so a typed array beats a Map. */
  private owner = new Int32Array(1024);
  private readonly names = new Map<number, { id: string; name: string }>();
  private live = 0;

  constructor(
    readonly dir: string,
    readonly modelId: string,
    readonly dimension: number,
    private readonly store: GalleryStore,
    private readonly templateIds: TemplateIds,
  ) {}

  /** A template's public id (unguessable; see template-ids.ts) from its label. */
  publicTemplateId(label: number): string {
    return this.templateIds.encode(label);
  }

  /** Reads the in-memory view (owners and names) from the database. */
  load(): void {
    this.names.clear();
    this.owner.fill(0);
    this.live = 0;
    for (const { pk, id, name } of this.store.allIdentityNames()) this.names.set(pk, { id, name });
    for (const [id, pk] of this.store.templateOwners()) {
      this.setOwner(id, pk);
      this.live++;
    }
  }

  /** Templates held (in memory; equal to the database's count unless check() says otherwise). */
  get templateCount(): number {
    return this.live;
  }

  get identityCount(): number {
    return this.names.size;
  }

  /** The identity pk owning a template label, 0 when none (removed, or never existed). */
  ownerOf(templateId: number): number {
    return templateId < this.owner.length ? this.owner[templateId] : 0;
  }

  /** Id and name of an identity by pk, from memory. */
  identityOf(pk: number): { id: string; name: string } | undefined {
    return this.names.get(pk);
  }

  private setOwner(templateId: number, pk: number): void {
    if (templateId >= this.owner.length) {
      let n = this.owner.length;
      while (n <= templateId) n *= 2;
      const grown = new Int32Array(n);
      grown.set(this.owner);
      this.owner = grown;
    }
    this.owner[templateId] = pk;
  }

  private forget(templateId: number): boolean {
    if (this.ownerOf(templateId) === 0) return false;
    this.owner[templateId] = 0;
    this.live--;
    return true;
  }

  // ---------------------------------------------------------------- rows to records

  private identityRecord(row: IdentityRow, templates?: number): IdentityRecord {
    return {
      id: row.id,
      name: row.name,
      metadata: row.metadata === null ? null : (JSON.parse(row.metadata) as unknown),
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      templates: templates ?? this.store.templateCountOf(row.pk),
    };
  }

  private templateRecord(row: TemplateRow, identityId?: string): Template {
    return {
      id: this.templateIds.encode(row.id),
      identityId: identityId ?? this.names.get(row.identity)?.id ?? this.store.identityByPk(row.identity)?.id ?? '',
      source: row.source,
      contentHash: row.content_hash,
      detectionScore: row.detection_score,
      faceSize: row.face_size,
      modelId: row.model_id,
      createdAt: row.created_at,
    };
  }

  /** An identity by id, or else by name when exactly one identity has it. */
  private findIdentityRow(ref: string): IdentityRow | undefined {
    const byId = this.store.identityById(ref);
    if (byId) return byId;
    let byName = this.store.identitiesByName(ref);
    const normalized = byName.length === 0 ? normalizedLookupName(ref) : undefined;
    if (normalized) byName = this.store.identitiesByName(normalized);
    if (byName.length > 1) throw ambiguousNameError(ref, byName.map((r) => r.id));
    return byName[0];
  }

  requireIdentityRow(ref: string): IdentityRow {
    const row = this.findIdentityRow(ref);
    if (!row) throw new FacestreamError('IDENTITY_NOT_FOUND', `no identity "${ref}" in gallery ${this.dir}`, { identity: ref });
    return row;
  }

  private validateNewId(id: string): void {
    checkIdentityId(id);
    if (this.store.identityById(id)) throw new FacestreamError('IDENTITY_EXISTS', `identity "${id}" already exists`, { id });
  }

  private validateName(name: string): string {
    return normalizeIdentityName(name);
  }

  // ---------------------------------------------------------------- identities

  createIdentity(input: { id?: string; name: string; metadata?: unknown }): IdentityRecord {
    const name = this.validateName(input.name);
    const id = input.id ?? crypto.randomUUID();
    this.validateNewId(id);
    const row = this.store.transaction(() => this.store.insertIdentity(id, name, input.metadata, now()));
    this.names.set(row.pk, { id: row.id, name: row.name });
    return this.identityRecord(row, 0);
  }

  getIdentity(ref: string): IdentityRecord | undefined {
    const row = this.findIdentityRow(ref);
    return row ? this.identityRecord(row) : undefined;
  }

  getIdentityById(id: string): IdentityRecord | undefined {
    const row = this.store.identityById(id);
    return row ? this.identityRecord(row) : undefined;
  }

  requireIdentity(ref: string): IdentityRecord {
    return this.identityRecord(this.requireIdentityRow(ref));
  }

  listIdentities(opts: { offset?: number; limit?: number; search?: string } = {}): IdentityRecord[] {
    return this.store.listIdentities(opts).map((r) => this.identityRecord(r, r.templates));
  }

  updateIdentity(ref: string, fields: { name?: string; metadata?: unknown }): { identity: IdentityRecord; previousName: string } {
    const row = this.requireIdentityRow(ref);
    const name = fields.name === undefined ? undefined : this.validateName(fields.name);
    this.store.transaction(() => this.store.updateIdentity(row.pk, { name, metadata: fields.metadata }, now()));
    const updated = this.store.identityByPk(row.pk)!;
    this.names.set(row.pk, { id: updated.id, name: updated.name });
    return { identity: this.identityRecord(updated), previousName: row.name };
  }

  /** Removes an identity and all its templates in one transaction; returns it and its removed template labels. */
  removeIdentity(ref: string): { identity: IdentityRecord; labels: number[] } {
    const row = this.requireIdentityRow(ref);
    const templates = this.store.templatesOf(row.pk);
    this.store.transaction(() => {
      for (const t of templates) this.store.deleteTemplate(t.id);
      this.store.deleteIdentity(row.pk);
    });
    const labels = templates.map((t) => t.id).filter((id) => this.forget(id));
    this.names.delete(row.pk);
    return { identity: this.identityRecord(row, templates.length), labels };
  }

  // ---------------------------------------------------------------- templates

  hasPicture(ref: string, contentHash: string): boolean {
    const row = this.findIdentityRow(ref);
    return row ? this.store.hashesOf(row.pk).has(contentHash) : false;
  }

  pictureHashes(ref: string): Set<string> {
    const row = this.findIdentityRow(ref);
    return row ? this.store.hashesOf(row.pk) : new Set();
  }

  /**
   * Adds templates to identities (creating those a ref names none of), all in one transaction:
   * when this returns every template is committed; on error nothing is. A picture whose content
   * hash the identity already holds is refused (DUPLICATE_TEMPLATE).
   */
  addTemplatesBatch(entries: readonly { identity: IdentityRef; templates: readonly NewTemplate[] }[]): AddedTemplates[] {
    for (const e of entries) if (!e.identity.id && !e.identity.name) throw new FacestreamError('BAD_REQUEST', 'an identity id or name is needed', {});
    const createdAt = now();
    const written = this.store.transaction(() =>
      entries.map(({ identity: ref, templates }) => {
        let row = ref.id ? this.store.identityById(ref.id) : this.findIdentityRow(ref.name!);
        let created = false;
        if (!row) {
          const id = ref.id ?? crypto.randomUUID();
          this.validateNewId(id);
          row = this.store.insertIdentity(id, this.validateName(ref.name ?? id), ref.metadata, createdAt);
          created = true;
        }
        const hashes = created ? new Set<string>() : this.store.hashesOf(row.pk);
        const ids: number[] = [];
        for (const t of templates) {
          claimPicture(hashes, t, row);
          ids.push(this.store.insertTemplate(row.pk, t, this.modelId, createdAt));
        }
        if (!created && ids.length) this.store.touchIdentity(row.pk, createdAt);
        return { row, ids, created };
      }),
    );
    // Committed: now the in-memory view learns about it.
    return written.map(({ row, ids, created }, e) => {
      const templates = entries[e].templates;
      this.names.set(row.pk, { id: row.id, name: row.name });
      for (const id of ids) {
        this.setOwner(id, row.pk);
        this.live++;
      }
      const identity = this.identityRecord(created ? row : this.store.identityByPk(row.pk)!, created ? ids.length : undefined);
      const added = ids.map(
        (id, i): Template => ({
          id: this.templateIds.encode(id),
          identityId: row.id,
          source: templates[i].source,
          contentHash: templates[i].contentHash ?? null,
          detectionScore: templates[i].detectionScore ?? null,
          faceSize: templates[i].faceSize ?? null,
          modelId: this.modelId,
          createdAt,
        }),
      );
      return { identity, templates: added, created, pk: row.pk, labels: ids };
    });
  }

  listTemplates(ref: string): Template[] {
    const row = this.requireIdentityRow(ref);
    return this.store.templatesOf(row.pk).map((t) => this.templateRecord(t, row.id));
  }

  getTemplate(templateId: string): Template | undefined {
    const label = this.templateIds.decode(templateId);
    const row = label ? this.store.templateById(label) : undefined;
    return row ? this.templateRecord(row) : undefined;
  }

  private requireTemplateRow(templateId: string): TemplateRow {
    const label = this.templateIds.decode(templateId);
    const row = label ? this.store.templateById(label) : undefined;
    if (!row) throw new FacestreamError('TEMPLATE_NOT_FOUND', `no template "${templateId}" in gallery ${this.dir}`, { templateId });
    return row;
  }

  templateCrop(templateId: string): StoredCrop | undefined {
    return this.store.crop(this.requireTemplateRow(templateId).id);
  }

  templateEmbedding(templateId: string): Float32Array {
    return this.store.embedding(this.requireTemplateRow(templateId).id, this.dimension)!;
  }

  /** Removes one template; returns its record and label. */
  removeTemplate(templateId: string): { template: Template; label: number } {
    const row = this.requireTemplateRow(templateId);
    const template = this.templateRecord(row);
    this.store.transaction(() => this.store.deleteTemplate(row.id));
    this.forget(row.id);
    return { template, label: row.id };
  }

  /**
   * Applies a system of record's changes (cluster mode) in one transaction, in an order that
   * cannot trip the unique id: removals first, then identities, then new templates. Idempotent:
   * applying the same changes again does nothing.
   */
  applyReplicated(changes: ReplicatedChanges): AppliedChanges {
    const out: AppliedChanges = { created: [], updated: [], removed: [], added: [], removedTemplates: [] };
    const store = this.store;
    const dropped: { row: TemplateRow; identityId: string }[] = [];
    const removed: { row: IdentityRow; templates: number }[] = [];
    const upserted: { row: IdentityRow; previous: IdentityRow | undefined }[] = [];
    const inserted: TemplateRow[] = [];
    store.transaction(() => {
      for (const id of changes.removedTemplates) {
        const row = store.templateById(id);
        if (!row) continue;
        store.deleteTemplate(id);
        dropped.push({ row, identityId: this.names.get(row.identity)?.id ?? '' });
      }
      for (const pk of changes.removedIdentities) {
        const row = store.identityByPk(pk);
        if (!row) continue;
        const templates = store.templatesOf(pk);
        for (const t of templates) {
          store.deleteTemplate(t.id);
          dropped.push({ row: t, identityId: row.id });
        }
        store.deleteIdentity(pk);
        removed.push({ row, templates: templates.length });
      }
      for (const row of changes.identities) {
        const previous = store.identityByPk(row.pk);
        store.putIdentityRow(row);
        upserted.push({ row, previous });
      }
      for (const t of changes.templates) {
        if (store.templateById(t.row.id)) continue;
        store.putTemplateRow(t.row, t.embedding, t.crop);
        inserted.push(t.row);
      }
      for (const [k, v] of Object.entries(changes.meta)) store.setMeta(k, v);
    });
    // Committed: now the in-memory view learns about it.
    for (const { row, identityId } of dropped) {
      if (this.forget(row.id)) out.removedTemplates.push({ label: row.id, templateId: this.templateIds.encode(row.id), identityId });
    }
    for (const { row, templates } of removed) {
      this.names.delete(row.pk);
      out.removed.push(this.identityRecord(row, templates));
    }
    for (const { row, previous } of upserted) {
      this.names.set(row.pk, { id: row.id, name: row.name });
      if (!previous) out.created.push(this.identityRecord(row));
      else if (previous.name !== row.name || previous.metadata !== row.metadata) out.updated.push({ identity: this.identityRecord(row), previousName: previous.name });
    }
    for (const row of inserted) {
      this.setOwner(row.id, row.identity);
      this.live++;
      const owner = this.names.get(row.identity) ?? { id: '', name: '' };
      out.added.push({ label: row.id, template: this.templateRecord(row, owner.id), identity: owner });
    }
    return out;
  }

  /** Stored embeddings of one identity's templates, for 1:1 scoring. */
  identityEmbeddings(ref: string): { row: IdentityRow; vectors: { id: number; v: Float32Array }[] } {
    const row = this.requireIdentityRow(ref);
    const vectors: { id: number; v: Float32Array }[] = [];
    for (const t of this.store.templatesOf(row.pk)) {
      const v = this.store.embedding(t.id, this.dimension);
      if (v) vectors.push({ id: t.id, v });
    }
    return { row, vectors };
  }

  /**
   * Problems of the records: SQLite's own checks, embedding sizes, and the in-memory view against
   * the database. Returns them with the database's template owners (label -> identity pk).
   */
  problems(): { problems: string[]; owners: Map<number, number> } {
    const problems = this.store.integrityProblems(this.dimension);
    const templates = this.store.templateCount();
    if (templates !== this.live) problems.push(`memory holds ${this.live} templates, the database ${templates}`);
    const owners = new Map<number, number>();
    for (const [id, pk] of this.store.templateOwners()) {
      owners.set(id, pk);
      if (this.ownerOf(id) !== pk) problems.push(`template ${id}: owner in memory ${this.ownerOf(id)}, in the database ${pk}`);
      if (!this.names.has(pk)) problems.push(`template ${id} belongs to identity pk ${pk}, which does not exist`);
    }
    return { problems, owners };
  }
}
