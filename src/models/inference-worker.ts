/**
 * The inference thread: owns onnxruntime sessions and runs them off the main thread. onnxruntime-node
 * runs a session synchronously on the thread that calls it, so on the main thread every model call
 * would stop ffmpeg reads, HTTP and WebSocket traffic, and the JavaScript work of other frames.
 * Messages: see inference-thread.ts.
 */
import { parentPort } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import { runInChunks } from './chunked-run.js';
import type { WorkerReply, WorkerRequest } from './inference-thread.js';

if (!parentPort) throw new Error('inference-worker.ts must run as a worker thread');
const port = parentPort;
const sessions = new Map<number, { session: ort.InferenceSession; maxBatch: number }>();

function reply(message: WorkerReply, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

/**
 * One request at a time. onnxruntime-node's run() returns a promise at once but then computes
 * synchronously on this thread: requests started together (the P-Net levels of a pyramid are
 * posted together) all took their start time at once, so each run's measured time included the
 * runs before it, and no reply left until the last run had finished.
 */
let tail: Promise<unknown> = Promise.resolve();

port.on('message', (msg: WorkerRequest) => {
  const next = tail.then(() => handle(msg));
  tail = next.catch(() => undefined);
});

async function handle(msg: WorkerRequest): Promise<void> {
  try {
    switch (msg.op) {
      case 'load': {
        const session = typeof msg.source === 'string' ? await ort.InferenceSession.create(msg.source, msg.options) : await ort.InferenceSession.create(msg.source, msg.options);
        sessions.set(msg.session, { session, maxBatch: msg.maxBatch });
        reply({ op: 'loaded', req: msg.req, inputNames: [...session.inputNames], outputNames: [...session.outputNames] });
        return;
      }
      case 'run': {
        const loaded = sessions.get(msg.session);
        if (!loaded) throw new Error(`no session ${msg.session}`);
        const input = new Float32Array(msg.buffer, msg.byteOffset, msg.length);
        const start = performance.now();
        const outputs = await runInChunks(loaded.session, msg.inputName, input, msg.dims, loaded.maxBatch);
        const ms = performance.now() - start;
        const transfer: ArrayBuffer[] = [msg.buffer];
        for (const { data } of Object.values(outputs)) {
          if (!transfer.includes(data.buffer as ArrayBuffer)) transfer.push(data.buffer as ArrayBuffer);
        }
        reply({ op: 'result', req: msg.req, ms, outputs, buffer: msg.buffer }, transfer);
        return;
      }
      case 'release': {
        await sessions.get(msg.session)?.session.release();
        sessions.delete(msg.session);
        reply({ op: 'released', req: msg.req });
        return;
      }
    }
  } catch (err) {
    reply({ op: 'error', req: msg.req, message: err instanceof Error ? err.message : String(err), buffer: msg.op === 'run' ? msg.buffer : undefined }, msg.op === 'run' ? [msg.buffer] : []);
  }
}
