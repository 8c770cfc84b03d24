/**
 * An analysis worker: a FaceAnalyzer of its own (onnxruntime sessions run synchronously on this
 * thread) and the JavaScript and WebAssembly of detection (pyramid and crop pooling, candidate
 * scans, NMS), motion masks and face alignment. Frames arrive on SharedArrayBuffers, so nothing is
 * copied. Messages: see protocol.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { FacestreamError } from '../../errors.js';
import { createLogger } from '../../log.js';
import { ModelRuntime } from '../../models/runtime.js';
import { ModelStore } from '../../models/store.js';
import { FaceAnalyzer } from '../analyzer.js';
import { FrameDetector } from '../detect/frame-detector.js';
import type { AnalysisReply, AnalysisRequest, AnalysisWorkerSetup, ModelRunRecord } from './protocol.js';

if (!parentPort) throw new Error('analysis-worker.ts must run as a worker thread');
const port = parentPort;
const setup = workerData as AnalysisWorkerSetup;

async function start(): Promise<void> {
  const runtime = new ModelRuntime(new ModelStore(setup.manifest, setup.modelsDir), { ...setup.runtime, inferenceThread: false }, createLogger('warn'));
  let runs: ModelRunRecord[] = [];
  runtime.observer = (modelId, batch, ms, error) => {
    if (!error) runs.push([modelId, batch, ms]);
  };
  const analyzer = await FaceAnalyzer.create(runtime, setup.analyzer);
  const detector = new FrameDetector(analyzer.detector, { ...setup.detection, minScore: analyzer.minScore, scaleFactor: analyzer.detector.options.scaleFactor });
  const reply = (msg: AnalysisReply) => port.postMessage(msg);

  // One request at a time: onnxruntime computes synchronously on this thread anyway, and the
  // host only sends a worker more work once it answered.
  let tail: Promise<unknown> = Promise.resolve();
  port.on('message', (msg: AnalysisRequest) => {
    tail = tail.then(async () => {
      runs = [];
      try {
        switch (msg.op) {
          case 'detect':
            reply({ op: 'detect', id: msg.id, results: await detector.detect(msg.requests), runs });
            return;
          case 'embed':
            reply({ op: 'embed', id: msg.id, vectors: await analyzer.embedder.embedFaces(msg.items), runs });
            return;
          case 'close':
            // Released here, not by terminate(): ending a thread whose onnxruntime sessions are
            // alive (or running) aborts the whole process from native code.
            await runtime.close();
            port.close();
            return;
          case 'attributes':
            if (!analyzer.attributes) throw new Error('age/gender estimation is off');
            reply({ op: 'attributes', id: msg.id, attributes: await analyzer.attributes.estimate(msg.items), runs });
            return;
        }
      } catch (err) {
        reply({ op: 'error', id: msg.id, message: err instanceof Error ? err.message : String(err), code: err instanceof FacestreamError ? err.code : undefined });
      }
    });
  });
  reply({ op: 'ready', id: 0, hasAttributes: analyzer.attributes !== undefined });
}

start().catch((err: unknown) => {
  port.postMessage({ op: 'error', id: 0, message: err instanceof Error ? err.message : String(err), code: err instanceof FacestreamError ? err.code : undefined } satisfies AnalysisReply);
});
