import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import type { ClusterStores } from '../../src/cluster/stores.js';
import type { Config } from '../../src/config/schema.js';
import type { Logger } from '../../src/log.js';
import { FaceAnalyzer } from '../../src/pipeline/analyzer.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { testConfig, testRuntime } from './models.js';
import { DATA } from './paths.js';

export const WRITE_KEY = 'test-write-key-0123456789abcdef';
export const READ_KEY = 'test-read-key-0123456789abcdef';

/** Loads the models once per test file; every server of the file shares them. */
export async function sharedAnalyzer(config: Config = testConfig()): Promise<FaceAnalyzer> {
  return FaceAnalyzer.create(testRuntime(config), config);
}

/** A logger whose every line is kept (to check that no secret is ever logged). */
export function capturingLogger(level: 'debug' | 'info' | 'warn' = 'debug'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { logger: pino({ level, base: undefined }, sink), lines };
}

export interface TestServer extends RunningServer {
  dir: string;
  /** Authorization header for the write key. */
  auth: { authorization: string };
  readAuth: { authorization: string };
  wsUrl: string;
}

export interface TestServerOptions {
  analyzer: FaceAnalyzer;
  /** Reuse a directory (restart tests); default a new temporary one. */
  dir?: string;
  listen?: boolean;
  logger?: Logger;
  configure?: (config: Config) => void;
  /** Cluster mode: the node's stores on PostgreSQL (the caller closes them). */
  stores?: ClusterStores;
}

/** A real server on 127.0.0.1 (random port) with its own gallery and data directory, test keys, and the shared video folder allowed. */
export async function startTestServer(opts: TestServerOptions): Promise<TestServer> {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-server-'));
  const config = testConfig();
  config.gallery = { ...config.gallery, dir: path.join(dir, 'gallery') };
  config.server = {
    ...config.server,
    host: '127.0.0.1',
    port: 0,
    dataDir: path.join(dir, 'data'),
    auth: { ...config.server.auth, keys: [WRITE_KEY], readOnlyKeys: [READ_KEY] },
    sources: { ...config.server.sources, allowedDirs: [path.join(DATA, 'video')], allowLavfi: true },
  };
  opts.configure?.(config);
  const server = await startServer(config, { analyzer: opts.analyzer, listen: opts.listen, stores: opts.stores, logger: opts.logger ?? pino({ level: 'warn', base: undefined }) });
  return {
    ...server,
    close: () => server.close(),
    dir,
    auth: { authorization: `Bearer ${WRITE_KEY}` },
    readAuth: { authorization: `Bearer ${READ_KEY}` },
    wsUrl: server.url.replace(/^http/, 'ws'),
  };
}

/** A WebSocket client that records every message. */
export class TestClient {
  readonly ws: WebSocket;
  readonly texts: Record<string, unknown>[] = [];
  readonly binaries: Buffer[] = [];
  readonly receivedAt: number[] = [];
  closeCode: number | undefined;
  private waiters: (() => void)[] = [];

  constructor(url: string, opts: { headers?: Record<string, string>; protocols?: string[] } = {}) {
    this.ws = new WebSocket(url, opts.protocols ?? [], { headers: opts.headers });
    this.ws.on('message', (data, isBinary) => {
      this.receivedAt.push(Date.now());
      if (isBinary) this.binaries.push(data as Buffer);
      else this.texts.push(JSON.parse((data as Buffer).toString('utf8')) as Record<string, unknown>);
      for (const w of this.waiters.splice(0)) w();
    });
    this.ws.on('close', (code) => {
      this.closeCode = code;
      for (const w of this.waiters.splice(0)) w();
    });
    this.ws.on('error', () => {});
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState === WebSocket.OPEN) return resolve();
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
      this.ws.once('error', reject);
    });
  }

  of(type: string): Record<string, unknown>[] {
    return this.texts.filter((m) => m.type === type);
  }

  /** Waits until `pred` holds (checked on every message), or fails after timeoutMs. */
  async until<T>(pred: () => T | undefined | false, timeoutMs = 20_000, what = 'condition'): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = pred();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  send(msg: unknown): void {
    this.ws.send(JSON.stringify(msg));
  }

  close(): void {
    this.ws.close();
  }
}

export async function waitFor<T>(fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
