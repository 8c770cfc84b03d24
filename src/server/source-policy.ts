import fs from 'node:fs';
import path from 'node:path';
import type { IngestConfig } from '../config/sections/ingest.js';
import type { SourcesConfig } from '../config/sections/server.js';
import { FacestreamError } from '../errors.js';
import { resolveSource, type ResolvedSource, type SourceSpec } from '../ingest/source.js';

/**
 * What an API user may point the server at. A stream source is a URL the server opens with
 * ffmpeg, so without limits an API key would be a key to every file the server can read. Files
 * must resolve (symlinks followed) inside an allowed directory; lavfi graphs may only use
 * generator and drawing filters, none that open files; devices and network sources can be
 * switched off.
 */

/** lavfi filters allowed in API-created sources: generators and pixel-only filters. */
const LAVFI_FILTERS = new Set([
  'testsrc', 'testsrc2', 'smptebars', 'smptehdbars', 'rgbtestsrc', 'yuvtestsrc', 'color', 'colorspectrum', 'mandelbrot', 'life', 'cellauto',
  'pal75bars', 'pal100bars', 'allrgb', 'allyuv', 'gradients', 'nullsrc', 'sierpinski', 'zoneplate',
  'scale', 'fps', 'format', 'hflip', 'vflip', 'transpose', 'rotate', 'crop', 'pad', 'setpts', 'trim', 'drawbox', 'drawgrid', 'noise', 'boxblur', 'eq', 'hue', 'negate', 'null',
]);

function refuse(message: string, spec: Pick<SourceSpec, 'id'>): FacestreamError {
  return new FacestreamError('SOURCE_NOT_ALLOWED', message, { streamId: spec.id });
}

function isInside(dir: string, file: string): boolean {
  const rel = path.relative(dir, file);
  return rel === '' ? false : !rel.startsWith('..') && !path.isAbsolute(rel);
}

function realDirs(dirs: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of dirs) {
    try {
      out.push(fs.realpathSync(path.resolve(d)));
    } catch {
      /* an allowed directory that does not exist allows nothing */
    }
  }
  return out;
}

export interface CheckedSource {
  resolved: ResolvedSource;
  /**
   * The URL to give ffmpeg: for files, the real path that was checked (so a symlink swapped
   * after the check cannot redirect ffmpeg); otherwise the URL as given.
   */
  url: string;
}

/** Checks a source against the policy; throws SOURCE_NOT_ALLOWED, FILE_NOT_FOUND or BAD_REQUEST. */
export function checkSource(spec: SourceSpec, policy: SourcesConfig, ingest: IngestConfig): CheckedSource {
  const resolved = resolveSource(spec, ingest);
  switch (resolved.kind) {
    case 'file': {
      const allowed = realDirs(policy.allowedDirs);
      if (allowed.length === 0) throw refuse('file sources are not allowed on this server (server.sources.allowedDirs is empty)', spec);
      const lexical = path.resolve(resolved.input);
      let real: string;
      try {
        real = fs.realpathSync(lexical);
      } catch {
        // Only say "not found" for paths the caller may use; elsewhere, existence is not revealed.
        if (allowed.some((d) => isInside(d, lexical))) throw new FacestreamError('FILE_NOT_FOUND', `source ${spec.id}: no such file ${path.basename(lexical)}`, { streamId: spec.id });
        throw refuse(`source ${spec.id}: files may only be read from the allowed directories`, spec);
      }
      if (!allowed.some((d) => isInside(d, real))) throw refuse(`source ${spec.id}: files may only be read from the allowed directories`, spec);
      if (!fs.statSync(real).isFile()) throw new FacestreamError('NOT_A_FILE', `source ${spec.id}: not a regular file`, { streamId: spec.id });
      return { resolved, url: real };
    }
    case 'lavfi': {
      if (!policy.allowLavfi) throw refuse('lavfi sources are not allowed on this server (server.sources.allowLavfi)', spec);
      const graph = resolved.input;
      if (!/^[A-Za-z0-9_=:.,x#-]+$/.test(graph)) throw refuse(`source ${spec.id}: a lavfi graph may only hold letters, digits and = : . , x # - _`, spec);
      for (const filter of graph.split(',')) {
        const name = filter.split('=')[0];
        if (!LAVFI_FILTERS.has(name)) throw refuse(`source ${spec.id}: lavfi filter "${name}" is not allowed (generators and simple pixel filters only)`, spec);
      }
      return { resolved, url: spec.url };
    }
    case 'device':
      if (!policy.allowDevices) throw refuse('device sources are not allowed on this server (server.sources.allowDevices)', spec);
      return { resolved, url: spec.url };
    case 'rtsp':
    case 'http':
      if (!policy.allowNetwork) throw refuse('network sources are not allowed on this server (server.sources.allowNetwork)', spec);
      return { resolved, url: spec.url };
  }
}
