import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';

/** Debian installs mosquitto in /usr/sbin, which is not in every user's PATH. */
function mosquittoBinary(name = 'mosquitto'): string {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin']) {
    const p = path.join(dir, name);
    if (dir && fs.existsSync(p)) return p;
  }
  throw new Error(`${name} not found: install Debian's mosquitto package (scripts/system-packages.txt)`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface Broker {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * A real mosquitto on 127.0.0.1 (a free port, or the one given), without persistence; with
 * `user`, only that user and password may connect.
 */
export async function startMosquitto(opts: { port?: number; user?: { name: string; password: string } } = {}): Promise<Broker> {
  const port = opts.port ?? (await freePort());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-mosquitto-'));
  // Started as root, mosquitto would switch to the "mosquitto" user, who cannot read our private temporary folder.
  const lines = [`user ${os.userInfo().username}`, `listener ${port} 127.0.0.1`, 'persistence false', 'log_dest stderr', 'log_type error', 'log_type warning'];
  if (opts.user) {
    const file = path.join(dir, 'passwd');
    execFileSync(mosquittoBinary('mosquitto_passwd'), ['-b', '-c', file, opts.user.name, opts.user.password]);
    fs.chmodSync(file, 0o600);
    lines.push('allow_anonymous false', `password_file ${file}`);
  } else {
    lines.push('allow_anonymous true');
  }
  fs.writeFileSync(path.join(dir, 'mosquitto.conf'), `${lines.join('\n')}\n`);
  const child: ChildProcess = spawn(mosquittoBinary(), ['-c', path.join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited (${child.exitCode}): ${stderr}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port}: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Received {
  topic: string;
  payload: string;
  retain: boolean;
  at: number;
}

/** A subscriber that records every message of `topics` (retained ones arrive first, with retain set). */
export class Subscriber {
  readonly messages: Received[] = [];
  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) => this.messages.push({ topic, payload: payload.toString('utf8'), retain: packet.retain, at: Date.now() }));
  }

  static async connect(url: string, topics: string[], opts: { username?: string; password?: string } = {}): Promise<Subscriber> {
    const client = await mqtt.connectAsync(url, { ...opts, reconnectPeriod: 0, clean: true });
    const sub = new Subscriber(client);
    await client.subscribeAsync(topics, { qos: 1 });
    return sub;
  }

  on(topic: string): Received[] {
    return this.messages.filter((m) => m.topic === topic);
  }

  /** The newest message on `topic` (undefined: none yet). */
  last(topic: string): Received | undefined {
    const all = this.on(topic);
    return all[all.length - 1];
  }

  json<T = Record<string, unknown>>(topic: string): T | undefined {
    const m = this.last(topic);
    return m && m.payload ? (JSON.parse(m.payload) as T) : undefined;
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}
