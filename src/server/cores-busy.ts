import { performance } from 'node:perf_hooks';

/** CPU time of the whole process (every thread: main, inference thread, onnxruntime's pool) in microseconds. */
export type CpuClock = () => number;

const processCpuMicros: CpuClock = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

interface Sample {
  ms: number;
  cpuMicros: number;
}

export interface CoresBusyOptions {
  /** Span the figure averages over, ms (default 5000: short enough to see a burst, long enough to be steady). */
  windowMs?: number;
  /** How often a sample is taken, ms (default 1000). */
  sampleMs?: number;
  /** Wall clock in ms (tests inject a fake one). */
  now?: () => number;
  /** Process CPU time in µs (tests inject a fake one). */
  cpu?: CpuClock;
}

/**
 * How many cores the process keeps busy: CPU seconds per wall second over the last `windowMs`.
 * `process.cpuUsage()` is getrusage(RUSAGE_SELF), so it counts every thread of the process
 * (worker threads, onnxruntime's intra-op threads, libuv's pool), not ffmpeg's child processes.
 * Samples are taken on a timer, so the window does not depend on how often Prometheus scrapes
 * (rate(process_cpu_seconds_total) averages over the scrape window instead).
 */
export class CoresBusyMeter {
  private readonly windowMs: number;
  private readonly sampleMs: number;
  private readonly now: () => number;
  private readonly cpu: CpuClock;
  /** Oldest first; covers at least the window (one sample older than it is kept). */
  private readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: CoresBusyOptions = {}) {
    this.windowMs = opts.windowMs ?? 5000;
    this.sampleMs = opts.sampleMs ?? 1000;
    this.now = opts.now ?? (() => performance.now());
    this.cpu = opts.cpu ?? processCpuMicros;
    this.sample();
  }

  /** Starts sampling on an unref'd timer (it never keeps the process alive). */
  start(): this {
    if (!this.timer) {
      this.timer = setInterval(() => this.sample(), this.sampleMs);
      this.timer.unref();
    }
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Records the CPU clock now and forgets samples no longer needed for the window. */
  sample(): Sample {
    const s = { ms: this.now(), cpuMicros: this.cpu() };
    this.samples.push(s);
    // Keep the newest sample at or beyond the window's start; drop everything older.
    while (this.samples.length > 2 && this.samples[1].ms <= s.ms - this.windowMs) this.samples.shift();
    return s;
  }

  /**
   * Cores busy (CPU seconds per second; 0 to the number of cores) from the oldest sample within
   * the window (or just before it) to now; 0 until some time has passed.
   */
  coresBusy(): number {
    const latest = this.sample();
    const from = this.samples[0];
    const elapsedMs = latest.ms - from.ms;
    if (elapsedMs <= 0) return 0;
    return Math.max(0, (latest.cpuMicros - from.cpuMicros) / 1000 / elapsedMs);
  }
}
