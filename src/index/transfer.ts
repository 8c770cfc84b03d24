import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { z } from 'zod';
import { FacestreamError } from '../errors.js';
import type { Gallery, NewTemplate } from './gallery.js';
import { EmbeddedGalleryWriter, type GalleryWriter } from './gallery-writer.js';
import type { StoredCrop } from './store.js';
import { checkMetadata } from './metadata.js';
import { blobToVector, checkEmbedding, vectorToBlob } from './vectors.js';

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

const finite = z.number().refine(Number.isFinite, 'must be a finite number');

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
    .object({ box: z.tuple([finite, finite, finite, finite]), landmarks: z.array(z.tuple([finite, finite])).length(5, 'a crop needs its 5 landmarks') })
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
  async function* lines(): AsyncGenerator<string> {
    yield `${JSON.stringify({ format: EXPORT_FORMAT, version: 1, modelId: gallery.modelId, dimension: gallery.dimension, identities, templates, exportedAt: new Date().toISOString() })}\n`;
    for (const identity of gallery.listIdentities()) {
      yield `${JSON.stringify({ type: 'identity', id: identity.id, name: identity.name, metadata: identity.metadata, createdAt: identity.createdAt })}\n`;
      for (const t of gallery.listTemplates(identity.id)) {
        const crop = gallery.templateCrop(t.id);
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

/** Largest line (one identity or template record) of an import: a template with a 224 px crop is ~40 KB. */
export const DEFAULT_MAX_RECORD_BYTES = 4 * 1024 * 1024;

export interface ImportOptions {
  /**
   * Embeds a stored crop with the gallery's model; needed when the export was made with another
   * model (templates without a crop are then skipped and counted).
   */
  reembed?: (crop: StoredCrop) => Promise<Float32Array>;
  onProgress?: (done: number, total: number) => void;
  /** Longest line accepted (default DEFAULT_MAX_RECORD_BYTES); a longer one fails the import before it is held in memory. */
  maxRecordBytes?: number;
  /** Where identities and templates are written (default: the gallery itself; cluster mode: PostgreSQL). */
  writer?: GalleryWriter;
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
 * The lines of a file (gunzipped when its name ends in .gz), streamed: a line longer than
 * `maxBytes` throws BODY_TOO_LARGE as soon as its bytes pass the limit, so a small gzip file that
 * expands to one 600 MB line costs at most `maxBytes` of memory. Yields [line number, text].
 */
export async function* boundedLines(file: string, maxBytes: number): AsyncGenerator<[number, string]> {
  const input = fs.createReadStream(file);
  const stream: AsyncIterable<Buffer> = /\.gz$/i.test(file) ? input.pipe(zlib.createGunzip()) : input;
  let parts: Buffer[] = [];
  let held = 0;
  let lineNo = 0;
  const tooLong = (): never => {
    throw new FacestreamError('BODY_TOO_LARGE', `${path.basename(file)}:${lineNo + 1}: a record is over the ${maxBytes}-byte limit of one line`, { file, line: lineNo + 1, limit: maxBytes });
  };
  try {
    for await (const chunk of stream) {
      let from = 0;
      for (;;) {
        const nl = chunk.indexOf(0x0a, from);
        if (nl < 0) break;
        if (held + nl - from > maxBytes) tooLong();
        parts.push(chunk.subarray(from, nl));
        const line = Buffer.concat(parts).toString('utf8');
        parts = [];
        held = 0;
        lineNo++;
        yield [lineNo, line.endsWith('\r') ? line.slice(0, -1) : line];
        from = nl + 1;
      }
      if (from < chunk.length) {
        held += chunk.length - from;
        if (held > maxBytes) tooLong();
        parts.push(chunk.subarray(from));
      }
    }
    if (held > 0) yield [lineNo + 1, Buffer.concat(parts).toString('utf8')];
  } catch (err) {
    if (err instanceof FacestreamError) throw err;
    throw new FacestreamError('BAD_REQUEST', `${path.basename(file)}: cannot read the export: ${(err as Error).message}`, { file, line: lineNo });
  } finally {
    input.destroy();
  }
}

type ImportRecord =
  | { line: number; kind: 'header'; header: z.infer<typeof headerSchema> }
  | { line: number; kind: 'identity'; identity: z.infer<typeof identityLine> }
  | { line: number; kind: 'template'; template: z.infer<typeof templateLine>; embedding?: Float32Array; crop: StoredCrop | null };

/** Every record of an export, parsed and checked (schema, order, metadata, embeddings), in file order. Throws on the first bad line. */
async function* importRecords(gallery: Gallery, file: string, opts: ImportOptions): AsyncGenerator<ImportRecord> {
  let header: z.infer<typeof headerSchema> | undefined;
  let identityId: string | undefined;
  for await (const [lineNo, line] of boundedLines(file, opts.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES)) {
    const fail = (msg: string): never => {
      throw new FacestreamError('BAD_REQUEST', `${path.basename(file)}:${lineNo}: ${msg}`, { file, line: lineNo });
    };
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
      yield { line: lineNo, kind: 'header', header };
      continue;
    }
    const type = (json as { type?: unknown }).type;
    if (type === 'identity') {
      const parsed = identityLine.safeParse(json);
      if (!parsed.success) fail(`bad identity line: ${parsed.error!.issues[0].message}`);
      try {
        checkMetadata(parsed.data!.metadata ?? undefined);
      } catch (err) {
        fail((err as Error).message);
      }
      identityId = parsed.data!.id;
      yield { line: lineNo, kind: 'identity', identity: parsed.data! };
    } else if (type === 'template') {
      const parsed = templateLine.safeParse(json);
      if (!parsed.success) fail(`bad template line: ${parsed.error!.issues[0].path.join('.')} ${parsed.error!.issues[0].message}`);
      const t = parsed.data!;
      if (identityId !== t.identityId) fail(`template of "${t.identityId}" does not follow its identity line`);
      const crop: StoredCrop | null = t.crop && t.cropGeometry ? { data: Buffer.from(t.crop, 'base64'), format: t.cropFormat ?? 'jpeg', geometry: t.cropGeometry } : null;
      let embedding: Float32Array | undefined;
      if (t.modelId === gallery.modelId) {
        const blob = Buffer.from(t.embedding, 'base64');
        if (blob.length !== gallery.dimension * 4) fail(`embedding has ${blob.length / 4} values, expected ${gallery.dimension}`);
        embedding = blobToVector(blob, gallery.dimension);
        try {
          checkEmbedding(embedding, gallery.dimension);
        } catch (err) {
          fail((err as Error).message);
        }
      }
      yield { line: lineNo, kind: 'template', template: t, embedding, crop };
    } else fail(`unknown line type ${JSON.stringify(type)}`);
  }
  if (!header) throw new FacestreamError('BAD_REQUEST', `${file} is empty`, { file });
}

/**
 * Adds an export's identities and templates to the gallery. Identities are matched by id
 * (merged when present); pictures the identity already has are skipped, so importing the same
 * file twice changes nothing.
 *
 * The file is read twice: first every line is checked (size, JSON, schema, order, metadata,
 * embeddings) and nothing is written, so a malformed file changes nothing; then each identity
 * is committed in its own transaction. When the second pass fails (a crop that cannot be
 * re-embedded, a full disk), the error says at which line and what was committed before it
 * (details.committed), and no identity is left half-imported.
 */
export async function importGallery(gallery: Gallery, file: string, opts: ImportOptions = {}): Promise<ImportSummary> {
  if (!fs.existsSync(file)) throw new FacestreamError('FILE_NOT_FOUND', `${file}: no such export file`, { file });
  let total = 0;
  for await (const r of importRecords(gallery, file, opts)) if (r.kind === 'template') total++;

  const summary: ImportSummary = { identitiesCreated: 0, identitiesMerged: 0, templatesAdded: 0, duplicates: 0, skipped: 0, reembedded: 0 };
  let current: { identity: z.infer<typeof identityLine>; templates: NewTemplate[]; known: Set<string>; exists: boolean } | undefined;
  let lineNo = 0;
  let done = 0;
  const writer = opts.writer ?? new EmbeddedGalleryWriter(gallery);
  const flush = async () => {
    if (!current) return;
    const { identity, templates: fresh, exists } = current;
    current = undefined;
    if (exists) summary.identitiesMerged++;
    if (!exists && fresh.length === 0) {
      await writer.createIdentity({ id: identity.id, name: identity.name, metadata: identity.metadata ?? undefined });
      summary.identitiesCreated++;
      return;
    }
    if (fresh.length === 0) return;
    const r = await writer.addTemplates({ id: identity.id, name: identity.name, metadata: identity.metadata ?? undefined }, fresh);
    if (r.created) summary.identitiesCreated++;
    summary.templatesAdded += r.templates.length;
  };
  try {
    for await (const r of importRecords(gallery, file, opts)) {
      lineNo = r.line;
      if (r.kind === 'identity') {
        await flush();
        const exists = gallery.getIdentityById(r.identity.id) !== undefined;
        current = { identity: r.identity, templates: [], exists, known: exists ? gallery.pictureHashes(r.identity.id) : new Set() };
      } else if (r.kind === 'template') {
        const t = r.template;
        if (t.contentHash && current!.known.has(t.contentHash)) {
          // Already there: no need to decode, let alone re-embed it.
          summary.duplicates++;
          opts.onProgress?.(++done, total);
          continue;
        }
        if (t.contentHash) current!.known.add(t.contentHash);
        let embedding = r.embedding;
        if (!embedding && r.crop && opts.reembed) {
          embedding = await opts.reembed(r.crop);
          summary.reembedded++;
        }
        if (embedding) current!.templates.push({ source: t.source, contentHash: t.contentHash ?? null, detectionScore: t.detectionScore ?? null, faceSize: t.faceSize ?? null, embedding, crop: r.crop });
        else summary.skipped++;
        opts.onProgress?.(++done, total);
      }
    }
    await flush();
  } catch (err) {
    const committed = { identitiesCreated: summary.identitiesCreated, identitiesMerged: summary.identitiesMerged, templatesAdded: summary.templatesAdded };
    const why = err instanceof Error ? err.message : String(err);
    throw new FacestreamError(
      err instanceof FacestreamError && (err.status < 500 || err.code === 'STORE_UNAVAILABLE') ? err.code : 'BAD_REQUEST',
      `import stopped at ${path.basename(file)}:${lineNo}: ${why}; committed before it: ${committed.identitiesCreated} identities created, ${committed.identitiesMerged} merged, ${committed.templatesAdded} templates (the identity being read is not)`,
      { file, line: lineNo, ...committed },
      { cause: err },
    );
  }
  return summary;
}
