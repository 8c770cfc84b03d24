import path from 'node:path';
import Database from 'better-sqlite3';
import { FacestreamError } from '../errors.js';
import type { Role } from './auth.js';
import { ensurePrivateDir, makePrivate } from '../private-files.js';

/**
 * The server's own durable state in its data directory (SQLite, WAL): stream definitions, so that
 * cameras come back after a restart, and the hashes of generated API keys. Camera URLs may hold
 * credentials, so the directory is created 0700 and the database 0600.
 */

export const SERVER_DB_FILE = 'server.db';

/** What a user asked for when creating a stream; runtime state lives in the stream manager. */
export interface StreamDefinition {
  id: string;
  name: string;
  /** The source URL exactly as given, credentials included; never leaves the server unredacted. */
  url: string;
  enabled: boolean;
  fps?: number;
  maxWidth?: number;
  maxHeight?: number;
  minFaceSize?: number;
  recognitionInterval?: number;
  /** Detection mode of this stream (default: config detector.mode). */
  detectionMode?: 'tracked' | 'full';
  /** Keyframe interval of this stream in ms (default: config detector.keyframeIntervalMs). */
  keyframeIntervalMs?: number;
  loop?: boolean;
  realtime?: boolean;
  rtspTransport?: 'tcp' | 'udp';
  createdAt: string;
  updatedAt: string;
}

const OPTION_KEYS = ['fps', 'maxWidth', 'maxHeight', 'minFaceSize', 'recognitionInterval', 'detectionMode', 'keyframeIntervalMs', 'loop', 'realtime', 'rtspTransport'] as const;
export type StreamOptionKey = (typeof OPTION_KEYS)[number];

interface StreamRow {
  id: string;
  name: string;
  url: string;
  enabled: number;
  options: string;
  created_at: string;
  updated_at: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS streams (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  url TEXT NOT NULL,
  enabled INTEGER NOT NULL,
  options TEXT NOT NULL,
  position INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS api_keys (
  hash BLOB PRIMARY KEY,
  role TEXT NOT NULL,
  created_at TEXT NOT NULL
) STRICT;
`;

export class ServerStore {
  private readonly db: Database.Database;

  constructor(readonly dir: string) {
    try {
      ensurePrivateDir(dir);
      const file = path.join(dir, SERVER_DB_FILE);
      this.db = new Database(file);
      makePrivate(file, `${file}-wal`, `${file}-shm`);
    } catch (err) {
      throw new FacestreamError('CONFIG_INVALID', `cannot open the server data directory ${dir}: ${(err as Error).message}`, { dir }, { cause: err });
    }
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(SCHEMA);
  }

  listStreams(): StreamDefinition[] {
    return (this.db.prepare('SELECT * FROM streams ORDER BY position, id').all() as StreamRow[]).map(fromRow);
  }

  getStream(id: string): StreamDefinition | undefined {
    const row = this.db.prepare('SELECT * FROM streams WHERE id = ?').get(id) as StreamRow | undefined;
    return row ? fromRow(row) : undefined;
  }

  insertStream(def: StreamDefinition): void {
    const position = (this.db.prepare('SELECT COALESCE(MAX(position), 0) + 1 AS p FROM streams').get() as { p: number }).p;
    try {
      this.db
        .prepare('INSERT INTO streams (id, name, url, enabled, options, position, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(def.id, def.name, def.url, def.enabled ? 1 : 0, JSON.stringify(streamOptionsOf(def)), position, def.createdAt, def.updatedAt);
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new FacestreamError('STREAM_EXISTS', `stream "${def.id}" already exists`, { streamId: def.id });
      throw err;
    }
  }

  updateStream(def: StreamDefinition): void {
    this.db
      .prepare('UPDATE streams SET name = ?, url = ?, enabled = ?, options = ?, updated_at = ? WHERE id = ?')
      .run(def.name, def.url, def.enabled ? 1 : 0, JSON.stringify(streamOptionsOf(def)), def.updatedAt, def.id);
  }

  deleteStream(id: string): boolean {
    return this.db.prepare('DELETE FROM streams WHERE id = ?').run(id).changes > 0;
  }

  apiKeys(): { hash: Buffer; role: Role }[] {
    return this.db.prepare('SELECT hash, role FROM api_keys').all() as { hash: Buffer; role: Role }[];
  }

  /** Replaces every stored key with this one (first start, or a key reset). */
  replaceApiKeys(hash: Buffer, role: Role): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM api_keys').run();
      this.db.prepare('INSERT INTO api_keys (hash, role, created_at) VALUES (?, ?, ?)').run(hash, role, new Date().toISOString());
    })();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/** The optional settings of a definition, as stored in one JSON column. */
export function streamOptionsOf(def: StreamDefinition): Partial<Pick<StreamDefinition, StreamOptionKey>> {
  const out: Record<string, unknown> = {};
  for (const k of OPTION_KEYS) if (def[k] !== undefined) out[k] = def[k];
  return out;
}

function fromRow(row: StreamRow): StreamDefinition {
  return streamDefinition({ ...row, enabled: row.enabled === 1, options: JSON.parse(row.options) as Record<string, unknown> });
}

/** A definition from its stored columns (SQLite's or PostgreSQL's). */
export function streamDefinition(row: { id: string; name: string; url: string; enabled: boolean; options: Record<string, unknown>; created_at: string; updated_at: string }): StreamDefinition {
  return { ...(row.options as Partial<StreamDefinition>), id: row.id, name: row.name, url: row.url, enabled: row.enabled, createdAt: row.created_at, updatedAt: row.updated_at };
}
