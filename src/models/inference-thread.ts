import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type ort from 'onnxruntime-node';
import { FacestreamError } from '../errors.js';
import { PACKAGE_ROOT } from '../paths.js';

/** A model output as the pipeline reads it. */
export interface OutputTensor {
  data: Float32Array;
  dims: readonly number[];
}

export type WorkerRequest =
  | { op: 'load'; req: number; session: number; source: string | Uint8Array; options: ort.InferenceSession.SessionOptions; maxBatch: number }
  | { op: 'run'; req: number; session: number; inputName: string; buffer: ArrayBuffer; byteOffset: number; length: number; dims: number[] }
  | { op: 'release'; req: number; session: number };

export type WorkerReply =
  | { op: 'loaded'; req: number; inputNames: string[]; outputNames: string[] }
  | { op: 'result'; req: number; ms: number; outputs: Record<string, OutputTensor>; buffer: ArrayBuffer }
  | { op: 'released'; req: number }
  | { op: 'error'; req: number; message: string; buffer?: ArrayBuffer };

/** The compiled worker; tests and the CLI run after `npm run build` (vitest's setup builds when stale). */
export const WORKER_FILE = path.join(PACKAGE_ROOT, 'dist', 'src', 'models', 'inference-worker.js');

interface Pending {
  resolve: (r: WorkerReply) => void;
  reject: (e: Error) => void;
}

/**
 * The host side of the inference thread: one worker for every model of a runtime, so model runs
 * happen one at a time (each uses all intra-op threads) while the main thread keeps working.
 * A worker that dies fails what it was doing and is started again for the next request.
 */
export class InferenceThread {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextReq = 1;
  private nextSession = 1;
  private closed = false;

  private ensure(): Worker {
    if (this.closed) throw new FacestreamError('INFERENCE_FAILED', 'the inference thread was shut down');
    if (this.worker) return this.worker;
    if (!fs.existsSync(WORKER_FILE)) {
      throw new FacestreamError('MODEL_LOAD_FAILED', `the inference worker ${WORKER_FILE} is missing: run \`npm run build\` (or set runtime.inferenceThread to false)`);
    }
    const worker = new Worker(WORKER_FILE);
    worker.unref();
    worker.on('message', (msg: WorkerReply) => {
      const p = this.pending.get(msg.req);
      if (!p) return;
      this.pending.delete(msg.req);
      p.resolve(msg);
    });
    const fail = (err: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    worker.on('error', (err) => fail(new Error(`inference thread crashed: ${err.message}`)));
    worker.on('exit', (code) => fail(new Error(`inference thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }

  private request(build: (req: number) => WorkerRequest, transfer: ArrayBuffer[] = []): Promise<WorkerReply> {
    const worker = this.ensure();
    const req = this.nextReq++;
    return new Promise<WorkerReply>((resolve, reject) => {
      this.pending.set(req, { resolve, reject });
      // While requests are outstanding the worker must keep the process alive; idle, it must not.
      worker.ref();
      worker.postMessage(build(req), transfer);
    }).finally(() => {
      if (this.pending.size === 0) this.worker?.unref();
    });
  }

  /** `maxBatch`: items per onnxruntime run; larger batches run in parts (see chunked-run.ts). */
  async load(source: string | Uint8Array, options: ort.InferenceSession.SessionOptions, maxBatch: number): Promise<ThreadSession> {
    const session = this.nextSession++;
    const r = await this.request((req) => ({ op: 'load', req, session, source, options, maxBatch }));
    if (r.op === 'error') throw new Error(r.message);
    if (r.op !== 'loaded') throw new Error(`unexpected reply ${r.op}`);
    return new ThreadSession(this, session, r.inputNames, r.outputNames);
  }

  /** Runs a batch; the input's buffer is moved to the worker and handed back in the result. */
  async run(session: number, inputName: string, input: Float32Array, dims: readonly number[]): Promise<{ outputs: Record<string, OutputTensor>; ms: number; input: Float32Array }> {
    const buffer = input.buffer as ArrayBuffer;
    const { byteOffset, length } = input;
    const r = await this.request((req) => ({ op: 'run', req, session, inputName, buffer, byteOffset, length, dims: [...dims] }), [buffer]);
    if (r.op === 'error') throw new Error(r.message);
    if (r.op !== 'result') throw new Error(`unexpected reply ${r.op}`);
    return { outputs: r.outputs, ms: r.ms, input: new Float32Array(r.buffer, byteOffset, length) };
  }

  async release(session: number): Promise<void> {
    if (!this.worker) return;
    await this.request((req) => ({ op: 'release', req, session }));
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }
}

export class ThreadSession {
  constructor(
    private readonly thread: InferenceThread,
    private readonly id: number,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
  ) {}

  run(inputName: string, input: Float32Array, dims: readonly number[]) {
    return this.thread.run(this.id, inputName, input, dims);
  }

  release(): Promise<void> {
    return this.thread.release(this.id);
  }
}
