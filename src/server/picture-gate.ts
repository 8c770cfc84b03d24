import type { FastifyReply } from 'fastify';
import { FacestreamError } from '../errors.js';

/**
 * At most `concurrent` pictures are decoded and analysed at once, and at most `waiting` more
 * wait for a turn; past that a request is refused with 503 OVERLOADED at once. A waiting
 * request whose client has gone (socket closed) is dropped before its work starts. Together
 * with the decode budget (src/image/budget.ts) this bounds memory and CPU taken by picture routes
 * whatever the clients send, and keeps libuv's thread pool (4 threads, shared with file reads)
 * free enough that the viewer's files are still served.
 */
export class PictureGate {
  private active = 0;
  private readonly queue: { start: () => void; signal: AbortSignal }[] = [];

  constructor(
    readonly concurrent: number,
    readonly waiting: number,
  ) {}

  /** Work in flight and waiting (metrics, tests). */
  get depth(): { active: number; waiting: number } {
    return { active: this.active, waiting: this.queue.length };
  }

  /**
   * Runs `work` when a slot is free. `signal` aborts the wait (the client went away): the
   * promise then rejects and `work` never runs. Throws OVERLOADED when the queue is full.
   */
  async run<T>(signal: AbortSignal, work: () => Promise<T>): Promise<T> {
    if (signal.aborted) throw gone();
    if (this.active >= this.concurrent) {
      if (this.queue.length >= this.waiting) {
        throw new FacestreamError('OVERLOADED', `the server is busy with ${this.active} pictures and ${this.queue.length} waiting (server.limits.concurrentPictures, queuedPictures); retry shortly`, {
          active: this.active,
          waiting: this.queue.length,
        });
      }
      await new Promise<void>((resolve, reject) => {
        const entry = { start: resolve, signal };
        const onAbort = () => {
          const i = this.queue.indexOf(entry);
          if (i >= 0) this.queue.splice(i, 1);
          reject(gone());
        };
        entry.start = () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
        signal.addEventListener('abort', onAbort, { once: true });
        this.queue.push(entry);
      });
    }
    this.active++;
    try {
      return await work();
    } finally {
      this.active--;
      this.next();
    }
  }

  private next(): void {
    while (this.active < this.concurrent && this.queue.length) {
      const entry = this.queue.shift()!;
      if (!entry.signal.aborted) {
        entry.start();
        return;
      }
    }
  }
}

function gone(): FacestreamError {
  return new FacestreamError('BAD_REQUEST', 'the client closed the connection before its picture was processed', {});
}

/**
 * An AbortSignal that fires when the client disconnects before its answer is sent (Node emits
 * 'close' on the response then, with writableFinished still false).
 */
export function clientGoneSignal(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  const res = reply.raw;
  if (res.destroyed && !res.writableFinished) ac.abort();
  else res.once('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  return ac.signal;
}
