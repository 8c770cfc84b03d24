import crypto from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { FacestreamError } from '../errors.js';

/** What a key may do: 'write' keys may do everything, 'read' keys only what changes nothing. */
export type Role = 'read' | 'write';

/** What a route needs: no key, a read key (or better), a write key. */
export type Access = 'public' | 'read' | 'write';

export interface KeyEntry {
  /** SHA-256 of the key; the key itself is never kept. */
  hash: Buffer;
  role: Role;
}

/** Prefix of generated keys, so secret scanners and people recognise one. */
export const KEY_PREFIX = 'fsk_';
/** WebSocket subprotocol that carries the key from browsers, which cannot set an Authorization header. */
export const WS_KEY_PROTOCOL_PREFIX = 'facestream.key.';
export const WS_PROTOCOL = 'facestream.v1';

export function hashKey(key: string): Buffer {
  return crypto.createHash('sha256').update(key, 'utf8').digest();
}

export function generateKey(): string {
  return `${KEY_PREFIX}${crypto.randomBytes(32).toString('base64url')}`;
}

/** A configured key: the key itself, or "sha256:<hex>" of it. */
export function parseConfiguredKey(value: string, role: Role): KeyEntry {
  const m = /^sha256:([0-9a-f]{64})$/i.exec(value);
  if (m) return { hash: Buffer.from(m[1], 'hex'), role };
  if (value.startsWith('sha256:')) throw new FacestreamError('CONFIG_INVALID', 'a "sha256:" API key must be followed by 64 hex digits', {});
  return { hash: hashKey(value), role };
}

/**
 * The set of API keys. Checking hashes the presented key and compares it with every stored hash
 * in constant time (no early exit), so timing says nothing about how close a guess was.
 */
export class ApiKeys {
  constructor(private readonly entries: readonly KeyEntry[]) {}

  get size(): number {
    return this.entries.length;
  }

  /** The role of a presented key, or null when it is no key of ours. */
  check(presented: string | undefined): Role | null {
    if (!presented) return null;
    const h = hashKey(presented);
    let role: Role | null = null;
    for (const e of this.entries) {
      if (crypto.timingSafeEqual(h, e.hash) && (role === null || e.role === 'write')) role = e.role;
    }
    return role;
  }

  /** A stable, non-secret label for a key (rate limiting buckets, logs). */
  static fingerprint(presented: string): string {
    return hashKey(presented).subarray(0, 6).toString('hex');
  }
}

/** The key a request presents: `Authorization: Bearer <key>`, else the WebSocket subprotocol. */
export function presentedKey(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m) return m[1];
  }
  const protocols = headers['sec-websocket-protocol'];
  if (typeof protocols === 'string') {
    for (const p of protocols.split(',')) {
      const t = p.trim();
      if (t.startsWith(WS_KEY_PROTOCOL_PREFIX)) return t.slice(WS_KEY_PROTOCOL_PREFIX.length);
    }
  }
  return undefined;
}

export function allows(role: Role | null, access: Access): boolean {
  if (access === 'public') return true;
  if (role === null) return false;
  return access === 'read' || role === 'write';
}
