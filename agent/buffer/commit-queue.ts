import type { AuditEvent, ChainedEvent } from '../../protocols/index.js';
import type { UnreadableRange } from './corrupt-read.js';
import type { ExtraOp } from './types.js';

export interface PendingAppend {
  events: readonly AuditEvent[];
  extra: readonly ExtraOp[] | undefined;
  /** RFC 3339 receipt time: the `time` of events that came without one. */
  receivedAt: string;
  resolve(events: ChainedEvent[]): void;
  reject(err: unknown): void;
}

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

/** Everything one group commit writes. */
export interface CommitWork {
  appends: PendingAppend[];
  /** Highest seq acked since the last commit (0: none), of epoch `ackEpoch`. */
  ackTo: number;
  ackEpoch: string | undefined;
  ackWaiters: Waiter[];
  /** Run the retention sweep in this commit. */
  sweep: boolean;
  sweepWaiters: Waiter[];
  /** Free space even without incoming events (an ack made delivered blocks evictable). */
  makeRoom: boolean;
  /** Unreadable ranges found by reads: recorded as holes with a gap event. */
  repairs: UnreadableRange[];
  repairWaiters: Waiter[];
}

/**
 * Collects appends, acks and sweep requests from all callers and runs them
 * as group commits, one at a time, through `commit`. A commit waits
 * `intervalMs` for company, or starts at once when `maxEvents` are pending
 * or when the work is not an append (an ack or a sweep waits for nobody).
 * While a commit is being written, new work piles up and is written as the
 * next commit as soon as the current one is durable — that is what shares
 * one fsync among many producers.
 */
export class CommitQueue {
  private work: CommitWork = CommitQueue.empty();
  private pendingEvents = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly commit: (work: CommitWork) => Promise<void>,
    private readonly intervalMs: number,
    private readonly maxEvents: number,
  ) {}

  private static empty(): CommitWork {
    return { appends: [], ackTo: 0, ackEpoch: undefined, ackWaiters: [], sweep: false, sweepWaiters: [], makeRoom: false, repairs: [], repairWaiters: [] };
  }

  append(item: PendingAppend): void {
    this.work.appends.push(item);
    this.pendingEvents += item.events.length;
    this.schedule(this.pendingEvents >= this.maxEvents);
  }

  /** Queues an ack of `seq` in `epoch`; one in a newer epoch replaces an older epoch's (epochs only move on). */
  ack(seq: number, epoch: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.work.ackTo = this.work.ackEpoch === epoch ? Math.max(this.work.ackTo, seq) : seq;
      this.work.ackEpoch = epoch;
      this.work.ackWaiters.push({ resolve, reject });
      this.schedule(true);
    });
  }

  sweep(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.work.sweep = true;
      this.work.sweepWaiters.push({ resolve, reject });
      this.schedule(true);
    });
  }

  repair(range: UnreadableRange): Promise<void> {
    return new Promise((resolve, reject) => {
      this.work.repairs.push(range);
      this.work.repairWaiters.push({ resolve, reject });
      this.schedule(true);
    });
  }

  makeRoom(): void {
    this.work.makeRoom = true;
    this.schedule(true);
  }

  /** Writes everything pending now and resolves when the queue is idle. */
  async flush(): Promise<void> {
    this.schedule(true);
    while (this.running !== undefined) await this.running;
  }

  private hasWork(): boolean {
    const w = this.work;
    return w.appends.length > 0 || w.ackWaiters.length > 0 || w.sweep || w.makeRoom || w.repairs.length > 0;
  }

  private schedule(now: boolean): void {
    if (this.running !== undefined || !this.hasWork()) return;
    if (now) {
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.timer = undefined;
      this.running = this.run();
    } else if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (this.running === undefined) this.running = this.run();
      }, this.intervalMs);
    }
  }

  /**
   * The next commit's work: everything pending, except that appends beyond
   * about `maxEvents` wait for the following commit. Bounded blocks keep
   * the decoded-block cache useful (a block larger than it is never cached)
   * and keep each commit's working set small for the garbage collector.
   */
  private take(): CommitWork {
    const work = this.work;
    this.work = CommitQueue.empty();
    this.pendingEvents = 0;
    let events = 0;
    let cut = 0;
    while (cut < work.appends.length && events < this.maxEvents) events += (work.appends[cut++] as PendingAppend).events.length;
    if (cut < work.appends.length) {
      this.work.appends = work.appends.splice(cut);
      for (const a of this.work.appends) this.pendingEvents += a.events.length;
    }
    return work;
  }

  private async run(): Promise<void> {
    try {
      while (this.hasWork()) {
        const work = this.take();
        // `commit` settles every promise in `work` itself; a throw here is a bug, not a write failure.
        await this.commit(work);
      }
    } finally {
      this.running = undefined;
    }
  }
}
