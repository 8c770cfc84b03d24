import pg from 'pg';
import { FacestreamError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { CHANNEL, type ChangeRow, type PostgresDatabase } from './database.js';

/** How many changes one read takes. */
const PAGE = 500;
/** Reconnection backoff: first wait and ceiling (ms); the wait doubles after each failed attempt. */
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5000;
/**
 * The longest the LISTEN connection's liveness check (every timeouts.heartbeatMs) may take to
 * answer: a connection cut without a reset (a network partition) otherwise looks alive until TCP
 * gives up. Each check is also a catch-up read, which bounds the delay of a change should a
 * notification ever be lost.
 */
const HEARTBEAT_TIMEOUT_MAX_MS = 5_000;

export interface ChangeFeedOptions {
  db: PostgresDatabase;
  logger: Logger;
  /** The sequence number already applied (the replica's). */
  from: number;
  /** Applies a page of changes, in order; `through` is the last one's sequence number. Must be idempotent. */
  apply(changes: ChangeRow[], through: number): Promise<void> | void;
}

/**
 * Follows the change log of the cluster's PostgreSQL: a dedicated connection LISTENs on the
 * change channel, and every notification (and every (re)connection: the catch-up read) reads
 * the changes after the last one applied and hands them, in order, to `apply`. Reads run one at
 * a time; a notification during a read runs another after it.
 *
 * When the connection is lost (PostgreSQL restarted, network cut) it reconnects by itself with
 * bounded exponential backoff (BACKOFF_MIN_MS doubling up to BACKOFF_MAX_MS) and catches up;
 * meanwhile what was applied stays (the replica keeps answering).
 */
export class ChangeFeed {
  private appliedSeq: number;
  private listener: pg.Client | undefined;
  private isConnected = false;
  private closed = false;
  private reading: Promise<void> | undefined;
  private again = false;
  private backoff = BACKOFF_MIN_MS;
  private retryWait = BACKOFF_MIN_MS;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly waiters: { seq: number; resolve: () => void }[] = [];

  constructor(private readonly opts: ChangeFeedOptions) {
    this.appliedSeq = opts.from;
  }

  /** The last sequence number applied. */
  get applied(): number {
    return this.appliedSeq;
  }

  /** Whether the LISTEN connection is up. */
  get connected(): boolean {
    return this.isConnected;
  }

  /** Connects, listens and catches up; rejects (STORE_UNAVAILABLE) when PostgreSQL cannot be reached now. */
  async start(): Promise<void> {
    await this.connect();
    await this.read();
    this.heartbeat = setInterval(() => this.check(), this.opts.db.timeouts.heartbeatMs);
    this.heartbeat.unref();
  }

  private check(): void {
    const client = this.listener;
    if (!client) return;
    client.query('SELECT 1').then(
      () => this.request(),
      (err: Error) => this.lost(client, err),
    );
  }

  private async connect(): Promise<void> {
    const { connectMs, queryMs } = this.opts.db.timeouts;
    const client = new pg.Client({ connectionString: this.opts.db.url, connectionTimeoutMillis: connectMs, keepAlive: true, query_timeout: Math.min(queryMs, HEARTBEAT_TIMEOUT_MAX_MS) });
    client.on('notification', (msg) => {
      if (msg.channel === CHANNEL) this.request();
    });
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, new Error('connection ended')));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      client.removeAllListeners();
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
      throw this.opts.db.unavailable('following the change log', err);
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
    this.isConnected = true;
    this.backoff = BACKOFF_MIN_MS;
  }

  private lost(client: pg.Client, err: Error): void {
    if (this.listener !== client) return;
    this.listener = undefined;
    this.isConnected = false;
    client.removeAllListeners();
    client.on('error', () => undefined);
    void client.end().catch(() => undefined);
    if (this.closed) return;
    this.opts.logger.warn({ err: err.message, store: this.opts.db.where }, 'lost the connection to PostgreSQL; reconnecting (reads keep working from the replica)');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect().then(
        () => {
          this.opts.logger.info({ store: this.opts.db.where, applied: this.appliedSeq }, 'reconnected to PostgreSQL; catching up');
          this.request();
        },
        () => this.scheduleReconnect(),
      );
    }, wait);
    this.reconnectTimer.unref();
  }

  /** Asks for a read of new changes (coalesced with one running). */
  request(): void {
    if (this.closed) return;
    if (this.reading) {
      this.again = true;
      return;
    }
    this.read().then(
      () => (this.retryWait = BACKOFF_MIN_MS),
      (err: unknown) => {
        // Retried with the reconnection backoff: a change that cannot be applied must not flood the log.
        const wait = this.retryWait;
        this.retryWait = Math.min(this.retryWait * 2, BACKOFF_MAX_MS);
        this.opts.logger.warn({ err: (err as Error).message, applied: this.appliedSeq, retryInMs: wait }, 'applying the change log to this node\'s replica failed; retrying');
        if (!this.retryTimer && !this.closed) {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            this.request();
          }, wait);
          this.retryTimer.unref();
        }
      },
    );
  }

  private read(): Promise<void> {
    this.reading ??= (async () => {
      try {
        do {
          this.again = false;
          for (;;) {
            const changes = await this.opts.db.changesAfter(this.appliedSeq, PAGE);
            if (changes.length === 0) break;
            const through = changes[changes.length - 1].seq;
            await this.opts.apply(changes, through);
            this.appliedSeq = through;
            this.wake();
            if (changes.length < PAGE) break;
          }
        } while (this.again && !this.closed);
      } finally {
        this.reading = undefined;
      }
    })();
    return this.reading;
  }

  private wake(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.waiters[i].seq <= this.appliedSeq) this.waiters.splice(i, 1)[0].resolve();
    }
  }

  /**
   * Resolves once change `seq` is applied (a read is started now rather than waiting for the
   * notification); rejects with STORE_UNAVAILABLE after `timeoutMs`.
   */
  waitFor(seq: number, timeoutMs: number, what: string): Promise<void> {
    if (seq <= this.appliedSeq) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        seq,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(
          new FacestreamError(
            'STORE_UNAVAILABLE',
            `${what}: committed in the cluster's PostgreSQL (${this.opts.db.where}) as change ${seq}, but this node's replica has not applied it within ${timeoutMs} ms ` +
              `(applied: ${this.appliedSeq}); it will once PostgreSQL can be read again`,
            { store: this.opts.db.where, seq, applied: this.appliedSeq },
          ),
        );
      }, timeoutMs);
      this.waiters.push(waiter);
      this.request();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeat);
    await this.reading?.catch(() => undefined);
    const client = this.listener;
    this.listener = undefined;
    this.isConnected = false;
    if (client) {
      client.removeAllListeners();
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
    }
  }
}
