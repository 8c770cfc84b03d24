import { execFile } from 'node:child_process';
import { CLI, MODELS_DIR, REPO } from './paths.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node bin/facestream.js ...args` (compiled by the global setup) with the repository's
 * models and no FACESTREAM_* from the caller's environment.
 */
export function runCli(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<CliRun> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FACESTREAM_')));
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { cwd: opts.cwd ?? REPO, env: { ...clean, FACESTREAM_MODELS_DIR: MODELS_DIR, ...opts.env }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}
