import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { IngestConfig } from '../config/sections/ingest.js';
import type { SourcesConfig } from '../config/sections/server.js';
import { FacestreamError } from '../errors.js';
import { resolveSource, type ResolvedSource, type SourceSpec } from '../ingest/source.js';
import { urlHost } from '../redact.js';

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
    case 'device': {
      if (!policy.allowDevices) throw refuse('device sources are not allowed on this server (server.sources.allowDevices)', spec);
      if (resolved.format !== 'v4l2') {
        // avfoundation / dshow name devices by index or name, never by path.
        if (/[/\\]/.test(resolved.input)) throw refuse(`source ${spec.id}: ${resolved.format} devices are named, not given by path`, spec);
        return { resolved, url: spec.url };
      }
      const real = checkDevicePath(resolved.input, policy, spec);
      return { resolved: { ...resolved, input: real }, url: spec.url.startsWith('v4l2:') ? `v4l2:${real}` : real };
    }
    case 'rtsp':
    case 'http':
      if (!policy.allowNetwork) throw refuse('network sources are not allowed on this server (server.sources.allowNetwork)', spec);
      checkHost(spec.url, policy, spec);
      return { resolved, url: spec.url };
  }
}

/** `*` matches within one path segment, `?` one character; everything else literally. */
function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]');
  return new RegExp(`^${body}$`);
}

/**
 * A v4l2 device path under server.sources.allowedDevices: the path as given and, when it exists,
 * the path its symlinks lead to (which must be a character device). A path outside the list is
 * refused with the same words whether or not it exists. Returns the path to open (the real one).
 */
function checkDevicePath(input: string, policy: SourcesConfig, spec: Pick<SourceSpec, 'id'>): string {
  const patterns = policy.allowedDevices.map(globToRegExp);
  const allowed = (p: string) => patterns.some((re) => re.test(p));
  const notAllowed = () => refuse(`source ${spec.id}: devices may only be ${policy.allowedDevices.join(', ') || '(none)'} (server.sources.allowedDevices)`, spec);
  const lexical = path.resolve(input);
  if (!allowed(lexical)) throw notAllowed();
  let real: string;
  try {
    real = fs.realpathSync(lexical);
  } catch {
    return lexical; // an allowed name that is not plugged in: ffmpeg reports NOT_FOUND, and retries
  }
  if (!allowed(real)) throw notAllowed();
  if (!fs.statSync(real).isCharacterDevice()) throw refuse(`source ${spec.id}: ${lexical} is not a capture device`, spec);
  return real;
}

/** A network source's host against server.sources.allowedHosts (empty: any). */
function checkHost(url: string, policy: SourcesConfig, spec: Pick<SourceSpec, 'id'>): void {
  if (policy.allowedHosts.length === 0) return;
  const host = urlHost(url);
  if (!host || !hostAllowed(host, policy.allowedHosts)) {
    throw refuse(`source ${spec.id}: host ${host ?? '(none)'} is not in server.sources.allowedHosts`, spec);
  }
}

/** Whether `host` (a name or an IP address, no brackets) matches one of `entries` (names, *.suffix, addresses, CIDR ranges). */
export function hostAllowed(host: string, entries: readonly string[]): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  const family = net.isIP(h);
  for (const raw of entries) {
    const e = raw.trim().toLowerCase();
    if (e.includes('/')) {
      const [addr, bits] = e.split('/');
      const fam = net.isIP(addr);
      if (!family || !fam || family !== fam) continue;
      const list = new net.BlockList();
      const prefix = Number(bits);
      if (!Number.isInteger(prefix) || prefix < 0 || prefix > (fam === 6 ? 128 : 32)) continue;
      list.addSubnet(addr, prefix, fam === 6 ? 'ipv6' : 'ipv4');
      if (list.check(h, family === 6 ? 'ipv6' : 'ipv4')) return true;
    } else if (e.startsWith('*.')) {
      if (!family && h.endsWith(e.slice(1))) return true;
    } else if (family && net.isIP(e)) {
      const list = new net.BlockList();
      list.addAddress(e, net.isIP(e) === 6 ? 'ipv6' : 'ipv4');
      if (list.check(h, family === 6 ? 'ipv6' : 'ipv4')) return true;
    } else if (e === h) return true;
  }
  return false;
}
