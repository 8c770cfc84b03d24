#!/usr/bin/env node
// apt-get that waits for another apt-get or dpkg (an unattended upgrade, a second install) instead
// of failing at once on the dpkg lock: apt's own DPkg::Lock::Timeout (apt >= 1.9.11), which also
// prints "Waiting for cache lock ... held by process N" while it waits.
// Usage as a program: node scripts/apt.mjs <apt-get arguments...>
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Seconds to wait for the dpkg lock before giving up (FACESTREAM_APT_LOCK_TIMEOUT, default 600). */
export function aptLockTimeout(env = process.env) {
  const n = Number(env.FACESTREAM_APT_LOCK_TIMEOUT ?? 600);
  return Number.isFinite(n) && n >= 0 ? Math.floor(n) : 600;
}

/** Runs apt-get with the lock timeout; returns its exit status. `say` reports the wait in words. */
export function aptGet(argv, { env = process.env, say = (m) => process.stderr.write(`${m}\n`) } = {}) {
  const timeout = aptLockTimeout(env);
  say(`apt-get ${argv.join(' ')} (waits up to ${timeout} s if another apt-get or dpkg holds the lock)`);
  const r = spawnSync('apt-get', ['-o', `DPkg::Lock::Timeout=${timeout}`, ...argv], { stdio: 'inherit', env });
  return r.status ?? 1;
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exit(aptGet(process.argv.slice(2), { say: (m) => process.stderr.write(`[apt] ${m}\n`) }));
}
