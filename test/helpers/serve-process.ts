import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import { WebSocket } from 'ws';

/** A `facestream serve` child process (cluster tests and the cluster benchmark). */
export interface ServeProcess {
  id: string;
  child: ChildProcess;
  /** http://127.0.0.1:PORT once it listens. */
  url: string;
  /** Its last 200 lines of output (for error messages). */
  log: string[];
  /** kill -9; resolves when it has exited. */
  kill9(): Promise<void>;
}

/**
 * Starts `node <cli> serve --config <file>` with `config` written to `configFile`, and resolves
 * when it prints its viewer URL (port 0 config: the OS picks the port). FACESTREAM_* variables of
 * the caller are not passed on, except the models directory given.
 */
export function startServeProcess(opts: { id: string; cli: string; configFile: string; config: unknown; modelsDir: string; startTimeoutMs?: number }): Promise<ServeProcess> {
  fs.writeFileSync(opts.configFile, JSON.stringify(opts.config));
  const child = spawn(process.execPath, [opts.cli, 'serve', '--config', opts.configFile], {
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FACESTREAM_'))), FACESTREAM_MODELS_DIR: opts.modelsDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  const keep = (line: string) => {
    log.push(line);
    if (log.length > 200) log.shift();
  };
  readline.createInterface({ input: child.stderr! }).on('line', keep);
  const kill9 = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  };
  return new Promise((resolve, reject) => {
    const ms = opts.startTimeoutMs ?? 90_000;
    const timer = setTimeout(() => {
      void kill9();
      reject(new Error(`${opts.id} did not start within ${ms} ms:\n${log.join('\n')}`));
    }, ms);
    const early = (code: number | null, signal: string | null) => {
      clearTimeout(timer);
      reject(new Error(`${opts.id} exited (${code ?? signal}) before listening:\n${log.join('\n')}`));
    };
    child.once('exit', early);
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      keep(line);
      // The banner's first URL: the viewer's, or a worker node's health endpoint.
      const m = /(?:viewer|health):\s+(http:\/\/[^/\s]+)\//.exec(line);
      if (!m) return;
      clearTimeout(timer);
      child.off('exit', early);
      resolve({ id: opts.id, child, url: m[1], log, kill9 });
    });
  });
}

/** The sum of a metric's series (name followed by { or a space) in a Prometheus text exposition. */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name) && /[ {]/.test(line[name.length] ?? '')) sum += Number(line.split(' ').pop());
  return sum;
}

/** One frame message as a live viewer got it. */
export interface ViewedFrame {
  streamId: string;
  /** Epoch ms of arrival at the viewer. */
  at: number;
  capturedAt: number;
  /** Identity ids of the faces named in it. */
  names: string[];
}

/** A WebSocket viewer of /api/v1/live (every stream) that keeps the frame messages it gets (the newest 20k at most). */
export class FrameViewer {
  readonly frames: ViewedFrame[] = [];
  private readonly ws: WebSocket;

  constructor(url: string, key: string) {
    this.ws = new WebSocket(`${url.replace('http', 'ws')}/api/v1/live`, ['facestream.v1'], { headers: { authorization: `Bearer ${key}` } });
    this.ws.on('error', () => {});
    this.ws.on('message', (data, binary) => {
      if (binary) return;
      const m = JSON.parse(String(data)) as { type: string; streamId: string; capturedAt: number; faces: { identity?: { id: string } | null }[] };
      if (m.type !== 'frame') return;
      this.frames.push({ streamId: m.streamId, at: Date.now(), capturedAt: m.capturedAt, names: m.faces.map((f) => f.identity?.id).filter((x): x is string => !!x) });
      if (this.frames.length > 20_000) this.frames.splice(0, 10_000);
    });
  }

  /** The streams whose frames arrived at or after `t` (epoch ms). */
  streamsSince(t: number): Set<string> {
    return new Set(this.frames.filter((f) => f.at >= t).map((f) => f.streamId));
  }

  close(): void {
    this.ws.terminate();
  }
}

/** Polls `fn` every `everyMs` until it returns something truthy (returned), or throws after `ms`. */
export async function pollUntil<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, ms: number, everyMs = 250): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
