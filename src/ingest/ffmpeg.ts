import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import ffmpeg from 'fluent-ffmpeg';
import type { IngestConfig } from '../config/sections/ingest.js';
import { FacestreamError } from '../errors.js';
import { PACKAGE_ROOT } from '../paths.js';

/** How this process runs ffmpeg, decided once per ffmpeg program. */
export interface FfmpegSetup {
  /** The real ffmpeg program. */
  program: string;
  /** What fluent-ffmpeg spawns: the program itself, or the wrapper that ties ffmpeg's life to ours. */
  spawnPath: string;
  /** ffmpeg dies with this process even when it is SIGKILLed (Linux, setpriv available). */
  killWithParent: boolean;
  version: string;
  /** Options and names that changed between ffmpeg releases; see `versionedOptions`. */
  options: VersionedOptions;
}

export interface VersionedOptions {
  /** Output option that passes frames through without duplicating or dropping any (5.1 renamed -vsync). */
  passthrough: string[];
  /** RTSP socket I/O timeout, in microseconds. Before 5.0 it was -stimeout; -timeout then meant "listen as a server". */
  rtspTimeout: string;
  /** The per-frame report filter; 5.0 can skip its per-frame checksums, which cost CPU for nothing here. */
  showinfo: string;
}

/** Options for an ffmpeg release number ("5.1.4", "n6.0", "4.4.2-0ubuntu"); git builds ("N-12345-g...") count as current. */
export function versionedOptions(version: string): VersionedOptions {
  const [major, minor] = (/^n?(\d+)\.(\d+)/.exec(version) ?? []).slice(1).map(Number);
  const known = major !== undefined;
  const before = (M: number, m: number) => known && (major < M || (major === M && minor < m));
  return {
    passthrough: before(5, 1) ? ['-vsync', 'passthrough'] : ['-fps_mode', 'passthrough'],
    rtspTimeout: before(5, 0) ? '-stimeout' : '-timeout',
    showinfo: before(5, 0) ? 'showinfo' : 'showinfo=checksum=0',
  };
}

/** The wrapper script: `setpriv --pdeathsig KILL -- $FACESTREAM_FFMPEG_BIN "$@"`. */
export const KILL_WITH_PARENT_WRAPPER = path.join(PACKAGE_ROOT, 'bin', 'ffmpeg-kill-with-parent');

const setups = new Map<string, FfmpegSetup>();

/**
 * Checks that ffmpeg runs, learns its version and points fluent-ffmpeg at it (fluent-ffmpeg keeps
 * one path per process, so every ffmpeg that fluent-ffmpeg starts, not only ingest's, gets the
 * same treatment). Throws FacestreamError('SOURCE_FAILED', details.code 'FFMPEG_NOT_FOUND') when
 * ffmpeg cannot be run.
 */
export function ffmpegSetup(config: Pick<IngestConfig, 'ffmpegPath' | 'killWithParent'>): FfmpegSetup {
  const key = `${config.ffmpegPath}\0${config.killWithParent}`;
  let setup = setups.get(key);
  if (!setup) {
    setup = detect(config.ffmpegPath, config.killWithParent);
    setups.set(key, setup);
  }
  if (setup.killWithParent) process.env.FACESTREAM_FFMPEG_BIN = setup.program;
  ffmpeg.setFfmpegPath(setup.spawnPath);
  return setup;
}

function detect(program: string, wantKillWithParent: boolean): FfmpegSetup {
  const probe = spawnSync(program, ['-hide_banner', '-version'], { encoding: 'utf8', timeout: 15_000 });
  if (probe.error || probe.status !== 0) {
    const why = probe.error ? probe.error.message : `exit status ${probe.status}`;
    throw new FacestreamError('SOURCE_FAILED', `cannot run ffmpeg (${program}): ${why}. Install it (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg) or set ingest.ffmpegPath / FACESTREAM_FFMPEG.`, {
      code: 'FFMPEG_NOT_FOUND',
    });
  }
  const version = /ffmpeg version (\S+)/.exec(probe.stdout)?.[1] ?? 'unknown';
  const killWithParent = wantKillWithParent && canKillWithParent(program);
  return { program, spawnPath: killWithParent ? KILL_WITH_PARENT_WRAPPER : program, killWithParent, version, options: versionedOptions(version) };
}

/** Linux with util-linux's setpriv supporting --pdeathsig, and the wrapper script executable. */
function canKillWithParent(program: string): boolean {
  if (process.platform !== 'linux') return false;
  try {
    fs.accessSync(KILL_WITH_PARENT_WRAPPER, fs.constants.X_OK);
  } catch {
    // A checkout or archive can lose the executable bit.
    try {
      fs.chmodSync(KILL_WITH_PARENT_WRAPPER, 0o755);
    } catch {
      return false;
    }
  }
  const r = spawnSync(KILL_WITH_PARENT_WRAPPER, ['-hide_banner', '-version'], {
    env: { ...process.env, FACESTREAM_FFMPEG_BIN: program },
    stdio: 'ignore',
    timeout: 15_000,
  });
  return r.status === 0;
}

/**
 * ffmpeg processes alive right now. On a normal exit of this process (including process.exit
 * and uncaught exceptions) each is SIGKILLed: 'exit' handlers must be synchronous, and a
 * half-written frame is worth nothing once its reader is gone.
 */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

export function trackProcess(proc: ChildProcess): void {
  running.add(proc);
  proc.once('exit', () => running.delete(proc));
  // A process that never started never exits.
  proc.once('error', () => {
    if (proc.pid === undefined) running.delete(proc);
  });
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', killAllNow);
  }
}

function killAllNow(): void {
  for (const proc of running) {
    try {
      proc.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  running.clear();
}

/** Pids of ffmpeg processes started by this process and still running (for tests and diagnostics). */
export function runningFfmpegPids(): number[] {
  return [...running].map((p) => p.pid).filter((pid): pid is number => pid !== undefined);
}
