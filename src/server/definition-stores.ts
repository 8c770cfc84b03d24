import type { Role } from './auth.js';
import type { ServerStore, StreamDefinition } from './store.js';

/**
 * Where stream definitions live: the server's own SQLite (ServerStore, one process) or
 * PostgreSQL (src/cluster/postgres/definitions.ts, shared by every node of a cluster).
 * `onChange` fires with a stream id for every change, made by this node or (PostgreSQL) any other.
 */
export interface StreamDefinitionStore {
  list(): Promise<StreamDefinition[]>;
  get(id: string): Promise<StreamDefinition | undefined>;
  /** Throws FacestreamError STREAM_EXISTS when the id is taken. */
  insert(def: StreamDefinition): Promise<void>;
  update(def: StreamDefinition): Promise<void>;
  /** Whether a definition was removed. */
  delete(id: string): Promise<boolean>;
  onChange(listener: (id: string) => void): () => void;
}

/** The hashes of generated API keys (SQLite or PostgreSQL); `onChange` fires when they are replaced. */
export interface ApiKeyStore {
  list(): Promise<{ hash: Buffer; role: Role }[]>;
  /** Replaces every stored key with this one (first start, or a key reset). */
  replace(hash: Buffer, role: Role): Promise<void>;
  onChange(listener: () => void): () => void;
}

/** Listeners of one kind of change; a listener that throws does not stop the others. */
export class ChangeListeners<A extends unknown[]> {
  private readonly listeners = new Set<(...args: A) => void>();

  add(listener: (...args: A) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  fire(...args: A): void {
    for (const l of this.listeners) {
      try {
        l(...args);
      } catch {
        // a listener's fault is its own; the store's write has happened
      }
    }
  }
}

/** Stream definitions in the server's SQLite (embedded mode). */
export class SqliteStreamDefinitionStore implements StreamDefinitionStore {
  private readonly changes = new ChangeListeners<[string]>();

  constructor(private readonly store: ServerStore) {}

  async list(): Promise<StreamDefinition[]> {
    return this.store.listStreams();
  }

  async get(id: string): Promise<StreamDefinition | undefined> {
    return this.store.getStream(id);
  }

  async insert(def: StreamDefinition): Promise<void> {
    this.store.insertStream(def);
    this.changes.fire(def.id);
  }

  async update(def: StreamDefinition): Promise<void> {
    this.store.updateStream(def);
    this.changes.fire(def.id);
  }

  async delete(id: string): Promise<boolean> {
    const removed = this.store.deleteStream(id);
    if (removed) this.changes.fire(id);
    return removed;
  }

  onChange(listener: (id: string) => void): () => void {
    return this.changes.add(listener);
  }
}

/** API key hashes in the server's SQLite (embedded mode). */
export class SqliteApiKeyStore implements ApiKeyStore {
  private readonly changes = new ChangeListeners<[]>();

  constructor(private readonly store: ServerStore) {}

  async list(): Promise<{ hash: Buffer; role: Role }[]> {
    return this.store.apiKeys();
  }

  async replace(hash: Buffer, role: Role): Promise<void> {
    this.store.replaceApiKeys(hash, role);
    this.changes.fire();
  }

  onChange(listener: () => void): () => void {
    return this.changes.add(listener);
  }
}
