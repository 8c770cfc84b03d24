import fs from 'node:fs';
import { ingestSchema, type IngestConfig } from '../../src/config/sections/ingest.js';
import type { Frame } from '../../src/ingest/frame.js';
import type { SourceSpec } from '../../src/ingest/source.js';
import { FrameSource, type StateChange, type StreamState } from '../../src/ingest/stream.js';
import { createLogger } from '../../src/log.js';

/** Ingest config for tests: defaults plus overrides (deep for `reconnect`). */
export function ingestConfig(over: Partial<Omit<IngestConfig, 'reconnect'>> & { reconnect?: Partial<IngestConfig['reconnect']> } = {}): IngestConfig {
  return ingestSchema.parse(over);
}

export interface Recorded {
  source: FrameSource;
  /** Frame metadata (data dropped to keep memory flat), in arrival order. */
  frames: Omit<Frame, 'data'>[];
  states: StateChange[];
  ended: number;
}

/** A FrameSource that records what it emits. Logs are silenced; the assertions say what matters. */
export function recordedSource(spec: SourceSpec, config: IngestConfig = ingestConfig(), onFrame?: (f: Frame) => void): Recorded {
  const source = new FrameSource(spec, { config, logger: createLogger('silent') });
  const rec: Recorded = { source, frames: [], states: [], ended: 0 };
  source.on('frame', (f) => {
    const { data: _data, ...meta } = f;
    rec.frames.push(meta);
    onFrame?.(f);
  });
  source.on('state', (s) => rec.states.push(s));
  source.on('ended', () => rec.ended++);
  return rec;
}

export async function waitFor(what: string, predicate: () => boolean, timeoutMs: number, stepMs = 25): Promise<number> {
  const t0 = Date.now();
  while (!predicate()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return Date.now() - t0;
}

export function waitForState(rec: Recorded, state: StreamState, timeoutMs: number, since = 0): Promise<number> {
  return waitFor(`state ${state} of ${rec.source.id} (now ${rec.source.state}, last error ${rec.source.lastError?.code})`, () => rec.states.slice(since).some((s) => s.state === state), timeoutMs);
}

/** Whether a process exists and is not a zombie (a dead child its parent has not reaped yet). */
export function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Live ffmpeg processes (any parent) whose command line contains `needle`, from /proc. */
export function ffmpegProcesses(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (!/(^|\/)ffmpeg$/.test(cmdline[0] ?? '')) continue;
      if (cmdline.some((a) => a.includes(needle)) && isAlive(Number(entry))) pids.push(Number(entry));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids;
}
