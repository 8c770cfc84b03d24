import type { Gallery } from './gallery.js';
import type { IdentityRecord, IdentityRef, Template } from './records.js';
import type { NewTemplate } from './store.js';

/** What adding templates to one identity wrote. */
export interface AddedToIdentity {
  identity: IdentityRecord;
  templates: Template[];
  created: boolean;
}

/**
 * Every write to the gallery goes through this: the REST routes, the Enroller and the compat
 * routes call it in both modes. Embedded (one process): the local SQLite gallery, synchronously
 * underneath. Cluster: PostgreSQL (src/cluster/postgres/gallery-writer.ts), resolving once this
 * node's replica has applied the change, so a read right after a write sees it.
 *
 * Errors are the Gallery's (FacestreamError: BAD_REQUEST, IDENTITY_EXISTS, IDENTITY_NOT_FOUND,
 * TEMPLATE_NOT_FOUND, DUPLICATE_TEMPLATE), plus in cluster mode STORE_UNAVAILABLE (503) while
 * PostgreSQL cannot be reached.
 */
export interface GalleryWriter {
  createIdentity(input: { id?: string; name: string; metadata?: unknown }): Promise<IdentityRecord>;
  updateIdentity(ref: string, fields: { name?: string; metadata?: unknown }): Promise<IdentityRecord>;
  /** Removes an identity and all its templates (one transaction). */
  removeIdentity(ref: string): Promise<IdentityRecord>;
  /** Adds templates to an identity, creating it when `ref` names none; all or nothing. */
  addTemplates(ref: IdentityRef, templates: readonly NewTemplate[]): Promise<AddedToIdentity>;
  /** addTemplates for many identities in one transaction; all or nothing. */
  addTemplatesBatch(entries: readonly { identity: IdentityRef; templates: readonly NewTemplate[] }[]): Promise<AddedToIdentity[]>;
  removeTemplate(templateId: string): Promise<Template>;
  /**
   * Resolves once this node's gallery reflects every write acknowledged anywhere before the call
   * (embedded: at once; cluster: one read of PostgreSQL's change sequence, then the replica's
   * catch-up). Write paths that look an identity or template up before writing call it first,
   * so a write acknowledged by one node is found by the next request on any other.
   */
  current(): Promise<void>;
}

/** The embedded writer: today's behaviour, the local Gallery's own (synchronous, committed on return) writes. */
export class EmbeddedGalleryWriter implements GalleryWriter {
  constructor(private readonly gallery: Gallery) {}

  async createIdentity(input: { id?: string; name: string; metadata?: unknown }): Promise<IdentityRecord> {
    return this.gallery.createIdentity(input);
  }

  async updateIdentity(ref: string, fields: { name?: string; metadata?: unknown }): Promise<IdentityRecord> {
    return this.gallery.updateIdentity(ref, fields);
  }

  async removeIdentity(ref: string): Promise<IdentityRecord> {
    return this.gallery.removeIdentity(ref);
  }

  async addTemplates(ref: IdentityRef, templates: readonly NewTemplate[]): Promise<AddedToIdentity> {
    return this.gallery.addTemplates(ref, templates);
  }

  async addTemplatesBatch(entries: readonly { identity: IdentityRef; templates: readonly NewTemplate[] }[]): Promise<AddedToIdentity[]> {
    return this.gallery.addTemplatesBatch(entries);
  }

  async removeTemplate(templateId: string): Promise<Template> {
    return this.gallery.removeTemplate(templateId);
  }

  async current(): Promise<void> {}
}
