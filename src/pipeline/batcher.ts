/**
 * Dynamic batching in the manner of inference servers (Triton's dynamic batch scheduler): send as
 * soon as a full batch is queued; otherwise wait while the oldest queued item is younger than
 * `maxDelayMs`, then send what is there. Items that waited past `queueTimeoutMs` are rejected, not
 * served late; a full queue rejects new items at once (the caller decides what dropping means).
 */

export interface BatcherOptions {
  maxBatch: number;
  maxDelayMs: number;
  /** Queued items beyond this are refused immediately. */
  maxQueue: number;
  /** Items older than this when a batch forms are rejected (0: never). */
  queueTimeoutMs?: number;
  /** Batches run at the same time (1 keeps one model call in flight, enough on CPU). */
  concurrency?: number;
}

export type BatchDecision = { action: 'send'; size: number } | { action: 'wait'; ms: number } | { action: 'idle' };

/** The send-or-wait choice, pure so it can be tested without timers. */
export function batchDecision(queued: number, oldestAgeMs: number, opts: Pick<BatcherOptions, 'maxBatch' | 'maxDelayMs'>): BatchDecision {
  if (queued === 0) return { action: 'idle' };
  if (queued >= opts.maxBatch) return { action: 'send', size: opts.maxBatch };
  if (oldestAgeMs >= opts.maxDelayMs) return { action: 'send', size: queued };
  return { action: 'wait', ms: opts.maxDelayMs - oldestAgeMs };
}

export class BatcherRejection extends Error {
  constructor(readonly reason: 'queue-full' | 'queue-timeout' | 'closed') {
    super(`batcher rejected the item: ${reason}`);
  }
}

interface Pending<I, O> {
  item: I;
  enqueuedAt: number;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
}

export interface BatcherStats {
  items: number;
  batches: number;
  rejected: number;
  queueMsTotal: number;
  runMsTotal: number;
}

export class DynamicBatcher<I, O> {
  private queue: Pending<I, O>[] = [];
  private running = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  readonly stats: BatcherStats = { items: 0, batches: 0, rejected: 0, queueMsTotal: 0, runMsTotal: 0 };
  /** Called after each batch with its size, queue wait of its oldest item and run time (metrics hook). */
  onBatch?: (size: number, oldestQueueMs: number, runMs: number) => void;

  constructor(
    private readonly run: (items: I[]) => Promise<O[]>,
    private readonly opts: BatcherOptions,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get queued(): number {
    return this.queue.length;
  }

  submit(item: I): Promise<O> {
    if (this.closed) return Promise.reject(new BatcherRejection('closed'));
    if (this.queue.length >= this.opts.maxQueue) {
      this.stats.rejected++;
      return Promise.reject(new BatcherRejection('queue-full'));
    }
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, enqueuedAt: this.now(), resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.running < (this.opts.concurrency ?? 1)) {
      this.expire();
      const d = batchDecision(this.queue.length, this.queue.length ? this.now() - this.queue[0].enqueuedAt : 0, this.opts);
      if (d.action === 'idle') return;
      if (d.action === 'wait') {
        this.timer = setTimeout(() => this.pump(), Math.max(0, Math.ceil(d.ms)));
        return;
      }
      void this.dispatch(this.queue.splice(0, d.size));
    }
  }

  private expire(): void {
    const timeout = this.opts.queueTimeoutMs ?? 0;
    if (!timeout) return;
    const now = this.now();
    while (this.queue.length && now - this.queue[0].enqueuedAt > timeout) {
      this.stats.rejected++;
      this.queue.shift()!.reject(new BatcherRejection('queue-timeout'));
    }
  }

  private async dispatch(batch: Pending<I, O>[]): Promise<void> {
    this.running++;
    const start = this.now();
    const oldestQueueMs = start - batch[0].enqueuedAt;
    for (const p of batch) this.stats.queueMsTotal += start - p.enqueuedAt;
    try {
      const out = await this.run(batch.map((p) => p.item));
      if (out.length !== batch.length) throw new Error(`batch function returned ${out.length} results for ${batch.length} items`);
      batch.forEach((p, i) => p.resolve(out[i]));
    } catch (err) {
      for (const p of batch) p.reject(err);
    } finally {
      const runMs = this.now() - start;
      this.stats.items += batch.length;
      this.stats.batches++;
      this.stats.runMsTotal += runMs;
      this.onBatch?.(batch.length, oldestQueueMs, runMs);
      this.running--;
      this.pump();
    }
  }

  /** Rejects everything queued; running batches finish. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const p of this.queue.splice(0)) p.reject(new BatcherRejection('closed'));
  }
}
