import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { z } from 'zod';
import { FacestreamError } from '../errors.js';
import type { Gallery, NewTemplate } from './gallery.js';
import type { StoredCrop } from './store.js';
import { blobToVector, vectorToBlob } from './vectors.js';

/**
 * Gallery export format: JSON Lines (gzip-compressed when the file name ends in .gz). A header
 * line, then each identity followed by its templates, with embeddings and face crops in base64.
 * Crops make an export importable into a gallery of another embedding model (re-embedded).
 */

export const EXPORT_FORMAT = 'facestream-gallery';

const headerSchema = z.object({
  format: z.literal(EXPORT_FORMAT),
  version: z.literal(1),
  modelId: z.string(),
  dimension: z.int().positive(),
  identities: z.int().min(0),
  templates: z.int().min(0),
});

const identityLine = z.object({
  type: z.literal('identity'),
  id: z.string(),
  name: z.string(),
  metadata: z.unknown().optional(),
  createdAt: z.string().optional(),
});

const templateLine = z.object({
  type: z.literal('template'),
  identityId: z.string(),
  source: z.string(),
  contentHash: z.string().nullable().optional(),
  detectionScore: z.number().nullable().optional(),
  faceSize: z.number().nullable().optional(),
  modelId: z.string(),
  embedding: z.string(),
  crop: z.string().nullable().optional(),
  cropFormat: z.enum(['jpeg', 'png']).nullable().optional(),
  cropGeometry: z
    .object({ box: z.tuple([z.number(), z.number(), z.number(), z.number()]), landmarks: z.array(z.tuple([z.number(), z.number()])) })
    .nullable()
    .optional(),
});

export interface ExportSummary {
  file: string;
  identities: number;
  templates: number;
  bytes: number;
}

/** Writes the whole gallery to `file` (temporary file, then rename: a failed export leaves nothing half-written). */
export async function exportGallery(gallery: Gallery, file: string): Promise<ExportSummary> {
  const { identities, templates } = gallery.counts();
  const tmp = `${file}.tmp-${process.pid}`;
  const store = gallery.database;
  async function* lines(): AsyncGenerator<string> {
    yield `${JSON.stringify({ format: EXPORT_FORMAT, version: 1, modelId: gallery.modelId, dimension: gallery.dimension, identities, templates, exportedAt: new Date().toISOString() })}\n`;
    for (const identity of gallery.listIdentities()) {
      yield `${JSON.stringify({ type: 'identity', id: identity.id, name: identity.name, metadata: identity.metadata, createdAt: identity.createdAt })}\n`;
      for (const t of gallery.listTemplates(identity.id)) {
        const crop = store.crop(Number(t.id));
        const embedding = gallery.templateEmbedding(t.id);
        yield `${JSON.stringify({
          type: 'template',
          identityId: identity.id,
          source: t.source,
          contentHash: t.contentHash,
          detectionScore: t.detectionScore,
          faceSize: t.faceSize,
          modelId: t.modelId,
          embedding: vectorToBlob(embedding).toString('base64'),
          crop: crop ? crop.data.toString('base64') : null,
          cropFormat: crop?.format ?? null,
          cropGeometry: crop?.geometry ?? null,
        })}\n`;
      }
    }
  }
  try {
    const out = fs.createWriteStream(tmp);
    if (/\.gz$/i.test(file)) await pipeline(Readable.from(lines()), zlib.createGzip(), out);
    else await pipeline(Readable.from(lines()), out);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  return { file, identities, templates, bytes: fs.statSync(file).size };
}

export interface ImportOptions {
  /**
   * Embeds a stored crop with the gallery's model; needed when the export was made with another
   * model (templates without a crop are then skipped and counted).
   */
  reembed?: (crop: StoredCrop) => Promise<Float32Array>;
  onProgress?: (done: number, total: number) => void;
}

export interface ImportSummary {
  identitiesCreated: number;
  identitiesMerged: number;
  templatesAdded: number;
  /** Already present (same picture for the same identity). */
  duplicates: number;
  /** Could not be used: another model's embedding and no crop (or no re-embedder). */
  skipped: number;
  reembedded: number;
}

/**
 * Adds an export's identities and templates to the gallery. Identities are matched by id
 * (merged when present); pictures the identity already has are skipped, so importing the same
 * file twice changes nothing. Each identity is committed in its own transaction.
 */
export async function importGallery(gallery: Gallery, file: string, opts: ImportOptions = {}): Promise<ImportSummary> {
  if (!fs.existsSync(file)) throw new FacestreamError('FILE_NOT_FOUND', `${file}: no such export file`, { file });
  const input = fs.createReadStream(file);
  const stream = /\.gz$/i.test(file) ? input.pipe(zlib.createGunzip()) : input;
  const rl = readline.createInterface({ input: stream, crlfDelay: Infinity });
  const summary: ImportSummary = { identitiesCreated: 0, identitiesMerged: 0, templatesAdded: 0, duplicates: 0, skipped: 0, reembedded: 0 };
  let header: z.infer<typeof headerSchema> | undefined;
  let current: { identity: z.infer<typeof identityLine>; templates: NewTemplate[]; known: Set<string>; exists: boolean } | undefined;
  let lineNo = 0;
  let done = 0;
  const fail = (msg: string): never => {
    throw new FacestreamError('BAD_REQUEST', `${path.basename(file)}:${lineNo}: ${msg}`, { file, line: lineNo });
  };
  const flush = () => {
    if (!current) return;
    const { identity, templates: fresh, exists } = current;
    current = undefined;
    if (exists) summary.identitiesMerged++;
    if (!exists && fresh.length === 0) {
      gallery.createIdentity({ id: identity.id, name: identity.name, metadata: identity.metadata ?? undefined });
      summary.identitiesCreated++;
      return;
    }
    if (fresh.length === 0) return;
    const r = gallery.addTemplates({ id: identity.id, name: identity.name, metadata: identity.metadata ?? undefined }, fresh);
    if (r.created) summary.identitiesCreated++;
    summary.templatesAdded += r.templates.length;
  };
  try {
    for await (const line of rl) {
      lineNo++;
      if (!line.trim()) continue;
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        fail('not a JSON line');
      }
      if (!header) {
        const h = headerSchema.safeParse(json);
        if (!h.success) fail(`not a ${EXPORT_FORMAT} export (bad header)`);
        header = h.data!;
        if (header.modelId !== gallery.modelId && !opts.reembed) {
          throw new FacestreamError(
            'GALLERY_MODEL_MISMATCH',
            `${file} holds "${header.modelId}" embeddings; this gallery uses "${gallery.modelId}": import with the models available so the crops are re-embedded`,
            { file, exportModel: header.modelId, galleryModel: gallery.modelId },
          );
        }
        continue;
      }
      const type = (json as { type?: unknown }).type;
      if (type === 'identity') {
        flush();
        const parsed = identityLine.safeParse(json);
        if (!parsed.success) fail(`bad identity line: ${parsed.error!.issues[0].message}`);
        const exists = gallery.getIdentityById(parsed.data!.id) !== undefined;
        current = { identity: parsed.data!, templates: [], exists, known: exists ? gallery.pictureHashes(parsed.data!.id) : new Set() };
      } else if (type === 'template') {
        const parsed = templateLine.safeParse(json);
        if (!parsed.success) fail(`bad template line: ${parsed.error!.issues[0].message}`);
        const t = parsed.data!;
        if (!current || current.identity.id !== t.identityId) fail(`template of "${t.identityId}" does not follow its identity line`);
        if (t.contentHash && current!.known.has(t.contentHash)) {
          // Already there: no need to decode, let alone re-embed it.
          summary.duplicates++;
          opts.onProgress?.(++done, header.templates);
          continue;
        }
        if (t.contentHash) current!.known.add(t.contentHash);
        const crop: StoredCrop | null = t.crop && t.cropGeometry ? { data: Buffer.from(t.crop, 'base64'), format: t.cropFormat ?? 'jpeg', geometry: t.cropGeometry } : null;
        let embedding: Float32Array | undefined;
        if (t.modelId === gallery.modelId) {
          const blob = Buffer.from(t.embedding, 'base64');
          if (blob.length !== gallery.dimension * 4) fail(`embedding has ${blob.length / 4} values, expected ${gallery.dimension}`);
          embedding = blobToVector(blob, gallery.dimension);
        } else if (crop && opts.reembed) {
          embedding = await opts.reembed(crop);
          summary.reembedded++;
        }
        if (embedding) current!.templates.push({ source: t.source, contentHash: t.contentHash ?? null, detectionScore: t.detectionScore ?? null, faceSize: t.faceSize ?? null, embedding, crop });
        else summary.skipped++;
        opts.onProgress?.(++done, header.templates);
      } else fail(`unknown line type ${JSON.stringify(type)}`);
    }
    if (!header) throw new FacestreamError('BAD_REQUEST', `${file} is empty`, { file });
    flush();
  } finally {
    rl.close();
    input.destroy();
  }
  return summary;
}
