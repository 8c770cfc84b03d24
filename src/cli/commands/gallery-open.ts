import fs from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { FacestreamError } from '../../errors.js';
import { Gallery, readGalleryInfo } from '../../index/gallery.js';
import type { FaceAnalyzer } from '../../pipeline/analyzer.js';
import { contextFor, type CliContext } from '../context.js';

/** Shared by every command that works on a gallery: where it is and how it is opened. */

export interface GalleryFlags {
  gallery?: string;
}

export function withGalleryOption(cmd: Command): Command {
  return cmd.option('--gallery <dir>', 'gallery directory (default: config gallery.dir, env FACESTREAM_GALLERY, else ./gallery)');
}

/** A CLI context whose config carries `--gallery` (and any other overrides). */
export function galleryContext(cmd: Command, flags: GalleryFlags, overrides: Record<string, unknown> = {}): CliContext {
  const gallery = { ...((overrides.gallery as object | undefined) ?? {}), ...(flags.gallery ? { dir: flags.gallery } : {}) };
  return contextFor(cmd, { ...overrides, gallery });
}

export function galleryDir(ctx: CliContext): string {
  return path.resolve(ctx.config.gallery.dir);
}

/** Opens the gallery for the configured embedding model (enroll, identify, verify). */
export function openForAnalyzer(ctx: CliContext, analyzer: FaceAnalyzer, readOnly: boolean, dir = galleryDir(ctx)): Promise<Gallery> {
  return Gallery.open(dir, {
    modelId: analyzer.embedder.modelId,
    dimension: analyzer.embedder.dimension,
    config: ctx.config.gallery,
    logger: ctx.logger,
    defaultMinSimilarity: ctx.config.embedding.minSimilarity ?? analyzer.embedder.defaultMinSimilarity,
    readOnly,
  });
}

/**
 * The gallery `run` recognises with: the one named by --gallery (which must exist), else the
 * configured gallery directory when it holds a gallery, else none (faces are tracked, not named).
 * Opened read-only: a running server may own the gallery.
 */
export async function openIfPresent(ctx: CliContext, analyzer: FaceAnalyzer, flag?: string): Promise<Gallery | undefined> {
  const dir = path.resolve(flag ?? ctx.config.gallery.dir);
  if (!fs.existsSync(dir) || fs.readdirSync(dir).length === 0) {
    if (flag) throw new FacestreamError('FILE_NOT_FOUND', `gallery ${dir} does not exist; enroll people first with \`facestream enroll --gallery ${flag} <name> <pictures...>\``, { dir });
    return undefined;
  }
  return openForAnalyzer(ctx, analyzer, true, dir);
}

/** Opens the gallery with whatever model it holds, without loading any model (management commands). */
export function openAsStored(ctx: CliContext, readOnly: boolean): Promise<Gallery> {
  const dir = galleryDir(ctx);
  const info = readGalleryInfo(dir);
  return Gallery.open(dir, { modelId: info.modelId, dimension: info.dimension, config: ctx.config.gallery, logger: ctx.logger, readOnly });
}

export function parseBox(v: string): [number, number, number, number] {
  const parts = v.split(',').map(Number);
  if (parts.length !== 4 || parts.some((n) => !Number.isFinite(n)) || parts[2] <= parts[0] || parts[3] <= parts[1]) {
    throw new InvalidArgumentError(`--box must be x1,y1,x2,y2 with x2 > x1 and y2 > y1, got "${v}"`);
  }
  return parts as [number, number, number, number];
}

export function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}
