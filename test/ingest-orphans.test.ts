import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IngestConfig } from '../src/config/sections/ingest.js';
import type { SourceSpec } from '../src/ingest/source.js';
import { isAlive, waitFor } from './helpers/ingest.js';
import { REPO } from './helpers/paths.js';

// Runs the TypeScript child in its own Node process (vite-node runs it in-process: the Node we
// kill is the parent of its ffmpegs).
const VITE_NODE = path.join(REPO, 'node_modules', 'vite-node', 'vite-node.mjs');
const CHILD = path.join(REPO, 'test', 'helpers', 'ingest-child.ts');

let silent: net.Server;
const sockets = new Set<net.Socket>();
const leftovers: number[] = [];

beforeAll(async () => {
  // A server that accepts and never answers: an ffmpeg reading from it writes nothing, so it
  // never meets a broken pipe and would wait for its I/O timeout (a minute here) if orphaned.
  silent = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  for (const pid of leftovers) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => silent?.close(() => resolve()));
});

function parentPid(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

function specs(): SourceSpec[] {
  const port = (silent.address() as net.AddressInfo).port;
  return [
    { id: 'writing', url: 'lavfi:testsrc2=size=320x240:rate=25' },
    { id: 'waiting', url: `rtsp://127.0.0.1:${port}/cam` },
  ];
}

/** Starts the child, waits until its ffmpegs run, returns their pids. */
async function runChild(config: Partial<IngestConfig>, exitWhenRunning = false) {
  const child = spawn(process.execPath, [VITE_NODE, CHILD, JSON.stringify({ specs: specs(), config, exitWhenRunning })], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const info = await new Promise<{ pid: number; ffmpeg: number[] }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child did not start its sources: ${err}`)), 60_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) {
        clearTimeout(timer);
        resolve(JSON.parse(out.split('\n')[0]));
      }
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) early: ${err}`)));
  });
  leftovers.push(...info.ffmpeg);
  expect(info.pid).toBe(child.pid);
  expect(info.ffmpeg.every(isAlive)).toBe(true);
  // The Node process we kill is the ffmpegs' parent (no shell or wrapper in between).
  expect(info.ffmpeg.map(parentPid)).toEqual(info.ffmpeg.map(() => child.pid));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, ffmpeg: info.ffmpeg, exited };
}

const config: Partial<IngestConfig> = { ioTimeoutMs: 60_000, startTimeoutMs: 60_000 };

describe('no ffmpeg left behind', () => {
  it('kills every ffmpeg when Node is SIGKILLed (the kernel does it: setpriv --pdeathsig)', async () => {
    const { child, ffmpeg, exited } = await runChild(config);
    child.kill('SIGKILL');
    await exited;
    await waitFor('both ffmpegs to die with their parent', () => !ffmpeg.some(isAlive), 3000);
  });

  it('control: without killWithParent, a SIGKILLed Node leaves the waiting ffmpeg behind', async () => {
    // Shows that the test above can fail: nothing but the parent-death signal ends this one.
    const { child, ffmpeg, exited } = await runChild({ ...config, killWithParent: false });
    child.kill('SIGKILL');
    await exited;
    await new Promise((r) => setTimeout(r, 1500));
    expect(isAlive(ffmpeg[1])).toBe(true);
    process.kill(ffmpeg[1], 'SIGKILL');
    await waitFor('the orphan to die', () => !isAlive(ffmpeg[1]), 3000);
  });

  it('kills every ffmpeg when Node exits normally (process exit hook), even without the kernel’s help', async () => {
    const { ffmpeg, exited } = await runChild({ ...config, killWithParent: false }, true);
    await exited;
    await waitFor('both ffmpegs to be killed on exit', () => !ffmpeg.some(isAlive), 3000);
  });
});
