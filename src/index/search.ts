import type { GalleryConfig } from '../config/sections/gallery.js';
import type { ScoredTemplate } from './vectors.js';

/** An identity found for a probe: its score (see aggregateByIdentity) and its best template. */
export interface IdentityMatch {
  identityId: string;
  name: string;
  similarity: number;
  /** The identity's best-matching template. */
  templateId: string;
}

/** Who owns a template, and that identity's id and name (GalleryRecords). */
export interface TemplateOwners {
  ownerOf(templateId: number): number;
  identityOf(pk: number): { id: string; name: string } | undefined;
  /** The public id of a template label. */
  publicTemplateId(label: number): string;
}

type Aggregation = Pick<GalleryConfig, 'aggregation' | 'aggregateTemplates'>;

/** How many template hits to ask the index for to rank `k` identities. */
export function candidatesWanted(config: Pick<GalleryConfig, 'candidatesPerIdentity' | 'aggregateTemplates'>, k: number, templates: number): number {
  return Math.min(templates, Math.max(k * config.candidatesPerIdentity, config.aggregateTemplates));
}

/** An identity's score from its templates' similarities sorted best first: the best ('max'), or the mean of the best `aggregateTemplates` ('mean'). */
export function identityScore(config: Aggregation, sortedSimilarities: readonly number[]): number {
  const n = config.aggregation === 'mean' ? config.aggregateTemplates : 1;
  const used = sortedSimilarities.slice(0, n);
  return used.reduce((a, b) => a + b, 0) / used.length;
}

/** Groups template hits (best first) by identity and ranks the identities by identityScore; the top `k`. */
export function aggregateByIdentity(hits: readonly ScoredTemplate[], k: number, config: Aggregation, owners: TemplateOwners): IdentityMatch[] {
  const per = new Map<number, { best: ScoredTemplate; sims: number[] }>();
  for (const h of hits) {
    const pk = owners.ownerOf(h.templateId);
    if (pk === 0) continue;
    const entry = per.get(pk);
    if (entry) entry.sims.push(h.similarity);
    else per.set(pk, { best: h, sims: [h.similarity] });
  }
  const out: IdentityMatch[] = [];
  for (const [pk, { best, sims }] of per) {
    const identity = owners.identityOf(pk);
    if (!identity) continue;
    out.push({ identityId: identity.id, name: identity.name, similarity: identityScore(config, sims), templateId: owners.publicTemplateId(best.templateId) });
  }
  out.sort((a, b) => b.similarity - a.similarity);
  return out.slice(0, k);
}

/**
 * Who a face is, as every output names it (CLI JSON, REST, WebSocket, docs): `identity` holds the
 * identity's `id` and `name`, the `similarity` (cosine, -1..1) and the best `templateId`; a face's
 * `candidates` are the same objects. null identity: unknown.
 */
export interface FaceIdentity {
  id: string;
  name: string;
  similarity: number;
  templateId: string;
}

export function faceIdentity(m: IdentityMatch): FaceIdentity {
  return { id: m.identityId, name: m.name, similarity: m.similarity, templateId: m.templateId };
}

/** The `identity` (null: unknown) and `candidates` of a face from Gallery.identify's answer. */
export function faceIdentification(found: { match: IdentityMatch | null; candidates: IdentityMatch[] }): { identity: FaceIdentity | null; candidates: FaceIdentity[] } {
  return { identity: found.match ? faceIdentity(found.match) : null, candidates: found.candidates.map(faceIdentity) };
}
