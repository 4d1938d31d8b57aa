import { GatewayErrors } from '../../errors.js';

export interface GroupCommitOptions<T = unknown> {
  /** Most events in one commit (commit.maxEvents); an entry is never split, so one larger entry goes alone. */
  maxEvents: number;
  /** When nothing is in flight, how long the first waiting entry waits for company, ms (commit.maxWaitMs). */
  maxWaitMs: number;
  /** Events allowed to wait; beyond it `submit` rejects with METEORZX_GATEWAY_OVERLOADED (HTTP 503 + Retry-After). */
  maxQueuedEvents: number;
  /**
   * Commits under way at once (default 2): one being written while the next
   * is prepared. 1 gives strictly one commit at a time.
   */
  maxInFlight?: number;
  /** Called with the queue depth (events) whenever it changes. */
  onDepth?: (events: number) => void;
  /** Called for each entry answered with an error (refused when the queue is full, or its commit failed). */
  onRefused?: (entry: T, err: unknown) => void;
}

/** What `prepare` hands back once a commit is under way: `done` settles when it is durable, or failed. */
export interface Prepared<R> {
  done: Promise<R[]>;
}

/** Prepares one commit (CPU work, ordered) and starts its write; see GroupCommitter. */
export type PrepareCommit<T, R> = (entries: T[]) => Promise<Prepared<R>>;

interface Waiting<T, R> {
  entry: T;
  size: number;
  resolve: (result: R) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit (DESIGN §3.1) with a two-stage pipeline. Callers from every
 * listener queue entries; a batch goes to `prepare`, which does the CPU
 * work (stages, serialisation, hashing) and starts the synced write, and
 * whose `done` settles each caller's promise with its own result.
 *
 * Pipelining: prepares run one at a time in arrival order (the ledger chain
 * and dedup depend on that order), but the next prepare starts as soon as
 * the previous one has handed its write over, so commit k+1 is built while
 * commit k's fsync is in flight. `prepare` owns the consequences: it must
 * apply writes in order and fail k+1 when k fails, since k+1 was built on
 * top of k. Batch size adapts to load: when a slot frees, everything queued
 * (up to `maxEvents`) goes; the `maxWaitMs` timer only gathers company when
 * the committer is idle.
 */
export class GroupCommitter<T, R> {
  private queue: Array<Waiting<T, R>> = [];
  private queued = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private immediate: ReturnType<typeof setImmediate> | undefined;
  private preparing = false;
  /** Batches whose prepare started and whose `done` has not settled. */
  private unsettled = 0;
  private readonly running = new Set<Promise<void>>();
  private readonly maxInFlight: number;
  private closed = false;

  constructor(
    private readonly opts: GroupCommitOptions<T>,
    private readonly size: (entry: T) => number,
    private readonly prepare: PrepareCommit<T, R>,
  ) {
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 2);
  }

  /** Adapts a one-step `process` (prepare and write together) to the committer: no overlap between commits. */
  static serial<T, R>(process: (entries: T[]) => Promise<R[]>): PrepareCommit<T, R> {
    return (entries) => Promise.resolve({ done: process(entries) });
  }

  submit(entry: T): Promise<R> {
    if (this.closed) return this.refuse(entry, GatewayErrors.METEORZX_PIPELINE_CLOSED('the pipeline is closed'));
    const size = this.size(entry);
    // An empty queue always admits: a single batch larger than the bound must not wait forever.
    if (this.queued > 0 && this.queued + size > this.opts.maxQueuedEvents) {
      return this.refuse(
        entry,
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

  private refuse(entry: T, err: unknown): Promise<R> {
    this.opts.onRefused?.(entry, err);
    return Promise.reject(err);
  }

  private fail(batch: ReadonlyArray<Waiting<T, R>>, err: unknown): void {
    for (const w of batch) {
      this.opts.onRefused?.(w.entry, err);
      w.reject(err);
    }
  }

  /**
   * Starts the next batch when a prepare slot is free. `waited`: the queued
   * entries have already waited for a commit to end, so no timer. The start
   * is deferred to setImmediate, after the event loop's I/O phase, so that
   * every socket read in this turn (a wave of PUBLISHes) joins the batch.
   */
  private schedule(waited = false): void {
    if (this.preparing || this.unsettled >= this.maxInFlight || this.queue.length === 0) return;
    // Idle: wait a little for company. Busy: these entries are waiting for the commit in flight anyway.
    if (this.unsettled === 0 && !waited && !this.closed && this.queued < this.opts.maxEvents && this.opts.maxWaitMs > 0) {
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.flushNow();
      }, this.opts.maxWaitMs);
      return;
    }
    if (this.queued >= this.opts.maxEvents) {
      this.flushNow(); // a full batch gains nothing by waiting
      return;
    }
    this.immediate ??= setImmediate(() => {
      this.immediate = undefined;
      this.flushNow();
    });
  }

  private flushNow(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.immediate !== undefined) {
      clearImmediate(this.immediate);
      this.immediate = undefined;
    }
    if (this.preparing || this.unsettled >= this.maxInFlight || this.queue.length === 0) return;
    let taken = 0;
    let events = 0;
    while (taken < this.queue.length && (taken === 0 || events + (this.queue[taken] as Waiting<T, R>).size <= this.opts.maxEvents)) {
      events += (this.queue[taken] as Waiting<T, R>).size;
      taken += 1;
    }
    const batch = this.queue.splice(0, taken);
    this.queued -= events;
    this.opts.onDepth?.(this.queued);
    this.preparing = true;
    this.unsettled += 1;
    const run = this.run(batch).finally(() => {
      this.running.delete(run);
      this.unsettled -= 1;
      this.schedule(true);
    });
    this.running.add(run);
  }

  private async run(batch: Array<Waiting<T, R>>): Promise<void> {
    let prepared: Prepared<R>;
    try {
      prepared = await this.prepare(batch.map((w) => w.entry));
    } catch (err) {
      this.fail(batch, err);
      return;
    } finally {
      this.preparing = false;
    }
    // The write is under way: the next batch may be prepared meanwhile.
    this.schedule(true);
    try {
      const results = await prepared.done;
      batch.forEach((w, i) => w.resolve(results[i] as R));
    } catch (err) {
      this.fail(batch, err);
    }
  }

  /** Stops taking entries, commits everything already queued, and resolves when the last commit is done. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.running.size > 0 || this.queue.length > 0) {
      this.flushNow();
      await Promise.all([...this.running]);
    }
  }
}
