import { GatewayErrors } from '../../errors.js';

export interface GroupCommitOptions {
  /** Events that trigger a commit at once (commit.maxEvents). */
  maxEvents: number;
  /** How long the first waiting entry waits for company, ms (commit.maxWaitMs). */
  maxWaitMs: number;
  /** Events allowed to wait; beyond it `submit` rejects with METEORZX_GATEWAY_OVERLOADED (HTTP 503 + Retry-After). */
  maxQueuedEvents: number;
  /** Called with the queue depth (events) whenever it changes. */
  onDepth?: (events: number) => void;
}

interface Waiting<T, R> {
  entry: T;
  size: number;
  resolve: (result: R) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit (DESIGN §3.1): callers from every listener queue entries;
 * when `maxEvents` are waiting, or `maxWaitMs` after the first one arrived,
 * one batch goes to `process` — which makes it durable with one synced
 * write — and each caller's promise settles with its own result. Single
 * flight: batches are processed one at a time in arrival order, and what
 * queued during a commit goes out as soon as it ends (it has waited
 * already). An entry is never split across commits.
 */
export class GroupCommitter<T, R> {
  private queue: Array<Waiting<T, R>> = [];
  private queued = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inFlight: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly opts: GroupCommitOptions,
    private readonly size: (entry: T) => number,
    private readonly process: (entries: T[]) => Promise<R[]>,
  ) {}

  submit(entry: T): Promise<R> {
    if (this.closed) return Promise.reject(GatewayErrors.METEORZX_PIPELINE_CLOSED('the pipeline is closed'));
    const size = this.size(entry);
    // An empty queue always admits: a single batch larger than the bound must not wait forever.
    if (this.queued > 0 && this.queued + size > this.opts.maxQueuedEvents) {
      return Promise.reject(
        GatewayErrors.METEORZX_GATEWAY_OVERLOADED(`${this.queued} events are waiting to be stored (limit ${this.opts.maxQueuedEvents}); retry later`),
      );
    }
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ entry, size, resolve, reject });
      this.queued += size;
      this.opts.onDepth?.(this.queued);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.inFlight !== undefined || this.queue.length === 0) return;
    if (this.queued >= this.opts.maxEvents || this.opts.maxWaitMs <= 0) {
      this.flushNow();
    } else {
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.flushNow();
      }, this.opts.maxWaitMs);
    }
  }

  private flushNow(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.inFlight !== undefined || this.queue.length === 0) return;
    const batch: Array<Waiting<T, R>> = [];
    let events = 0;
    while (this.queue.length > 0 && (batch.length === 0 || events + (this.queue[0] as Waiting<T, R>).size <= this.opts.maxEvents)) {
      const next = this.queue.shift() as Waiting<T, R>;
      batch.push(next);
      events += next.size;
    }
    this.queued -= events;
    this.opts.onDepth?.(this.queued);
    this.inFlight = this.run(batch).finally(() => {
      this.inFlight = undefined;
      // Whatever queued meanwhile has waited a whole commit already: send it now.
      if (this.queue.length > 0) this.flushNow();
    });
  }

  private async run(batch: Array<Waiting<T, R>>): Promise<void> {
    try {
      const results = await this.process(batch.map((w) => w.entry));
      batch.forEach((w, i) => w.resolve(results[i] as R));
    } catch (err) {
      for (const w of batch) w.reject(err);
    }
  }

  /** Stops taking entries, commits everything already queued, and resolves when the last commit is done. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.inFlight !== undefined || this.queue.length > 0) {
      if (this.inFlight === undefined) this.flushNow();
      await this.inFlight;
    }
  }
}
