import { chainEvent, fastCanonicalJson, newId, type AuditEvent, type ChainedEvent } from '../../protocols/index.js';
import type { AgentBuffer, BufferState, StoredLine } from '../../agent/buffer/types.js';
import { AgentErrors } from '../../agent/errors.js';

/** An event as the buffer stores it: its seq and canonical line. */
export function storedLine(event: ChainedEvent): StoredLine {
  return { seq: event.seq, line: fastCanonicalJson(event) };
}

/**
 * An in-memory AgentBuffer for the runtime's unit tests: same contract as
 * the LevelDB one (seq, chain, delivered cursor, onAppend), no disk. Tests
 * steer it with `failAppend` and `holdAppends`.
 */
export class FakeBuffer implements AgentBuffer {
  readonly events: ChainedEvent[] = [];
  delivered = 0;
  acks: number[] = [];
  /** When set, append rejects with it. */
  failAppend: Error | undefined;
  /** When set, appends wait for it before resolving. */
  holdAppends: Promise<void> | undefined;
  appendCalls = 0;
  /** Events with seq ≤ this are gone (as drop-oldest would leave them). */
  droppedUpTo = 0;
  private readonly listeners = new Set<(head: number) => void>();
  private lastHash: string | undefined;

  constructor(
    readonly id = 'fake-agent',
    public epoch = 'EPOCH1',
  ) {}

  /** What LevelBuffer does when it replaces a damaged store: a new epoch, empty, seqs from 1. */
  replaceStore(epoch: string): void {
    this.events.length = 0;
    this.delivered = 0;
    this.droppedUpTo = 0;
    this.lastHash = undefined;
    this.epoch = epoch;
  }

  async open(): Promise<void> {}
  async close(): Promise<void> {}

  async append(events: readonly AuditEvent[]): Promise<ChainedEvent[]> {
    this.appendCalls += 1;
    if (this.failAppend) throw this.failAppend;
    if (this.holdAppends) await this.holdAppends;
    const out: ChainedEvent[] = [];
    for (const e of events) {
      const seq = this.events.length + 1;
      const base = { ...e, id: e.id ?? newId(), source: e.source ?? this.id, time: e.time ?? new Date().toISOString(), agent: this.id, epoch: this.epoch, seq };
      const chained = chainEvent(base, this.lastHash) as ChainedEvent;
      this.lastHash = chained.hash;
      this.events.push(chained);
      out.push(chained);
    }
    for (const l of this.listeners) l(this.events.length);
    return out;
  }

  /** Appends n events of type `t.<i>` (test convenience). */
  async fill(n: number): Promise<ChainedEvent[]> {
    return this.append(Array.from({ length: n }, (_, i) => ({ type: `t.${i}` })));
  }

  async read(after: number, limit: number): Promise<ChainedEvent[]> {
    const inHole = (seq: number) => this.holes.some(([from, to]) => seq >= from && seq <= to);
    return this.events.filter((e) => e.seq > Math.max(after, this.droppedUpTo) && !inHole(e.seq)).slice(0, limit);
  }

  /** As LevelBuffer's: at most `limit` lines and about `maxBytes` (each line counted with its newline), the first always. */
  async readLines(after: number, limit: number, maxBytes = Number.POSITIVE_INFINITY): Promise<StoredLine[]> {
    const out: StoredLine[] = [];
    let bytes = 0;
    for (const line of (await this.read(after, limit)).map(storedLine)) {
      bytes += Buffer.byteLength(line.line) + 1;
      if (bytes > maxBytes && out.length > 0) break;
      out.push(line);
    }
    return out;
  }

  /** The epoch each call to ack named (undefined: none). */
  ackEpochs: (string | undefined)[] = [];

  async ack(seq: number, epoch?: string): Promise<void> {
    this.ackEpochs.push(epoch);
    // As LevelBuffer: an ack for an epoch no longer held changes nothing.
    if (epoch !== undefined && epoch !== this.epoch) return;
    this.acks.push(seq);
    if (seq > this.delivered) this.delivered = seq;
  }

  /** Seq ranges recorded as holes; reads step over them (as LevelBuffer's do). */
  holes: [number, number][] = [];

  holeRanges(): readonly (readonly [number, number])[] {
    return this.holes;
  }

  state(): BufferState {
    const head = this.events.length;
    return { id: this.id, epoch: this.epoch, head, delivered: this.delivered, oldest: 1, bufferedEvents: head - this.delivered, bufferedBytes: head * 100 };
  }

  async waitForSpace(): Promise<void> {}

  onAppend(listener: (head: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async getMeta(): Promise<string | undefined> {
    return undefined;
  }

  async metaKeys(): Promise<string[]> {
    return [];
  }
}

/** A FakeBuffer that can be made full: append rejects METEORZX_BUFFER_FULL (and counts the call) until `makeSpace()`. */
export class BlockableBuffer extends FakeBuffer {
  full = false;
  private waiters: (() => void)[] = [];

  override async append(events: readonly AuditEvent[]): Promise<ChainedEvent[]> {
    if (this.full) {
      this.appendCalls += 1;
      throw AgentErrors.METEORZX_BUFFER_FULL('full (test)');
    }
    return super.append(events);
  }

  override waitForSpace(): Promise<void> {
    return this.full ? new Promise((resolve) => this.waiters.push(resolve)) : Promise.resolve();
  }

  makeSpace(): void {
    this.full = false;
    for (const w of this.waiters.splice(0)) w();
  }
}
