import crypto from 'node:crypto';
import type { GalleryConfig } from '../config/sections/gallery.js';
import { limitsSchema } from '../config/schema.js';
import { FacestreamError, isFacestreamError, type ErrorCode } from '../errors.js';
import { decodeImage, type DecodedImage, type ImageLimits } from '../image/decode.js';
import type { Box, RgbImage } from '../image/types.js';
import { largestFace, type FaceAnalyzer } from '../pipeline/analyzer.js';
import { faceAtBox } from '../pipeline/align/pad.js';
import { iou } from '../pipeline/detect/boxes.js';
import type { DetectedFace } from '../pipeline/detect/mtcnn.js';
import { cosineSimilarity } from '../pipeline/embed/vector.js';
import { canonicalCrop } from './crop.js';
import type { Gallery, IdentityRecord, IdentityRef, NewTemplate, Template } from './gallery.js';
import { EmbeddedGalleryWriter, type GalleryWriter } from './gallery-writer.js';
import { faceSharpness } from './quality.js';

export interface EnrollPicture {
  /** File name or label, used in reports and stored as the template's source. */
  name: string;
  data: Buffer;
}

export interface EnrollOptions {
  /** Enroll the largest face of a picture with several (default: config.enrollment.allowLargest). */
  allowLargest?: boolean;
  /** Enroll the detected face that best overlaps this box (picture pixels). */
  box?: Box;
}

export type PictureResult =
  | { picture: string; status: 'added'; template: Template; face: { box: Box; score: number; size: number; sharpness?: number } }
  | { picture: string; status: 'rejected'; code: ErrorCode; reason: string; duplicateOf?: string };

export interface EnrollReport {
  /** The identity after the call; null when nothing was added to an identity that did not exist. */
  identity: IdentityRecord | null;
  created: boolean;
  added: Template[];
  /** `duplicateOf`: for DUPLICATE_TEMPLATE, the enrolled template the picture repeats, when it is one. */
  rejected: { picture: string; code: ErrorCode; reason: string; duplicateOf?: string }[];
  /** One entry per picture, in input order. */
  results: PictureResult[];
  timings: EnrollTimings;
}

/** Where an enrollment's time went (ms), for the benchmark: the models' share against the gallery's. */
export interface EnrollTimings {
  decodeMs: number;
  detectMs: number;
  embedMs: number;
  cropMs: number;
  commitMs: number;
}

interface Accepted {
  index: number;
  image: RgbImage;
  face: DetectedFace;
  hash: string;
  size: number;
  sharpness?: number;
}

/** Shorter side of the detector box: the size the quality gate and the live pipeline talk about. */
export function faceSize(face: { box: readonly number[] }): number {
  return Math.min(face.box[2] - face.box[0], face.box[3] - face.box[1]);
}

class Rejection extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function contentHash(data: Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/**
 * The hash enrollment stores for a picture: of its decoded pixels (after EXIF orientation) and
 * size, so the same photo with other metadata, another container or trailing bytes is the same
 * picture. (Galleries enrolled before hold hashes of the file bytes; both are checked.)
 */
export function pictureHash(image: RgbImage): string {
  return crypto.createHash('sha256').update(`rgb ${image.width}x${image.height}\n`).update(image.data).digest('hex');
}

/**
 * Turns pictures of a person into gallery templates: decode, detect, pick the face, quality
 * gates, embed, store the face crop, and commit all of a call's templates in one transaction.
 * Each picture that cannot be used is reported with a reason code instead of failing the call.
 */
export class Enroller {
  private readonly limits: ImageLimits;
  /** Where templates are written: the gallery itself (embedded), or PostgreSQL (cluster mode), whose replica `gallery` is. */
  readonly writer: GalleryWriter;

  constructor(
    readonly gallery: Gallery,
    readonly analyzer: FaceAnalyzer,
    readonly config: GalleryConfig,
    opts: { limits?: ImageLimits; writer?: GalleryWriter } = {},
  ) {
    this.limits = opts.limits ?? limitsSchema.parse({});
    this.writer = opts.writer ?? new EmbeddedGalleryWriter(gallery);
    if (analyzer.embedder.modelId !== gallery.modelId) {
      throw new FacestreamError('GALLERY_MODEL_MISMATCH', `gallery ${gallery.dir} holds "${gallery.modelId}" embeddings; the analyzer uses "${analyzer.embedder.modelId}"`, {
        galleryModel: gallery.modelId,
        model: analyzer.embedder.modelId,
      });
    }
  }

  /** The face to enroll from one picture's detections, or the reason there is none. */
  private chooseFace(faces: readonly DetectedFace[], name: string, opts: EnrollOptions): DetectedFace {
    const gates = this.config.enrollment;
    let face: DetectedFace | undefined;
    if (opts.box) {
      let best = 0;
      for (const f of faces) {
        const o = iou(f.box, opts.box);
        if (o > best) [best, face] = [o, f];
      }
      // A person drew this box around a face: enroll it even where the detector sees none.
      if (!face || best < 0.3) return faceAtBox(opts.box);
    } else {
      if (faces.length === 0) throw new Rejection('NO_FACE', `${name}: no face found`);
      // Small or doubtful faces in the background do not count as "another face".
      const usable = faces.filter((f) => faceSize(f) >= gates.minFaceSize && f.score >= gates.minDetectionScore);
      if (usable.length > 1 && !(opts.allowLargest ?? gates.allowLargest)) {
        throw new Rejection('MULTIPLE_FACES', `${name}: ${usable.length} faces found; give a box or allow the largest face`);
      }
      face = largestFace(usable.length ? usable : faces)!;
    }
    const size = faceSize(face);
    if (size < gates.minFaceSize) throw new Rejection('FACE_TOO_SMALL', `${name}: face is ${Math.round(size)} px, under the ${gates.minFaceSize} px minimum`);
    if (face.score < gates.minDetectionScore) {
      throw new Rejection('LOW_QUALITY', `${name}: detection score ${face.score.toFixed(3)} is under the ${gates.minDetectionScore} minimum`);
    }
    return face;
  }

  private sharpnessGate(image: RgbImage, face: DetectedFace, name: string): number | undefined {
    const min = this.config.enrollment.minSharpness;
    if (min <= 0) return undefined;
    const sharpness = faceSharpness(image, face);
    if (sharpness < min) throw new Rejection('LOW_QUALITY', `${name}: face is blurred (sharpness ${sharpness.toFixed(1)}, minimum ${min})`);
    return sharpness;
  }

  /**
   * Indexes of `accepted` whose embedding is not near-identical (enrollment.duplicateSimilarity)
   * to a template of the identity or to a picture accepted before in this call; the others are
   * rejected as DUPLICATE_TEMPLATE, naming what they duplicate.
   */
  private withoutNearDuplicates(
    ref: string,
    accepted: readonly Accepted[],
    embeddings: readonly Float32Array[],
    earlier: readonly { index: number; template: NewTemplate }[],
    pictures: readonly EnrollPicture[],
    reject: (i: number, code: ErrorCode, reason: string, duplicateOf?: string) => void,
  ): number[] {
    const threshold = this.config.enrollment.duplicateSimilarity;
    if (threshold > 1) return accepted.map((_, k) => k);
    const exists = this.gallery.getIdentity(ref) !== undefined;
    const kept: number[] = [];
    const seen = earlier.map((t) => ({ v: t.template.embedding, what: t.template.source }));
    accepted.forEach((a, k) => {
      let best: { similarity: number; what: string; templateId?: string } = { similarity: -1, what: '' };
      if (exists) {
        const s = this.gallery.nearestTemplateOf(ref, embeddings[k]);
        if (s) best = { similarity: s.similarity, what: `template ${s.templateId}`, templateId: s.templateId };
      }
      for (const o of seen) {
        const sim = cosineSimilarity(o.v, embeddings[k]);
        if (sim > best.similarity) best = { similarity: sim, what: o.what };
      }
      if (best.similarity >= threshold) {
        const reason = `${pictures[a.index].name}: the same face as ${best.what} already enrolled for ${ref} (similarity ${best.similarity.toFixed(3)}, duplicates at ${threshold}: enrollment.duplicateSimilarity)`;
        reject(a.index, 'DUPLICATE_TEMPLATE', reason, best.templateId);
        return;
      }
      seen.push({ v: embeddings[k], what: pictures[a.index].name });
      kept.push(k);
    });
    return kept;
  }

  async enrollPictures(identity: IdentityRef, pictures: readonly EnrollPicture[], opts: EnrollOptions = {}): Promise<EnrollReport> {
    if (!identity.id && !identity.name) throw new FacestreamError('BAD_REQUEST', 'an identity id or name is needed to enroll', {});
    if (pictures.length === 0) throw new FacestreamError('BAD_REQUEST', 'no pictures to enroll', {});
    const timings: EnrollTimings = { decodeMs: 0, detectMs: 0, embedMs: 0, cropMs: 0, commitMs: 0 };
    const ref = identity.id ?? identity.name!;
    await this.writer.current(); // cluster mode: see pictures enrolled through other nodes
    const known = this.gallery.pictureHashes(ref);
    const results: (PictureResult | undefined)[] = new Array(pictures.length);
    const reject = (i: number, code: ErrorCode, reason: string, duplicateOf?: string) =>
      (results[i] = { picture: pictures[i].name, status: 'rejected', code, reason, ...(duplicateOf ? { duplicateOf } : {}) });
    const templates: { index: number; template: NewTemplate; face: Accepted }[] = [];
    const batch = this.config.enrollment.batch;
    for (let start = 0; start < pictures.length; start += batch) {
      const slice = pictures.slice(start, start + batch).map((p, k) => ({ ...p, index: start + k }));
      let mark = performance.now();
      const decoded: { index: number; image: DecodedImage; hash: string }[] = [];
      for (const p of slice) {
        const hash = contentHash(p.data);
        if (known.has(hash)) {
          reject(p.index, 'DUPLICATE_TEMPLATE', `${p.name}: this picture is already enrolled for ${ref}`);
          continue;
        }
        known.add(hash);
        let image: DecodedImage;
        try {
          image = await decodeImage(p.data, this.limits, p.name);
        } catch (err) {
          if (!isFacestreamError(err)) throw err;
          reject(p.index, err.code, err.message);
          continue;
        }
        const pixels = pictureHash(image);
        if (known.has(pixels)) {
          const enrolled = this.gallery.getIdentity(ref) ? this.gallery.listTemplates(ref).find((t) => t.contentHash === pixels)?.id : undefined;
          reject(p.index, 'DUPLICATE_TEMPLATE', `${p.name}: the same picture (identical pixels) is already enrolled for ${ref}`, enrolled);
          continue;
        }
        known.add(pixels);
        decoded.push({ index: p.index, image, hash: pixels });
      }
      timings.decodeMs += performance.now() - mark;
      if (decoded.length === 0) continue;
      mark = performance.now();
      const found = await this.analyzer.detect(decoded.map((d) => d.image), { stillPictures: true });
      timings.detectMs += performance.now() - mark;
      const accepted: Accepted[] = [];
      decoded.forEach((d, k) => {
        const name = pictures[d.index].name;
        try {
          const face = this.chooseFace(found[k], name, opts);
          const sharpness = this.sharpnessGate(d.image, face, name);
          accepted.push({ index: d.index, image: d.image, face, hash: d.hash, size: faceSize(face), sharpness });
        } catch (err) {
          if (!(err instanceof Rejection)) throw err;
          reject(d.index, err.code, err.message);
        }
      });
      if (accepted.length === 0) continue;
      mark = performance.now();
      const embedded = await this.analyzer.embedder.embedFaces(accepted.map((a) => ({ image: a.image, face: a.face })));
      timings.embedMs += performance.now() - mark;
      const fresh = this.withoutNearDuplicates(ref, accepted, embedded, templates, pictures, reject);
      accepted.splice(0, accepted.length, ...fresh.map((k) => accepted[k]));
      const embeddings = fresh.map((k) => embedded[k]);
      if (accepted.length === 0) continue;
      mark = performance.now();
      const crops = await Promise.all(accepted.map((a) => canonicalCrop(a.image, a.face, this.config.crops)));
      timings.cropMs += performance.now() - mark;
      accepted.forEach((a, k) =>
        templates.push({
          index: a.index,
          face: a,
          template: { source: pictures[a.index].name, contentHash: a.hash, detectionScore: Number.isNaN(a.face.score) ? undefined : a.face.score, faceSize: a.size, embedding: embeddings[k], crop: crops[k] },
        }),
      );
    }
    let identityRecord: IdentityRecord | null = null;
    let created = false;
    if (templates.length > 0) {
      const mark = performance.now();
      const committed = await this.commit(identity, templates, reject);
      timings.commitMs += performance.now() - mark;
      if (committed) {
        identityRecord = committed.identity;
        created = committed.created;
        committed.templates.forEach((t, k) => {
          const { index, face } = committed.kept[k];
          results[index] = { picture: pictures[index].name, status: 'added', template: t, face: { box: face.face.box, score: face.face.score, size: face.size, sharpness: face.sharpness } };
        });
      }
    }
    identityRecord ??= this.gallery.getIdentity(ref) ?? null;
    const all = results.map((r, i) => r ?? { picture: pictures[i].name, status: 'rejected' as const, code: 'BAD_REQUEST' as const, reason: 'not processed' });
    return {
      identity: identityRecord,
      created,
      added: all.flatMap((r) => (r.status === 'added' ? [r.template] : [])),
      rejected: all.flatMap((r) => (r.status === 'rejected' ? [{ picture: r.picture, code: r.code, reason: r.reason, ...(r.duplicateOf ? { duplicateOf: r.duplicateOf } : {}) }] : [])),
      results: all,
      timings,
    };
  }

  /**
   * One transaction for all accepted pictures. Another caller may have enrolled the same picture
   * for this identity while we were detecting: those are dropped as duplicates and the rest retried.
   */
  private async commit(identity: IdentityRef, templates: { index: number; template: NewTemplate; face: Accepted }[], reject: (i: number, code: ErrorCode, reason: string) => void) {
    let kept = templates;
    for (let attempt = 0; attempt < 3 && kept.length; attempt++) {
      try {
        return { ...(await this.writer.addTemplates(identity, kept.map((t) => t.template))), kept };
      } catch (err) {
        if (!isFacestreamError(err, 'DUPLICATE_TEMPLATE')) throw err;
        const have = this.gallery.pictureHashes(identity.id ?? identity.name!);
        const next = kept.filter((t) => !have.has(t.template.contentHash!));
        for (const t of kept) if (have.has(t.template.contentHash!)) reject(t.index, 'DUPLICATE_TEMPLATE', `${t.template.source}: this picture is already enrolled`);
        if (next.length === kept.length) throw err;
        kept = next;
      }
    }
    return undefined;
  }

  /**
   * Enrolls a face already detected in a picture or video frame (the server enrolls faces seen
   * live). Size, score and sharpness gates apply; the frame's pixels and the box make the content
   * hash, so enrolling the same face of the same frame twice is refused.
   */
  async enrollFace(identity: IdentityRef, image: RgbImage, face: DetectedFace, source: string): Promise<Template> {
    const gates = this.config.enrollment;
    const size = faceSize(face);
    if (size < gates.minFaceSize) throw new FacestreamError('FACE_TOO_SMALL', `${source}: face is ${Math.round(size)} px, under the ${gates.minFaceSize} px minimum`, { size });
    if (face.score < gates.minDetectionScore) {
      throw new FacestreamError('LOW_QUALITY', `${source}: detection score ${face.score.toFixed(3)} is under the ${gates.minDetectionScore} minimum`, { score: face.score });
    }
    try {
      this.sharpnessGate(image, face, source);
    } catch (err) {
      if (err instanceof Rejection) throw new FacestreamError(err.code, err.message, {});
      throw err;
    }
    const hash = crypto.createHash('sha256').update(image.data).update(face.box.map((v) => Math.round(v)).join(',')).digest('hex');
    const [embedding] = await this.analyzer.embedder.embedFaces([{ image, face }]);
    const crop = await canonicalCrop(image, face, this.config.crops);
    const { templates } = await this.writer.addTemplates(identity, [{ source, contentHash: hash, detectionScore: face.score, faceSize: size, embedding, crop }]);
    return templates[0];
  }
}
