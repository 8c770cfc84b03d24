import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type ffmpeg from 'fluent-ffmpeg';
import { ingestSchema, type IngestConfig } from '../config/sections/ingest.js';
import { errorMessage, FacestreamError, isFacestreamError } from '../errors.js';
import { rootLogger, type Logger } from '../log.js';
import { attemptsAfterConnection, backoffDelay } from './backoff.js';
import { FrameCadence } from './cadence.js';
import { createCommand, ffmpegArgs } from './command.js';
import { classifyStderr, isErrorLine, type IngestError } from './errors.js';
import { ffmpegSetup, trackProcess } from './ffmpeg.js';
import { FrameBufferPool, frameReferences } from './frame-buffers.js';
import { FramePipe, stdoutSink } from './frame-pipe.js';
import type { Frame } from './frame.js';
import { parseShowinfo, RawFrameReader, type RawFrame } from './framer.js';
import { redactText, resolveSource, type ResolvedSource, type SourceSpec } from './source.js';

/**
 * starting: ffmpeg is connecting/opening, no frame yet. live: frames flow. stalled: a live stream
 * went quiet for stallTimeoutMs and is being restarted. reconnecting: waiting (backoff) before
 * the next attempt. stopped: not running (never started, stop() called, or the input ended).
 * failed: given up, `lastError` says why; start() tries again.
 */
export type StreamState = 'starting' | 'live' | 'stalled' | 'reconnecting' | 'stopped' | 'failed';

export interface StateChange {
  state: StreamState;
  previous: StreamState;
  /** Why the stream left 'live' or could not get there (stalled, reconnecting, failed). */
  error?: IngestError;
}

export interface FrameSourceStats {
  framesRead: number;
  bytesRead: number;
  /** ffmpeg processes started after the first (reconnects). */
  restarts: number;
  /** Failed attempts since the last stable connection (drives the backoff; see reconnect.stableAfterMs). */
  attempts: number;
  /** The source's typical frame interval as measured (ms), when known: the watchdog follows it. */
  frameIntervalMs?: number;
  /** ffmpeg error lines logged while frames were flowing (corrupt data the decoder concealed). */
  decodeErrors: number;
  /** Bytes of frames cut off by an ffmpeg exit (a frame is only delivered whole). */
  truncatedBytes: number;
  lastFrameAt?: number;
  width?: number;
  height?: number;
  /** ffmpeg's pid while one runs. */
  pid?: number;
}

export interface FrameSourceOptions {
  config?: IngestConfig;
  logger?: Logger;
  /** Jitter source for the backoff (tests). */
  random?: () => number;
}

export interface FrameSourceEvents {
  frame: [Frame];
  state: [StateChange];
  /** The input ended by itself (a file without loop): the stream is now 'stopped'. */
  ended: [];
  /** The source changed resolution; `seq` is the first frame at the new size. */
  resize: [{ from: { width: number; height: number }; to: { width: number; height: number }; seq: number }];
}

interface Run {
  command: ffmpeg.FfmpegCommand;
  reader: RawFrameReader;
  /** The named pipe the frames come through; undefined when they come through ffmpeg's stdout. */
  pipe?: FramePipe;
  proc?: ChildProcess;
  startedAt: number;
  frames: number;
  firstFrameAt?: number;
  lastFrameAt?: number;
  /** ffmpeg's network I/O timeout for this run (follows the measured frame interval). */
  ioTimeoutMs: number;
  /** stderr lines since this run's last frame (scrubbed): what explains a failure. */
  sinceFrame: string[];
  /** Set when we end the run: 'stop', or the error that made us restart it. */
  killedFor?: 'stop' | IngestError;
  exit?: { error?: Error };
  readerFinished: boolean;
  done: Promise<void>;
  resolveDone: () => void;
}

/**
 * One video source read through ffmpeg: raw RGB frames out, reconnects and errors handled.
 * Emits 'frame' (Frame), 'state' (StateChange) and 'ended'. Never emits 'error'.
 */
export class FrameSource extends EventEmitter<FrameSourceEvents> {
  readonly id: string;
  /** The resolved source; `label` is the URL with credentials removed. */
  readonly source: ResolvedSource;
  private readonly config: IngestConfig;
  private readonly log: Logger;
  private readonly random: () => number;
  private current: StreamState = 'stopped';
  private error?: IngestError;
  private run?: Run;
  private seq = 0;
  private counters = { framesRead: 0, bytesRead: 0, restarts: 0, attempts: 0, decodeErrors: 0, truncatedBytes: 0 };
  private lastFrameAt?: number;
  private size?: { width: number; height: number };
  private readonly tail: string[] = [];
  private isPaused = false;
  private startTimer?: NodeJS.Timeout;
  private watchdog?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private stopping?: Promise<void>;
  private everStarted = false;
  private readonly cadence = new FrameCadence();
  /** Frame memory, kept across reconnects: frames released by their receiver are reused. */
  private readonly buffers = new FrameBufferPool();
  /** No `mkfifo` here: every run reads ffmpeg's stdout. */
  private noFifo = false;
  /** The last attempt to make a named pipe failed (its warning was given). */
  private pipeFailing = false;
  /** The temporary directory was swept of dead processes' pipe directories (once per source). */
  private staleSwept = false;

  constructor(spec: SourceSpec, opts: FrameSourceOptions = {}) {
    super();
    this.config = opts.config ?? ingestSchema.parse({});
    this.source = resolveSource(spec, this.config);
    this.id = this.source.id;
    this.random = opts.random ?? Math.random;
    this.log = (opts.logger ?? rootLogger()).child({ stream: this.id, source: this.source.label });
  }

  get state(): StreamState {
    return this.current;
  }

  get lastError(): IngestError | undefined {
    return this.error;
  }

  get paused(): boolean {
    return this.isPaused;
  }

  get stats(): FrameSourceStats {
    return {
      ...this.counters,
      bytesRead: this.counters.bytesRead + (this.run?.reader.bytesRead ?? 0),
      lastFrameAt: this.lastFrameAt,
      frameIntervalMs: this.cadence.intervalMs,
      width: this.size?.width,
      height: this.size?.height,
      pid: this.run?.proc && this.run.proc.exitCode === null && this.run.proc.signalCode === null ? this.run.proc.pid : undefined,
    };
  }

  /** The last ffmpeg stderr lines (config ingest.stderrLines), credentials scrubbed, per-frame lines left out. */
  get stderrTail(): readonly string[] {
    return [...this.tail];
  }

  /** Starts reading; a no-op while running. After 'stopped' or 'failed' it starts afresh. */
  start(): void {
    if (this.stopping) throw new FacestreamError('BAD_REQUEST', `stream ${this.id} is stopping; wait for stop() before starting it again`, { streamId: this.id });
    if (this.run || this.retryTimer) return;
    this.counters.attempts = 0;
    this.error = undefined;
    this.spawn();
  }

  /** Stops reading: ffmpeg is asked to quit, killed after killTimeoutMs, and the promise resolves once it is gone. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown().finally(() => {
      this.stopping = undefined;
    });
    return this.stopping;
  }

  /** Stops delivering frames; ffmpeg blocks on its full output pipe (for offline reading, not for cameras). */
  pause(): void {
    if (this.isPaused) return;
    this.isPaused = true;
    this.run?.reader.pause();
    this.clearTimer('startTimer');
    this.clearTimer('watchdog');
  }

  resume(): void {
    if (!this.isPaused) return;
    this.isPaused = false;
    const run = this.run;
    if (run) {
      this.armTimers(run);
      run.reader.resume();
    }
  }

  private async shutdown(): Promise<void> {
    this.clearTimer('retryTimer');
    const run = this.run;
    if (run) {
      this.endRun(run, 'stop');
      await run.done;
    }
    this.clearTimer('startTimer');
    this.clearTimer('watchdog');
    this.setState('stopped');
  }

  private setState(state: StreamState, error?: IngestError): void {
    const previous = this.current;
    if (error) this.error = error;
    if (state === previous && !error) return;
    this.current = state;
    if (error) this.log.warn({ state, previous, code: error.code }, `stream ${this.id}: ${state}: ${error.code}: ${error.message}`);
    else this.log.info({ state, previous }, `stream ${this.id}: ${state}`);
    this.emit('state', error ? { state, previous, error } : { state, previous });
  }

  private spawn(): void {
    if (this.everStarted) this.counters.restarts++;
    this.everStarted = true;
    let setup;
    try {
      setup = ffmpegSetup(this.config);
    } catch (err) {
      const code = isFacestreamError(err) && err.details.code === 'FFMPEG_NOT_FOUND' ? 'FFMPEG_NOT_FOUND' : 'FFMPEG_FAILED';
      this.setState('failed', { code, message: this.scrub(errorMessage(err)) });
      return;
    }
    const ioTimeoutMs = this.cadenceTimeout(this.config.ioTimeoutMs);
    const args = ffmpegArgs(this.source, { ...this.config, ioTimeoutMs }, setup.options);
    // child_process.spawn throws on a NUL in any argument, and fluent-ffmpeg spawns from a
    // callback where nothing would catch it: the whole process would die. A source that cannot
    // be spawned is this stream's error, never the server's.
    const unspawnable = [args.input, ...args.inputOptions, ...args.outputOptions].find((a) => a.includes('\0'));
    if (unspawnable !== undefined) {
      this.setState('failed', { code: 'INVALID_SOURCE', message: 'the source holds a NUL character, which no program argument may hold' });
      return;
    }
    let resolveDone!: () => void;
    const done = new Promise<void>((resolve) => (resolveDone = resolve));
    const reader = new RawFrameReader((raw) => this.onFrame(run, raw), this.buffers);
    if (this.isPaused) reader.pause();
    const pipe = this.framePipe();
    const command = createCommand(args, pipe ? pipe.path : stdoutSink(reader), this.config.stderrLines);
    const run: Run = { command, reader, pipe, startedAt: Date.now(), frames: 0, ioTimeoutMs, sinceFrame: [], readerFinished: false, done, resolveDone };
    this.run = run;
    pipe?.readInto(reader);

    reader.once('finish', () => {
      run.readerFinished = true;
      this.maybeFinish(run);
    });
    command.on('start', () => {
      const proc = (command as unknown as { ffmpegProc?: ChildProcess }).ffmpegProc;
      if (!proc) return;
      run.proc = proc;
      // fluent-ffmpeg's own 'error' listener reads output buffers that do not exist when the spawn
      // itself failed (EAGAIN, EMFILE, a binary gone since the start): it throws from the event,
      // and that would end the whole server. This run's end reports the failure instead.
      proc.removeAllListeners('error');
      proc.on('error', (err) => {
        if (proc.pid !== undefined) return; // a failed kill or send: the exit still comes
        run.exit ??= { error: err };
        run.readerFinished = true;
        run.reader.discard();
        this.maybeFinish(run);
      });
      trackProcess(proc);
      // ffmpeg's exit must reach the reader as an end of file even if it never opened the pipe.
      proc.once('exit', () => pipe?.writerGone());
      this.log.debug({ pid: proc.pid, args: [...args.inputOptions, '-i', this.scrub(args.input), ...args.outputOptions] }, 'ffmpeg started');
      if (run.killedFor) this.terminate(proc);
    });
    command.on('stderr', (line: string) => this.onStderr(run, line));
    command.on('error', (err: Error) => {
      run.exit = { error: err };
      // Without a process nothing will end the reader.
      if (!run.proc) run.readerFinished = true;
      this.maybeFinish(run);
    });
    command.on('end', () => {
      run.exit = {};
      this.maybeFinish(run);
    });
    // Announced once the run exists, so that a stop() from a 'starting' listener finds it.
    this.setState('starting');
    this.armTimers(run);
    try {
      command.run();
    } catch (err) {
      this.clearTimer('startTimer');
      this.run = undefined;
      pipe?.close();
      run.resolveDone();
      this.setState('failed', { code: 'FFMPEG_FAILED', message: `ffmpeg could not be started: ${this.scrub(errorMessage(err))}` });
    }
  }

  private armTimers(run: Run): void {
    if (this.isPaused || run !== this.run) return;
    if (run.frames === 0) {
      this.clearTimer('startTimer');
      this.startTimer = setTimeout(() => {
        if (run !== this.run || run.frames > 0) return;
        this.endRun(run, { code: 'TIMEOUT', message: `no frame within ${this.config.startTimeoutMs} ms of starting ffmpeg` });
      }, this.config.startTimeoutMs);
    } else {
      this.clearTimer('watchdog');
      this.watchdog = setTimeout(() => this.onStall(run), this.stallTimeoutMs);
    }
  }

  /**
   * A named pipe for this run's frames, or undefined for stdout: configured so, no `mkfifo` on
   * this machine (for good), or a failure that may pass (no file descriptor left, the temporary
   * directory full or gone): that run reads stdout and the next one tries a pipe again. One
   * warning per streak of failures.
   */
  private framePipe(): FramePipe | undefined {
    if (this.config.framePipe !== 'fifo' || this.noFifo) return undefined;
    try {
      if (!this.staleSwept) FramePipe.sweepStale();
      this.staleSwept = true;
      const pipe = FramePipe.open();
      this.pipeFailing = false;
      return pipe;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      this.noFifo = e.code === 'ENOENT' && String(e.syscall).startsWith('spawn');
      if (!this.pipeFailing) {
        const then = this.noFifo ? '' : ' for this run; the next run tries a named pipe again';
        this.log.warn({ err: errorMessage(err) }, `stream ${this.id}: no named pipe for the frames (${errorMessage(err)}); reading them from ffmpeg's stdout${then} (ingest.framePipe)`);
      }
      this.pipeFailing = true;
      return undefined;
    }
  }

  private onStall(run: Run): void {
    if (run !== this.run || this.isPaused || run.killedFor) return;
    // Only a live source is restarted; a file that stops delivering is given up (see afterRun).
    const error: IngestError = { code: 'STALLED', message: `no frame for ${this.stallTimeoutMs} ms${this.source.live ? '; restarting' : '; a file is not read again'}` };
    this.setState('stalled', error);
    this.endRun(run, error);
  }

  /** The watchdog's limit: the configured one, or three frame intervals, as measured or for a source thinned to a slow rate. */
  private get stallTimeoutMs(): number {
    return Math.max(this.cadenceTimeout(this.config.stallTimeoutMs), this.source.fps ? 3000 / this.source.fps : 0);
  }

  /** A configured timeout stretched to three measured frame intervals, up to MAX_CADENCE_TIMEOUT_MS. */
  private cadenceTimeout(configuredMs: number): number {
    return Math.max(configuredMs, Math.min(MAX_CADENCE_TIMEOUT_MS, this.cadence.timeoutMs(configuredMs)));
  }

  private clearTimer(name: 'startTimer' | 'watchdog' | 'retryTimer'): void {
    const t = this[name];
    if (t) clearTimeout(t);
    this[name] = undefined;
  }

  private onStderr(run: Run, line: string): void {
    if (line.includes('Parsed_showinfo')) {
      const info = parseShowinfo(line);
      if (info) run.reader.pushInfo(info);
      return;
    }
    if (!line.trim()) return;
    const clean = this.scrub(line);
    push(this.tail, clean, this.config.stderrLines);
    push(run.sinceFrame, clean, this.config.stderrLines);
    if (run.frames > 0 && isErrorLine(clean)) this.counters.decodeErrors++;
    this.log.trace({ ffmpeg: clean }, 'ffmpeg');
  }

  private onFrame(run: Run, raw: RawFrame): void {
    if (run !== this.run || run.killedFor) return;
    run.frames++;
    run.sinceFrame.length = 0;
    this.cadence.frame(raw.capturedAt, run.frames > 1);
    run.firstFrameAt ??= raw.capturedAt;
    run.lastFrameAt = raw.capturedAt;
    this.counters.framesRead++;
    this.lastFrameAt = raw.capturedAt;
    const previous = this.size;
    const resized = previous && (previous.width !== raw.info.width || previous.height !== raw.info.height) ? previous : undefined;
    this.size = { width: raw.info.width, height: raw.info.height };
    if (resized) {
      this.log.info({ from: resized, to: this.size }, `stream ${this.id}: resolution changed from ${resized.width}x${resized.height} to ${this.size.width}x${this.size.height}`);
      this.emit('resize', { from: resized, to: this.size, seq: this.seq });
    }
    if (run.frames === 1) {
      this.clearTimer('startTimer');
      this.setState('live');
    }
    if (this.watchdog) this.watchdog.refresh();
    else this.armTimers(run);
    const data = raw.data;
    // Only a sole receiver can know that nobody else reads the frame any more.
    const references = this.listenerCount('frame') === 1 ? frameReferences(this.buffers, data) : undefined;
    this.emit('frame', {
      streamId: this.id,
      seq: this.seq++,
      pts: raw.info.pts,
      capturedAt: raw.capturedAt,
      width: raw.info.width,
      height: raw.info.height,
      ...(resized ? { sizeChangedFrom: resized } : {}),
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
      ...(references ?? {}),
    });
  }

  /** Ends a run on our initiative: stop, start timeout or stall. Its exit is handled by finish(). */
  private endRun(run: Run, why: 'stop' | IngestError): void {
    if (run.killedFor) {
      if (why === 'stop') run.killedFor = 'stop';
      return;
    }
    run.killedFor = why;
    run.reader.discard();
    if (run.proc) this.terminate(run.proc);
  }

  private terminate(proc: ChildProcess): void {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }, this.config.killTimeoutMs);
    proc.once('exit', () => clearTimeout(timer));
  }

  private maybeFinish(run: Run): void {
    if (!run.exit || !run.readerFinished) return;
    run.pipe?.close();
    if (run !== this.run) return run.resolveDone();
    this.run = undefined;
    this.counters.bytesRead += run.reader.bytesRead;
    this.counters.truncatedBytes += run.killedFor ? 0 : run.reader.partialBytes;
    this.clearTimer('startTimer');
    this.clearTimer('watchdog');
    try {
      this.afterRun(run);
    } finally {
      run.resolveDone();
    }
  }

  private afterRun(run: Run): void {
    if (run.killedFor === 'stop') return; // shutdown() sets 'stopped'
    const endedAt = Date.now();
    // A connection that ended while waiting for its next frame: frames come at least that far apart (or the source is gone).
    if (run.lastFrameAt !== undefined && this.source.live) this.cadence.endedWaiting(endedAt - run.lastFrameAt);
    let error: IngestError;
    if (run.killedFor) {
      error = run.killedFor;
    } else if (!run.exit?.error && run.frames === 0) {
      // ffmpeg read to the end without one decodable frame: nothing there was video we can use.
      const found = classifyStderr(run.sinceFrame);
      error = found ? { code: found.code, message: found.message } : (this.source.live ? { code: 'STREAM_ENDED', message: 'the source ended the stream before its first frame' } : { code: 'INVALID_DATA', message: 'the input ended without a single decodable frame' });
    } else if (!run.exit?.error) {
      if (this.source.onEnd === 'stop') {
        this.setState('stopped');
        this.emit('ended');
        return;
      }
      const quiet = run.lastFrameAt === undefined ? 0 : endedAt - run.lastFrameAt;
      // ffmpeg ends "normally" when its network I/O timeout passes without data: that is a timeout, not the source ending the stream.
      error =
        this.source.live && quiet >= 0.9 * run.ioTimeoutMs
          ? { code: 'TIMEOUT', message: `no data from the source for ${quiet} ms (ffmpeg's I/O timeout, ${run.ioTimeoutMs} ms; it follows the measured frame interval from now on)` }
          : { code: 'STREAM_ENDED', message: 'the source ended the stream' };
    } else {
      error = this.explain(run, run.exit.error);
    }
    const permanent = !this.source.live || this.config.failOn.includes(error.code);
    this.counters.attempts = attemptsAfterConnection(this.counters.attempts, { frames: run.frames, firstFrameAt: run.firstFrameAt, endedAt }, this.config.reconnect.stableAfterMs);
    const max = this.config.reconnect.maxAttempts;
    if (permanent || (max > 0 && this.counters.attempts >= max)) {
      this.setState('failed', error);
      return;
    }
    const delay = backoffDelay(this.counters.attempts, this.config.reconnect, this.random);
    // The timer exists before listeners hear 'reconnecting', so a start() or stop() they call sees it.
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.spawn();
    }, delay);
    this.setState('reconnecting', { ...error, message: `${error.message} (retry in ${delay} ms)` });
  }

  private explain(run: Run, err: Error): IngestError {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || /Cannot find ffmpeg/.test(err.message)) {
      return { code: 'FFMPEG_NOT_FOUND', message: `cannot run ffmpeg (${this.config.ffmpegPath})` };
    }
    const found = classifyStderr(run.sinceFrame);
    // A server that accepts the connection and then says nothing makes ffmpeg give up at its I/O
    // timeout with "Invalid data found"; from the outside that is a timeout.
    if (found?.code === 'INVALID_DATA' && this.source.live && run.frames === 0 && Date.now() - run.startedAt >= 0.9 * this.config.ioTimeoutMs) {
      return { code: 'TIMEOUT', message: `no answer from the source within ${this.config.ioTimeoutMs} ms (ffmpeg: ${found.line})` };
    }
    if (found) return { code: found.code, message: found.message };
    const status = /exited with code (\d+)|killed with signal (\w+)/.exec(err.message);
    const how = status ? (status[1] ? `exit code ${status[1]}` : `signal ${status[2]}`) : this.scrub(err.message.split('\n')[0]);
    return { code: 'FFMPEG_FAILED', message: `ffmpeg stopped (${how})` };
  }

  private scrub(text: string): string {
    return redactText(text, this.source.secrets);
  }
}

/** The most the measured cadence stretches the watchdog and ffmpeg's I/O timeout: a camera down for good must still be noticed. */
const MAX_CADENCE_TIMEOUT_MS = 120_000;

function push(lines: string[], line: string, max: number): void {
  lines.push(line);
  if (lines.length > max) lines.splice(0, lines.length - max);
}
