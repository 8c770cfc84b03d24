import pg from 'pg';
import { FacestreamError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { redactText } from '../../redact.js';
import type { StoreTimeouts } from '../stores.js';

/**
 * The connection pool to the cluster's PostgreSQL, its write transactions and what its errors
 * mean to a user. Every write that other nodes must learn of runs through `write`: it takes one
 * transaction-level advisory lock, so change sequence numbers are assigned in commit order (a
 * replica that has read change N has seen every change before N), appends to the change log and
 * notifies listeners in the same transaction (NOTIFY is delivered on commit).
 */

/** Schema holding facestream's tables in the given database. */
export const SCHEMA = 'facestream';
/** LISTEN/NOTIFY channel of the change log; the payload is the newest sequence number. */
export const CHANNEL = 'facestream_changes';
/** Advisory lock key serialising change-log writers (an arbitrary constant: "fstr" in ASCII). */
const WRITE_LOCK = 0x66737472;

/** What a change-log row refers to. */
export type ChangeKind = 'identity' | 'template' | 'stream' | 'api_keys';

export interface ChangeRow {
  seq: number;
  kind: ChangeKind;
  ref: string;
}

/** A transaction of `write`: run statements, and log each change other nodes must learn of. */
export interface WriteTransaction {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  logChange(kind: ChangeKind, ref: string | number): Promise<void>;
}

const CONNECTION_ERRORS = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENOTFOUND|Connection terminated|connection error|timeout exceeded when trying to connect|Query read timeout|not queryable|Client was closed/i;

/**
 * Whether an error means PostgreSQL cannot be reached (refused, cut, shutting down, starting up,
 * out of connections) rather than a fault of the statement.
 */
export function isUnreachable(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && (/^(08|57P)/.test(code) || code === '53300')) return true;
  if (err instanceof pg.DatabaseError) return false;
  return CONNECTION_ERRORS.test(`${typeof code === 'string' ? code : ''} ${(err as Error | undefined)?.message ?? ''}`);
}

export class PostgresDatabase {
  readonly pool: pg.Pool;
  /** The URL without credentials, for messages. */
  readonly where: string;

  constructor(
    readonly url: string,
    private readonly logger: Logger,
    readonly timeouts: StoreTimeouts,
    opts: { maxConnections?: number } = {},
  ) {
    this.where = redactText(url);
    this.pool = new pg.Pool({
      connectionString: url,
      max: opts.maxConnections ?? 4,
      connectionTimeoutMillis: timeouts.connectMs,
      query_timeout: timeouts.queryMs,
      keepAlive: true,
      idleTimeoutMillis: 10_000,
    });
    // An idle pooled connection cut by a restart of PostgreSQL emits here; the pool replaces it.
    this.pool.on('error', (err) => this.logger.debug({ err: err.message }, 'idle PostgreSQL connection lost'));
  }

  /** The error a user gets when PostgreSQL cannot be reached: STORE_UNAVAILABLE (503), saying what was not done. */
  unavailable(what: string, err: unknown): FacestreamError {
    return new FacestreamError(
      'STORE_UNAVAILABLE',
      `the cluster's PostgreSQL (${this.where}) cannot be reached (${redactText((err as Error).message ?? String(err))}): ${what} failed. ` +
        `Reads and searches keep working from this node's replica; try again when PostgreSQL is back`,
      { store: this.where },
      { cause: err },
    );
  }

  /**
   * A pooled connection (release it); STORE_UNAVAILABLE when PostgreSQL cannot be reached,
   * CONFIG_INVALID when it answers but refuses this URL (no such database or role, wrong password):
   * waiting would not help, the URL must change.
   */
  async connect(what: string): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (err) {
      if (!isUnreachable(err) && err instanceof pg.DatabaseError) {
        throw new FacestreamError('CONFIG_INVALID', `the cluster's PostgreSQL (${this.where}) refused the connection: ${redactText(err.message)} (cluster.postgres): ${what} failed`, { store: this.where }, { cause: err });
      }
      throw this.unavailable(what, err);
    }
  }

  /** A read; connection failures become STORE_UNAVAILABLE. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(what: string, text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, values);
    } catch (err) {
      throw isUnreachable(err) ? this.unavailable(what, err) : err;
    }
  }

  /**
   * Runs `fn` in one transaction that may log changes; returns its result and the sequence
   * number of the last change logged (0: none). Connection failures become STORE_UNAVAILABLE
   * (the transaction did not commit, or, when the connection broke during COMMIT, its outcome
   * is unknown: the change feed tells every replica either way).
   */
  async write<T>(what: string, fn: (tx: WriteTransaction) => Promise<T>): Promise<{ result: T; seq: number }> {
    const client = await this.connect(what);
    let seq = 0;
    let broken: unknown;
    const onError = (err: unknown) => (broken = err);
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [WRITE_LOCK]);
      const result = await fn({
        query: (text, values) => client.query(text, values),
        logChange: async (kind, ref) => {
          const r = await client.query<{ seq: string }>(`INSERT INTO ${SCHEMA}.changes (kind, ref) VALUES ($1, $2) RETURNING seq`, [kind, String(ref)]);
          seq = Number(r.rows[0].seq);
        },
      });
      if (seq > 0) await client.query('SELECT pg_notify($1, $2)', [CHANNEL, String(seq)]);
      await client.query('COMMIT');
      return { result, seq };
    } catch (err) {
      broken ??= isUnreachable(err) ? err : undefined;
      if (!broken) await client.query('ROLLBACK').catch(() => undefined);
      throw isUnreachable(err) ? this.unavailable(what, err) : err;
    } finally {
      client.off('error', onError);
      client.release(broken ? (broken as Error) : undefined);
    }
  }

  /** The newest change sequence number (0: none yet). */
  async lastChange(): Promise<number> {
    const r = await this.query<{ seq: string }>('reading the change log', `SELECT coalesce(max(seq), 0) AS seq FROM ${SCHEMA}.changes`);
    return Number(r.rows[0].seq);
  }

  /** The oldest change still in the log (0: the log is empty); a replica behind it cannot catch up. */
  async firstChange(): Promise<number> {
    const r = await this.query<{ seq: string }>('reading the change log', `SELECT coalesce(min(seq), 0) AS seq FROM ${SCHEMA}.changes`);
    return Number(r.rows[0].seq);
  }

  /** Up to `limit` changes after `seq`, in order. */
  async changesAfter(seq: number, limit: number): Promise<ChangeRow[]> {
    const r = await this.query<{ seq: string; kind: ChangeKind; ref: string }>(
      'reading the change log',
      `SELECT seq, kind, ref FROM ${SCHEMA}.changes WHERE seq > $1 ORDER BY seq LIMIT $2`,
      [seq, limit],
    );
    return r.rows.map((row) => ({ seq: Number(row.seq), kind: row.kind, ref: row.ref }));
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }
}
