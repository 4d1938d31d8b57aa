import { join } from 'node:path';
import { type AuditEvent, type ChainedEvent } from '../../protocols/index.js';
import { AgentErrors } from '../errors.js';
import { BlockCache } from './block-cache.js';
import { planCommit } from './commit-plan.js';
import { CommitQueue, type CommitWork } from './commit-queue.js';
import { parseLedger, type GapLedger } from './gap-fold.js';
import { NO_HELD, parseHeld, type HeldRanges } from './held-ranges.js';
import { Holes } from './holes.js';
import { blockKey, extraKey, META } from './keys.js';
import { firstBlock, type BufferDb, type StoredMeta } from './level-store.js';
import { LineReader, type ReadView } from './line-reader.js';
import { openStore, type OpenedStore } from './open-store.js';
import { resolveBufferOptions, type BufferOptions, type ResolvedBufferOptions } from './options.js';
import { recoveries, RefusedWrite, refusedWrite, reopenStore, type Recovery } from './store-recovery.js';
import type { AgentBuffer, AppendOptions, BufferState, ExtraOp, StoredLine } from './types.js';

const MAX_EXTRA_KEY = 256;

/**
 * The agent's durable buffer on LevelDB: one deflated block per group commit
 * keyed by its first seq, cursors in meta keys written in the same atomic
 * batch (see docs/buffer.md). All writes go through one CommitQueue, so the
 * chain, the byte count and the cursors change in exactly one place.
 */
export class LevelBuffer implements AgentBuffer {
  private readonly opts: ResolvedBufferOptions;
  private readonly cache: BlockCache;
  private readonly reader: LineReader;
  private readonly queue: CommitQueue;
  private readonly listeners = new Set<(head: number) => void>();
  private spaceWaiters: (() => void)[] = [];
  private db: BufferDb | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private s: StoredMeta = { epoch: '', head: 0, lastHash: undefined, delivered: 0, oldest: 1, bufferedBytes: 0 };
  /** Last seq of the oldest stored block: whole delivered blocks can be evicted when ≤ delivered. */
  private oldestBlockLast: number | undefined;
  private recovered: string | undefined;
  /** When the store was last repaired in place (recoverStore). */
  private repairedAt: number | undefined;
  private reopenTimer: NodeJS.Timeout | undefined;
  /** Why the buffer cannot write, while it cannot (see BufferState.writeError). */
  private writeError: string | undefined;
  private holes = new Holes();
  private gapLedger: GapLedger = { seq: 0, ranges: [] };
  private held: HeldRanges = NO_HELD;
  /** See holdInMemory; no push sink: nothing is held. */
  private heldUpTo: () => { epoch: string; upTo: number } = () => ({ epoch: '', upTo: 0 });

  constructor(options: BufferOptions) {
    this.opts = resolveBufferOptions(options);
    this.cache = new BlockCache(this.opts.cacheEvents);
    const view = (): ReadView => ({ db: this.db, epoch: this.s.epoch, oldest: this.s.oldest, head: this.s.head, holes: this.holes });
    this.reader = new LineReader(this.cache, this.opts.cacheEvents, view, (range) => this.queue.repair(range));
    this.queue = new CommitQueue((work) => this.commit(work), this.opts.commitIntervalMs, this.opts.maxCommitEvents);
  }

  get location(): string {
    return join(this.opts.dataDir, 'buffer');
  }

  async open(): Promise<void> {
    if (this.db !== undefined) return;
    const opened = await openStore(this.opts, this.location);
    await this.adopt(opened, true);
    // Ranges a push sink held when the process stopped: named lost by the next commit, run now.
    if (this.held.stale.length > 0) void this.queue.sweep().catch(() => undefined);
    this.sweepTimer = setInterval(() => void this.sweep().catch(() => undefined), this.opts.sweepIntervalMs);
    this.sweepTimer.unref();
  }

  /**
   * Takes an opened store's database and cursors as the buffer's own. A
   * replaced store's loss goes into `state().recovered`; its gap event is
   * already stored, as the new epoch's first event (see initialise), and the
   * listeners hear of it like of any append.
   */
  private async adopt(opened: OpenedStore, first = false): Promise<void> {
    if (opened.lost !== undefined) this.recovered = opened.lost.message;
    const sameEpoch = this.s.epoch === opened.meta.epoch;
    this.s = { ...opened.meta };
    // From `oldest`: a block below it (a damaged one a hole stepped over) is no longer the buffer's.
    this.oldestBlockLast = (await firstBlock(opened.db, opened.meta.oldest))?.lastSeq;
    const [holes, ledger, held] = await opened.db.getMany([META.holes, META.gaps, META.held]);
    this.holes = new Holes(holes?.toString('utf8'));
    this.gapLedger = parseLedger(ledger?.toString('utf8'));
    // At the first open nothing holds the recorded ranges any more; a store reopened mid-run (same epoch) is still this life's.
    const recorded = parseHeld(held?.toString('utf8'));
    this.held = first ? { live: [], stale: recorded } : { live: sameEpoch ? recorded : [], stale: [] };
    this.db = opened.db;
    if (opened.lost !== undefined) for (const listener of this.listeners) listener(this.s.head);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
      if (this.reopenTimer !== undefined) clearTimeout(this.reopenTimer);
      await this.queue.flush();
      this.wakeSpaceWaiters(true);
      const db = this.db;
      this.db = undefined;
      this.cache.clear();
      await db?.close();
    })();
    return this.closing;
  }

  append(events: readonly AuditEvent[], extra?: readonly ExtraOp[], options?: AppendOptions): Promise<ChainedEvent[]> {
    if (this.db === undefined || this.closing !== undefined) {
      return Promise.reject(AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open'));
    }
    if (this.isFull() && events.length > 0 && options?.evenIfFull !== true) {
      const detail = `buffer holds ${this.s.bufferedBytes} bytes, limit ${this.opts.maxBytes} (buffer.maxBytes)`;
      return Promise.reject(
        this.opts.whenFull === 'reject'
          ? AgentErrors.METEORZX_BUFFER_REJECTED(`${detail}; policy reject refuses new events`)
          : AgentErrors.METEORZX_BUFFER_FULL(`${detail}; retry when the push sink has delivered`),
      );
    }
    for (const op of extra ?? []) {
      if (op.key.length === 0 || op.key.length > MAX_EXTRA_KEY) {
        return Promise.reject(AgentErrors.METEORZX_BUFFER_INVALID_KEY(`extra key must be 1-${MAX_EXTRA_KEY} characters`));
      }
    }
    if (events.length === 0 && (extra === undefined || extra.length === 0)) return Promise.resolve([]);
    const receivedAt = new Date(this.opts.clock.now()).toISOString();
    return new Promise((resolve, reject) => this.queue.append({ events, extra, receivedAt, resolve, reject }));
  }

  async read(after: number, limit: number, maxBytes = Number.POSITIVE_INFINITY): Promise<ChainedEvent[]> {
    return (await this.readLines(after, limit, maxBytes)).map((l) => JSON.parse(l.line) as ChainedEvent);
  }

  readLines(after: number, limit: number, maxBytes = Number.POSITIVE_INFINITY): Promise<StoredLine[]> {
    return this.reader.readLines(after, limit, maxBytes);
  }

  /** An ack names its epoch (by default the current one): planCommit ignores one whose epoch the store no longer holds. */
  async ack(seq: number, epoch = this.s.epoch): Promise<void> {
    const target = Math.min(seq, this.s.head);
    // A drop moves `delivered` past what it deleted; an ack still matters when it passes the newest gap event.
    // So does one that passes a range the push sink held when a drop deleted it (held-ranges.ts).
    if (target <= this.s.delivered && (this.gapLedger.seq === 0 || target < this.gapLedger.seq) && !this.held.live.some((r) => r.from <= target)) return;
    if (this.db === undefined) throw AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open');
    await this.queue.ack(target, epoch);
  }

  holdInMemory(held: () => { epoch: string; upTo: number }): void {
    this.heldUpTo = held;
  }

  /** Runs the retention sweep now (the timer runs it every sweepIntervalMs). */
  sweep(): Promise<void> {
    if (this.db === undefined || this.closing !== undefined) return Promise.resolve();
    return this.queue.sweep();
  }

  holeRanges(): readonly (readonly [number, number])[] {
    return this.holes.list();
  }

  state(): BufferState {
    const s = this.s;
    const state: BufferState = {
      id: this.opts.id,
      epoch: s.epoch,
      head: s.head,
      delivered: s.delivered,
      oldest: s.oldest,
      bufferedEvents: s.head - Math.max(s.delivered, s.oldest - 1),
      bufferedBytes: s.bufferedBytes,
    };
    if (this.recovered !== undefined) state.recovered = this.recovered;
    if (this.writeError !== undefined) state.writeError = this.writeError;
    return state;
  }

  waitForSpace(): Promise<void> {
    if (!this.isFull() || this.db === undefined) return Promise.resolve();
    return new Promise((resolve) => this.spaceWaiters.push(resolve));
  }

  onAppend(listener: (head: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async getMeta(key: string): Promise<string | undefined> {
    if (this.db === undefined) throw AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open');
    return (await this.db.get(extraKey(key)))?.toString('utf8');
  }

  async metaKeys(prefix: string, limit: number, after?: string): Promise<string[]> {
    if (prefix.length === 0 || prefix.length > MAX_EXTRA_KEY || prefix.charCodeAt(prefix.length - 1) >= 0xd800) {
      throw AgentErrors.METEORZX_BUFFER_INVALID_KEY(`a key prefix must be 1-${MAX_EXTRA_KEY} characters, the last one below U+D800`);
    }
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`metaKeys: limit must be a positive integer, got ${limit}`);
    if (this.db === undefined) throw AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open');
    // Every key with the prefix sorts before the prefix with its last character raised by one.
    const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
    const from = after !== undefined && after > prefix ? { gt: extraKey(after) } : { gte: extraKey(prefix) };
    const keys = await this.db.keys({ ...from, lt: extraKey(end), limit }).all();
    return keys.map((k) => k.slice(extraKey('').length));
  }

  /** Full = at the byte bound with nothing delivered left to evict. drop-oldest is never full. */
  private isFull(): boolean {
    if (this.opts.whenFull === 'drop-oldest' || this.s.bufferedBytes < this.opts.maxBytes) return false;
    return !(this.oldestBlockLast !== undefined && this.oldestBlockLast <= this.s.delivered);
  }

  /**
   * One group commit: chain, make room, write one atomic batch, then
   * acknowledge. A write LevelDB refused for good is retried on the store
   * recovered (see recoverStore).
   */
  private async commit(work: CommitWork): Promise<void> {
    let err: unknown;
    let plan: readonly Recovery[] | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.commitOrThrow(work);
        return;
      } catch (e) {
        err = e;
        if (!(e instanceof RefusedWrite) || this.closing !== undefined) break;
        plan ??= recoveries(e, this.repairedAt, this.opts.clock.now());
        const next = plan[attempt];
        if (next === undefined) break;
        try {
          await this.recoverStore(next, e);
        } catch (recoverErr) {
          err = recoverErr;
          break;
        }
      }
    }
    const failure = AgentErrors.METEORZX_BUFFER_WRITE_FAILED(`group commit failed: ${(err as Error).message}`, { cause: err });
    this.writeError = failure.message;
    this.opts.logger?.error({ err }, 'buffer: group commit failed; nothing in it was acknowledged');
    for (const a of work.appends) a.reject(failure);
    for (const w of [...work.ackWaiters, ...work.sweepWaiters, ...work.repairWaiters]) w.reject(failure);
  }

  /**
   * Closes the database and opens it again the way `how` says (see
   * store-recovery.ts). Appends and reads see METEORZX_BUFFER_CLOSED (503)
   * meanwhile, and the commit queue waits. A store that cannot be opened
   * again (the disk still full) is retried in the background until it opens
   * (scheduleReopen).
   */
  private async recoverStore(how: Recovery, refused: RefusedWrite): Promise<void> {
    const db = this.db;
    this.db = undefined;
    this.cache.clear();
    await db?.close().catch(() => undefined);
    if (how === 'repair') this.repairedAt = this.opts.clock.now();
    let opened: OpenedStore | undefined;
    let said: string;
    try {
      ({ opened, said } = await reopenStore(this.opts, this.location, how, refused));
      await this.adopt(opened);
    } catch (err) {
      await opened?.db.close().catch(() => undefined);
      this.scheduleReopen(err);
      throw err;
    }
    if (opened.lost !== undefined) {
      // A new epoch, whose seqs the acks and unreadable ranges queued so far do not name: planCommit
      // drops them by their epoch, in this commit's retry and in the next (the push sender follows the
      // epoch: see Sender.followEpoch). Its gap event is its first; replaceStore has logged it.
      return;
    }
    if (how === 'repair') this.recovered = said;
    this.opts.logger?.error({ err: refused.cause, epoch: this.s.epoch }, `buffer: ${said}`);
  }

  /**
   * The database could not be opened again after a refused write: try again
   * every few seconds (doubling up to a minute) until it opens. Meanwhile the
   * buffer answers as closed (503), and close() stops the retries.
   */
  private scheduleReopen(cause: unknown, delayMs = 1000): void {
    this.opts.logger?.error({ err: cause, retryInMs: delayMs }, 'buffer: the database cannot be opened again; retrying');
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined;
      if (this.closing !== undefined || this.db !== undefined) return;
      void (async () => {
        let opened: OpenedStore | undefined;
        try {
          opened = await openStore(this.opts, this.location);
          if (this.closing === undefined) await this.adopt(opened);
          if (this.closing !== undefined) {
            // close() ran meanwhile, and found nothing open to close.
            this.db = undefined;
            return void (await opened.db.close());
          }
        } catch (err) {
          await opened?.db.close().catch(() => undefined);
          this.scheduleReopen(err, Math.min(delayMs * 2, 60_000));
          return;
        }
        this.writeError = undefined;
        this.opts.logger?.warn({ epoch: this.s.epoch }, 'buffer: the database is open again');
      })();
    }, delayMs);
    this.reopenTimer.unref();
  }

  /** Plans the commit (commit-plan.ts), writes it as one atomic batch, then adopts it and answers its callers. */
  private async commitOrThrow(work: CommitWork): Promise<void> {
    const db = this.db;
    if (db === undefined) throw AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open');
    const base = {
      db,
      opts: this.opts,
      cursors: this.s,
      holes: this.holes,
      gapLedger: this.gapLedger,
      cache: this.cache,
      oldestBlockLast: this.oldestBlockLast,
      held: this.held,
      heldUpTo: this.heldUpTo,
    };
    const plan = await planCommit(base, work, this.opts.clock.now());
    await db.batch(plan.ops, { sync: plan.sync }).catch((err: unknown) => {
      throw refusedWrite(err);
    });

    const headBefore = base.cursors.head;
    this.writeError = undefined;
    this.s = plan.cursors;
    this.holes = plan.holes;
    this.gapLedger = plan.gapLedger;
    this.held = plan.held === base.held.live && base.held.stale.length === 0 ? base.held : { live: plan.held, stale: [] };
    for (const r of plan.recorded) {
      this.recovered = `buffer blocks for seq ${r.from}-${r.to} are unreadable (${r.error}); skipped with a gap event`;
      this.opts.logger?.error({ from: r.from, to: r.to, epoch: this.s.epoch, error: r.error }, `buffer: ${this.recovered}`);
    }
    const { release, blocks } = plan;
    const released = release !== undefined && release.deleted.length > 0;
    const releasedTo = released ? (release.deleted.at(-1)?.lastSeq ?? 0) + 1 : base.cursors.oldest;
    if (released) {
      this.cache.dropBefore(this.s.oldest);
      this.oldestBlockLast = release.next?.lastSeq ?? lastSeqOf(blocks[0]);
    } else if (this.oldestBlockLast === undefined && blocks.length > 0) {
      this.oldestBlockLast = lastSeqOf(blocks[0]);
    }
    if (this.s.oldest > releasedTo) await this.afterFrontHole(db, releasedTo);
    this.reader.cacheNewBlocks(blocks, headBefore);
    work.appends.forEach((a, i) => {
      const [start, end] = plan.slices[i] as [number, number];
      if (i in plan.refused) a.reject(plan.refused[i]);
      else a.resolve(plan.events.slice(start, end));
    });
    for (const w of [...work.ackWaiters, ...work.sweepWaiters, ...work.repairWaiters]) w.resolve();
    if (this.s.head > headBefore) for (const listener of this.listeners) listener(this.s.head);
    if (this.spaceWaiters.length > 0) {
      if (!this.isFull()) this.wakeSpaceWaiters(false);
    }
    // An ack may have made delivered blocks evictable while appends are being refused. A makeRoom
    // commit that released nothing would release nothing again: asking once more would spin.
    const evictable = this.oldestBlockLast !== undefined && this.oldestBlockLast <= this.s.delivered;
    if (this.s.bufferedBytes >= this.opts.maxBytes && evictable && !(work.makeRoom && !released)) {
      this.queue.makeRoom();
    }
  }

  /**
   * A hole recorded at the front moved `oldest` past blocks no release
   * deleted: the oldest block is found again from `oldest` (a stale one, at
   * or below `delivered`, made isFull() take a full buffer for evictable),
   * and the damaged blocks left below it are deleted, since no read or
   * release looks there again. Both best effort: the commit is durable.
   */
  private async afterFrontHole(db: BufferDb, from: number): Promise<void> {
    await db.clear({ gte: blockKey(from), lt: blockKey(this.s.oldest) }).catch(() => undefined);
    this.oldestBlockLast = (await firstBlock(db, this.s.oldest).catch(() => undefined))?.lastSeq;
  }

  private wakeSpaceWaiters(all: boolean): void {
    if (!all && this.isFull()) return;
    const waiters = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const wake of waiters) wake();
  }
}

function lastSeqOf(block: { firstSeq: number; lines: readonly string[] } | undefined): number | undefined {
  return block === undefined ? undefined : block.firstSeq + block.lines.length - 1;
}

/** Opens a LevelBuffer (the factory the agent runtime uses). */
export async function openBuffer(options: BufferOptions): Promise<LevelBuffer> {
  const buffer = new LevelBuffer(options);
  await buffer.open();
  return buffer;
}

