import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { REPO } from './paths.js';

/** Debian's Python: the GStreamer bindings are Debian packages, not pip ones (a pyenv python3 on PATH lacks them). */
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const SCRIPT = path.join(REPO, 'test', 'helpers', 'rtsp_server.py');

/** Throws with the install command when GStreamer's RTSP server bindings are missing. */
export function assertRtspServerAvailable(): void {
  const r = spawnSync(PYTHON, ['-c', "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); from gi.repository import Gst, GstRtspServer"], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(
      `the RTSP tests need GStreamer's RTSP server for ${PYTHON}: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good ` +
        `(scripts/system-packages.txt lists them; npm test installs them as root). ${r.stderr ?? ''}`,
    );
  }
}

/** A TCP port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** Prefix that makes the kernel kill a helper process if the test runner dies (util-linux). */
function withParentDeath(cmd: string, args: string[]): [string, string[]] {
  return fs.existsSync('/usr/bin/setpriv') ? ['/usr/bin/setpriv', ['--pdeathsig', 'KILL', '--', cmd, ...args]] : [cmd, args];
}

/**
 * A real RTSP server (GStreamer gst-rtsp-server, test/helpers/rtsp_server.py) on 127.0.0.1
 * serving a video file looped: /clip open, /secure behind Basic auth (user/secret). It can be
 * killed and restarted on the same port, like a camera losing power.
 */
export class RtspTestServer {
  private proc?: ChildProcess;
  private stderr = '';
  readonly user = 'user';
  readonly password = 'secret';

  private constructor(
    readonly port: number,
    readonly file: string,
  ) {}

  static async start(file: string, port?: number): Promise<RtspTestServer> {
    assertRtspServerAvailable();
    const server = new RtspTestServer(port ?? (await freePort()), file);
    await server.restart();
    return server;
  }

  url(mount = 'clip', credentials?: { user: string; password: string }): string {
    const auth = credentials ? `${encodeURIComponent(credentials.user)}:${encodeURIComponent(credentials.password)}@` : '';
    return `rtsp://${auth}127.0.0.1:${this.port}/${mount}`;
  }

  get running(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Starts the server (again) on its port and resolves once it accepts connections. */
  async restart(timeoutMs = 15_000): Promise<void> {
    if (this.running) return;
    const [cmd, args] = withParentDeath(PYTHON, [SCRIPT, '--port', String(this.port), '--file', this.file, '--user', this.user, '--password', this.password]);
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`RTSP server did not start within ${timeoutMs} ms: ${this.stderr}`)), timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        proc.kill('SIGKILL');
        reject(err);
      };
      let out = '';
      proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('READY')) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('exit', (code, signal) => fail(new Error(`RTSP server exited (${code ?? signal}) before it was ready: ${this.stderr}`)));
    });
  }

  /** Kills the server at once (SIGKILL: no RTSP teardown, like a power cut) and waits until it is gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = this.proc;
    if (!proc || !this.running) return;
    if (signal !== 'SIGKILL') this.thaw();
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    await exited;
  }

  /** Freezes the server (SIGSTOP): connections stay open and nothing flows, like a hung camera. */
  freeze(): void {
    if (this.running) this.proc!.kill('SIGSTOP');
  }

  thaw(): void {
    if (this.running) this.proc!.kill('SIGCONT');
  }

  async close(): Promise<void> {
    this.thaw();
    await this.kill('SIGKILL');
  }
}
