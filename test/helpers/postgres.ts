import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './mosquitto.js';

/** Debian's PostgreSQL server binaries (initdb, postgres), newest version installed. */
export function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (fs.existsSync(path.join(root, v, 'bin', 'postgres'))) return path.join(root, v, 'bin');
  throw new Error(`no PostgreSQL server under ${root}: install Debian's postgresql package (scripts/system-packages.txt)`);
}

export interface PostgresServer {
  /** postgres://facestream@127.0.0.1:PORT/facestream (trust authentication). */
  url: string;
  port: number;
  /** A URL for another, new database on the same server. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server (fast shutdown: sessions are cut) and starts it again on the same port and data. */
  restart(): Promise<void>;
  /** Stops the server only (restart() is start again); for tests of an outage. */
  halt(): Promise<void>;
  /** Starts a halted server again. */
  resume(): Promise<void>;
  /**
   * Suspends every process of the server (SIGSTOP) without closing a connection: what clients see
   * of a network partition (nothing answers, nothing is reset). thaw() resumes them.
   */
  freeze(): void;
  thaw(): void;
  /** Stops the server and removes its data. */
  stop(): Promise<void>;
}

const USER = 'facestream';

/**
 * A real PostgreSQL on 127.0.0.1 (a free port) in a new temporary directory, with a superuser
 * `facestream`, a database `facestream` and trust authentication. initdb and postgres refuse to
 * run as root, so as root both run as Debian's `postgres` user (setpriv), in a directory that user
 * owns; the server dies with the test process (parent-death signal, and a kill on exit).
 */
export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBinDir();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-pg-'));
  const dataDir = path.join(root, 'data');
  const asRoot = process.getuid?.() === 0;
  let uid = 0;
  let gid = 0;
  if (asRoot) {
    uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    fs.chownSync(root, uid, gid);
  }
  const command = (file: string, args: string[]): [string, string[]] =>
    asRoot ? ['setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--init-groups', '--pdeathsig', 'SIGKILL', '--', file, ...args]] : [file, args];

  const [initCmd, initArgs] = command(path.join(bin, 'initdb'), ['-D', dataDir, '-U', USER, '--auth=trust', '-E', 'UTF8', '--no-sync', '--locale=C']);
  execFileSync(initCmd, initArgs, { stdio: 'pipe', cwd: root });
  const port = await freePort();

  let child: ChildProcess | undefined;
  let log = '';
  let frozen: number[] = [];
  // A server left frozen (a test that failed between freeze and thaw) must not outlive the run:
  // stopped backends never notice that their postmaster died.
  const killOnExit = () => {
    for (const pid of frozen) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // already gone
      }
    }
    child?.kill('SIGKILL');
  };
  process.on('exit', killOnExit);

  const start = async () => {
    const [cmd, args] = command(path.join(bin, 'postgres'), [
      '-D', dataDir, '-p', String(port), '-k', root, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'max_connections=100',
    ]);
    log = '';
    const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: root });
    child = proc;
    proc.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`postgres exited (${proc.exitCode}): ${log}`);
      const client = new pg.Client({ host: '127.0.0.1', port, user: USER, database: 'postgres' });
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.end();
        return;
      } catch {
        await client.end().catch(() => undefined);
      }
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections on ${port}: ${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const halt = async () => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGINT'); // fast shutdown: aborts open sessions, writes a checkpoint
    await exited;
  };
  const createDatabase = async (name: string) => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: USER, database: 'postgres' });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    } finally {
      await client.end();
    }
    return `postgres://${USER}@127.0.0.1:${port}/${name}`;
  };

  /** The postmaster and its backends (children). */
  const processes = (): number[] => {
    const pid = child?.pid;
    if (!pid) return [];
    const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)]).toString().split('\n').map((l) => Number(l.trim())).filter((p) => p > 0);
    return [pid, ...children];
  };

  await start();
  const url = await createDatabase('facestream');
  return {
    url,
    port,
    createDatabase,
    restart: async () => {
      await halt();
      await start();
    },
    halt,
    resume: start,
    freeze: () => {
      frozen = processes();
      for (const pid of frozen) process.kill(pid, 'SIGSTOP');
    },
    thaw: () => {
      for (const pid of processes()) process.kill(pid, 'SIGCONT');
      frozen = [];
    },
    stop: async () => {
      await halt();
      process.off('exit', killOnExit);
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
