import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import ort from 'onnxruntime-node';
import type { RuntimeConfig } from '../config/schema.js';
import { FacestreamError, errorMessage } from '../errors.js';
import { rootLogger, type Logger } from '../log.js';
import { CPU_MAX_RUN_BATCH, runInChunks } from './chunked-run.js';
import { rewritePrelu } from './graph/prelu.js';
import { InferenceThread, type OutputTensor } from './inference-thread.js';
import type { ModelSpec } from './manifest.js';
import { modelSpec } from './manifest.js';
import type { ModelStore } from './store.js';

const require = createRequire(import.meta.url);

export type { OutputTensor } from './inference-thread.js';
/** @deprecated name kept for callers: a model output. */
export type Tensor = OutputTensor;
export type ExecutionProvider = RuntimeConfig['executionProviders'][number];

/** Cumulative cost of one model: calls, items (batch rows) and milliseconds inside onnxruntime. */
export interface ModelTiming {
  calls: number;
  items: number;
  ms: number;
}

/** Optional hook so metrics (src/server) can observe every inference without the runtime knowing prom-client. */
export type InferenceObserver = (modelId: string, batch: number, ms: number, error?: unknown) => void;

/** A loaded session, on the inference thread or on this one. */
interface SessionHandle {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(inputName: string, input: Float32Array, dims: readonly number[]): Promise<{ outputs: Record<string, OutputTensor>; ms: number; input: Float32Array }>;
  release(): Promise<void>;
}

/**
 * onnxruntime-node runs a session synchronously on the calling thread (its async `run` only
 * defers the call with setImmediate). Sessions kept on the main thread (runtime.inferenceThread
 * off) chain their runs so each run's measured time is its own.
 */
let runTail: Promise<unknown> = Promise.resolve();

function inTurn<T>(fn: () => Promise<T>): Promise<T> {
  const next = runTail.then(fn);
  runTail = next.catch(() => undefined);
  return next;
}

class LocalSession implements SessionHandle {
  constructor(
    private readonly session: ort.InferenceSession,
    private readonly maxBatch: number,
  ) {}

  get inputNames() {
    return this.session.inputNames;
  }

  get outputNames() {
    return this.session.outputNames;
  }

  run(inputName: string, input: Float32Array, dims: readonly number[]) {
    return inTurn(async () => {
      const start = performance.now();
      const outputs = await runInChunks(this.session, inputName, input, dims, this.maxBatch);
      const ms = performance.now() - start;
      return { outputs, ms, input };
    });
  }

  release() {
    return this.session.release();
  }
}

/**
 * One onnxruntime session for one model, shared by every caller. Inputs are float32 NCHW batches.
 */
export class OnnxModel {
  readonly timing: ModelTiming = { calls: 0, items: 0, ms: 0 };

  constructor(
    readonly id: string,
    readonly spec: ModelSpec,
    readonly provider: ExecutionProvider,
    private readonly session: SessionHandle,
    private readonly observe?: InferenceObserver,
  ) {}

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /**
   * Runs one batch; `dims` is [batch, channels, height, width]. The call takes `data` over: on
   * the inference thread its memory moves there, and comes back through `onInputReturned` (for
   * callers that reuse their buffers); don't read or write `data` after calling.
   */
  async run(data: Float32Array, dims: readonly number[], onInputReturned?: (input: Float32Array) => void): Promise<Record<string, OutputTensor>> {
    const start = performance.now();
    try {
      const { outputs, ms, input } = await this.session.run(this.spec.input.name, data, dims);
      onInputReturned?.(input);
      this.timing.calls += 1;
      this.timing.items += dims[0];
      this.timing.ms += ms;
      this.observe?.(this.id, dims[0], ms);
      return outputs;
    } catch (err) {
      this.observe?.(this.id, dims[0], performance.now() - start, err);
      throw new FacestreamError('INFERENCE_FAILED', `inference with model "${this.id}" failed on input [${dims.join(', ')}]: ${errorMessage(err)}`, {
        model: this.id,
      });
    }
  }

  resetTiming(): void {
    this.timing.calls = 0;
    this.timing.items = 0;
    this.timing.ms = 0;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

function sessionOptions(cfg: RuntimeConfig, provider: ExecutionProvider): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [provider],
    intraOpNumThreads: cfg.intraOpThreads,
    interOpNumThreads: cfg.interOpThreads,
    graphOptimizationLevel: cfg.graphOptimization,
    executionMode: 'sequential',
    // 3 = errors only: the shipped SSR-Net files trigger harmless "unused initializer" warnings.
    logSeverityLevel: 3,
    enableMemPattern: cfg.memoryPattern,
    extra: { session: { intra_op: { allow_spinning: cfg.spinning ? '1' : '0' }, inter_op: { allow_spinning: cfg.spinning ? '1' : '0' } } },
  };
}

/**
 * Loads models on demand, once each. The execution provider is chosen once, on the first load:
 * the first provider in the configured list that can create a session wins, and the choice is logged.
 */
export class ModelRuntime {
  private readonly sessions = new Map<string, Promise<OnnxModel>>();
  private chosen: ExecutionProvider | undefined;
  private providerChoice: Promise<ExecutionProvider> | undefined;
  private readonly logger: Logger;
  private thread: InferenceThread | undefined;
  observer: InferenceObserver | undefined;

  constructor(
    readonly store: ModelStore,
    readonly config: RuntimeConfig,
    logger?: Logger,
  ) {
    this.logger = logger ?? rootLogger();
  }

  get executionProvider(): ExecutionProvider | undefined {
    return this.chosen;
  }

  get manifest() {
    return this.store.manifest;
  }

  load(id: string): Promise<OnnxModel> {
    let pending = this.sessions.get(id);
    if (!pending) {
      pending = this.create(id);
      this.sessions.set(id, pending);
      // A failed load must not poison the cache: the next caller retries (after `models fill`, say).
      pending.catch(() => this.sessions.delete(id));
    }
    return pending;
  }


  /**
   * Picks the execution provider once: the first configured one that can run. CUDA is tried only
   * when onnxruntime-node's CUDA provider library is installed (it is not when installed with
   * ONNXRUNTIME_NODE_INSTALL=skip), so a CPU-only machine gets one clear log line, not a native error.
   */
  private chooseProvider(probeFile: string): Promise<ExecutionProvider> {
    this.providerChoice ??= (async () => {
      const skipped: string[] = [];
      const failed: string[] = [];
      for (const provider of this.config.executionProviders) {
        if (provider === 'cpu') {
          this.logSelection(provider, skipped, failed);
          return provider;
        }
        const library = path.join(path.dirname(require.resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', `${process.platform}`, `${process.arch}`, 'libonnxruntime_providers_cuda.so');
        if (!fs.existsSync(library)) {
          skipped.push(`cuda: onnxruntime-node's CUDA provider is not installed (${library} missing; see README, "GPU")`);
          continue;
        }
        try {
          const probe = await ort.InferenceSession.create(probeFile, sessionOptions(this.config, provider));
          await probe.release();
          this.logSelection(provider, skipped, failed);
          return provider;
        } catch (err) {
          failed.push(`${provider}: ${errorMessage(err).split('\n')[0]}`);
        }
      }
      throw new FacestreamError('MODEL_LOAD_FAILED', `no configured execution provider works: ${[...skipped, ...failed].join('; ')}`);
    })();
    return this.providerChoice;
  }

  private logSelection(provider: ExecutionProvider, skipped: string[], failed: string[]): void {
    this.chosen = provider;
    // Not installed is the normal state of a CPU machine; installed but failing deserves a warning.
    if (failed.length) this.logger.warn({ failed }, `onnxruntime: execution provider failed: ${failed.join('; ')}`);
    this.logger.info(
      { executionProvider: provider, intraOpThreads: this.config.intraOpThreads, spinning: this.config.spinning, skipped: skipped.length ? skipped : undefined },
      `onnxruntime: using the ${provider.toUpperCase()} execution provider`,
    );
  }

  private async create(id: string): Promise<OnnxModel> {
    const spec = modelSpec(this.store.manifest, id);
    const file = await this.store.require(id);
    const provider = await this.chooseProvider(file);
    let session: SessionHandle;
    try {
      const source = provider === 'cpu' && this.config.rewritePrelu ? await this.rewritten(id, file) : file;
      const options = sessionOptions(this.config, provider);
      const maxBatch = this.config.maxRunBatch ?? (provider === 'cpu' ? CPU_MAX_RUN_BATCH : Number.MAX_SAFE_INTEGER);
      if (this.config.inferenceThread) {
        this.thread ??= new InferenceThread();
        session = await this.thread.load(source, options, maxBatch);
      } else {
        session = new LocalSession(typeof source === 'string' ? await ort.InferenceSession.create(source, options) : await ort.InferenceSession.create(source, options), maxBatch);
      }
    } catch (err) {
      if (err instanceof FacestreamError) throw err;
      throw new FacestreamError('MODEL_LOAD_FAILED', `could not load model "${id}" from ${file} (${provider}): ${errorMessage(err).split('\n')[0]}`, { model: id, file });
    }
    const missing = spec.outputs.map((o) => o.name).filter((n) => !session.outputNames.includes(n));
    if (!session.inputNames.includes(spec.input.name) || missing.length) {
      await session.release();
      throw new FacestreamError(
        'MODEL_MISMATCH',
        `model "${id}" (${file}) does not match its manifest entry: expected input "${spec.input.name}" and outputs ${spec.outputs.map((o) => o.name).join(', ')}, found input ${session.inputNames.join(', ')} and outputs ${session.outputNames.join(', ')}`,
        { model: id },
      );
    }
    this.logger.debug({ model: id, provider }, 'model loaded');
    return new OnnxModel(id, spec, provider, session, (...a) => this.observer?.(...a));
  }

  /**
   * The model rewritten for onnxruntime's CPU kernels (see graph/prelu.ts), or the file path when
   * no rule applies. A rewrite that fails is logged and the file is loaded as it is.
   */
  private async rewritten(id: string, file: string): Promise<string | Uint8Array> {
    const bytes = await fs.promises.readFile(file);
    try {
      const { model, report } = rewritePrelu(bytes);
      if (model === bytes) return file;
      this.logger.debug({ model: id, ...report }, 'model graph rewritten for the CPU provider');
      return model;
    } catch (err) {
      this.logger.warn({ model: id, err: errorMessage(err) }, `model "${id}": graph rewrite failed, loading the file as it is`);
      return file;
    }
  }

  /** Every model loaded so far, for timing reports. */
  async models(): Promise<OnnxModel[]> {
    const settled = await Promise.allSettled(this.sessions.values());
    return settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  }

  async close(): Promise<void> {
    const models = await this.models();
    this.sessions.clear();
    await Promise.all(models.map((m) => m.release()));
    await this.thread?.close();
    this.thread = undefined;
  }
}
