import type { Logger } from 'pino';
import type { AgentBuffer, StoredLine } from '../buffer/types.js';
import type { Batch } from './batch.js';
import type { BatchCap } from './batch-cap.js';

export interface BatchReaderOptions {
  /** How long a partial batch may wait for more events before it goes, ms. */
  maxWaitMs: number;
  /** About how many bytes one batch may hold (passed to buffer.read). */
  maxBytes?: number;
  /** Events a new batch may hold now. */
  cap: BatchCap;
  now: () => number;
  /** Told when the buffer claims events after the cursor and yields none (the sender's lastError). */
  stalled: (error: string) => void;
  logger?: Logger;
}

/**
 * The sender's reads of the buffer: the next batch after the window, and a
 * failed batch again before its retry. Once the buffer knows the window is
 * held in memory (`holds`, AgentBuffer.holdInMemory), a drop-oldest or
 * retention release names none of the window's events lost, so they are
 * sent from memory; what a release did name lost is never sent.
 */
export class BatchReader {
  /** The buffer was told that the window is held in memory (holdInMemory). */
  holds = false;
  private lingerSince: number | undefined;
  private stuckAt: number | undefined;

  constructor(
    private readonly buffer: AgentBuffer,
    private readonly opts: BatchReaderOptions,
  ) {}

  /** The next batch after `cursor` (the newest seq of the window); a number = wait that long for a fuller batch. */
  async next(cursor: number, round: number): Promise<Batch | number | undefined> {
    const pending = this.buffer.state().head - cursor;
    if (pending <= 0) {
      this.lingerSince = undefined;
      return undefined;
    }
    const limit = this.opts.cap.limit;
    if (pending < limit && this.opts.maxWaitMs > 0) {
      const now = this.opts.now();
      this.lingerSince ??= now;
      const left = this.lingerSince + this.opts.maxWaitMs - now;
      if (left > 0) return left;
    }
    this.lingerSince = undefined;
    let events = await this.buffer.readLines(cursor, limit, this.opts.maxBytes);
    if (this.holds && (events[0]?.seq ?? Infinity) < this.buffer.state().oldest) events = await this.pastDropped(events, cursor, limit);
    const first = events[0];
    const last = events.at(-1);
    if (first === undefined || last === undefined) {
      // The buffer claims events after the cursor but yields none: an unreadable range. Say so once;
      // nothing here can skip it safely (only the buffer knows what was lost and can record the gap).
      this.opts.stalled(`buffer: no readable event after seq ${cursor} though head is ${this.buffer.state().head}`);
      if (this.stuckAt !== cursor) {
        this.stuckAt = cursor;
        this.opts.logger?.error({ after: cursor, head: this.buffer.state().head }, 'push stalled: the buffer returns no events after the cursor');
      }
      return undefined;
    }
    this.stuckAt = undefined;
    return { events, first: first.seq, last: last.seq, status: 'pending', round };
  }

  /**
   * A read that raced a drop: it began before a release deleted these events and returned after, from a
   * snapshot. They were not in the window when the release asked what it holds, so its gap event names
   * them: sent anyway, the gateway would store events that gap says are lost. What the read returned
   * below the buffer's oldest is left out; when that is all of it, the read is taken again from there.
   */
  private async pastDropped(events: StoredLine[], cursor: number, limit: number): Promise<StoredLine[]> {
    const { oldest } = this.buffer.state();
    const left = events.filter((e) => e.seq >= oldest);
    return left.length > 0 ? left : this.buffer.readLines(Math.max(cursor, oldest - 1), limit, this.opts.maxBytes);
  }

  /**
   * A retry sends what the buffer holds now, and the copies in memory of
   * what it deleted since: drop-oldest or retention deleting the window's
   * events names them in no gap event (the window is held: holdInMemory), so
   * they are sent from here until the gateway acks them. What the buffer
   * no longer has and its holes name (damage found meanwhile, recorded with
   * a buffer-corrupt gap) is not sent: that would contradict the gap.
   */
  async reload(batch: Batch): Promise<void> {
    const events = await this.buffer.readLines(batch.first - 1, batch.last - batch.first + 1);
    // A buffer that cannot be told what the window holds names it in its gap events: send nothing of that.
    const oldest = this.holds ? this.buffer.state().oldest : 0;
    const holes = this.buffer.holeRanges();
    const kept = batch.events.filter((e) => e.seq < oldest && !holes.some(([from, to]) => e.seq >= from && e.seq <= to));
    batch.events = [...kept, ...events.filter((e) => e.seq <= batch.last && e.seq >= oldest)];
    batch.first = batch.events[0]?.seq ?? batch.last;
  }
}
