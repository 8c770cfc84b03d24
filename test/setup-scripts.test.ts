import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './helpers/paths.js';

const DPKG_LOCK = '/var/lib/dpkg/lock-frontend';
const isRoot = process.getuid?.() === 0;
const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;

describe('installation scripts', () => {
  it('npm reads no configuration it does not know (no "Unknown project config" warning), and CI and bootstrap skip the CUDA download by the variable onnxruntime-node reads', () => {
    const r = spawnSync('npm', ['config', 'list'], { cwd: REPO, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).not.toMatch(/Unknown (project|user|env|cli) config/);
    const installScript = fs.readFileSync(path.join(REPO, 'node_modules', 'onnxruntime-node', 'script', 'install-utils.js'), 'utf8');
    expect(installScript).toContain('process.env.ONNXRUNTIME_NODE_INSTALL');
    expect(fs.readFileSync(path.join(REPO, '.ci', 'run'), 'utf8')).toMatch(/^export ONNXRUNTIME_NODE_INSTALL=skip$/m);
    expect(fs.readFileSync(path.join(REPO, 'scripts', 'bootstrap.mjs'), 'utf8')).toContain("ONNXRUNTIME_NODE_INSTALL: process.env.ONNXRUNTIME_NODE_INSTALL ?? 'skip'");
    // With that variable the install script leaves at once (no download attempted).
    const skip = spawnSync(process.execPath, [path.join(REPO, 'node_modules', 'onnxruntime-node', 'script', 'install.js')], {
      cwd: path.join(REPO, 'node_modules', 'onnxruntime-node'),
      env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(skip.status).toBe(0);
    expect(skip.stdout + skip.stderr).not.toMatch(/Downloading/);
  });

  // Needs root (the dpkg lock) and apt-get: CI runs as root on Debian.
  it.skipIf(!isRoot || !hasApt)('apt-get in the setup scripts waits for a dpkg lock another process holds, and says so', async () => {
    // Another "apt-get" holds the dpkg frontend lock (the fcntl lock apt and dpkg take) for 3 s.
    const holder = spawn('python3', ['-c', `import fcntl,os,sys,time\nfd=os.open(${JSON.stringify(DPKG_LOCK)},os.O_RDWR|os.O_CREAT)\nfcntl.lockf(fd,fcntl.LOCK_EX)\nprint('locked',flush=True)\ntime.sleep(3)`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout.once('data', () => resolve());
        holder.once('exit', (code) => reject(new Error(`lock holder exited ${code}`)));
      });
      const started = Date.now();
      const r = spawnSync(process.execPath, [path.join(REPO, 'scripts', 'apt.mjs'), 'check'], { encoding: 'utf8', env: { ...process.env, FACESTREAM_APT_LOCK_TIMEOUT: '60' }, timeout: 90_000 });
      const waited = Date.now() - started;
      expect(r.status, r.stderr).toBe(0);
      expect(waited).toBeGreaterThan(1500);
      expect(r.stderr).toMatch(/waits up to 60 s if another apt-get or dpkg holds the lock/);
    } finally {
      holder.kill();
    }
  });
});
