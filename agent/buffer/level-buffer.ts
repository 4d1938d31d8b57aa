import { join } from 'node:path';
import { type AuditEvent, type ChainedEvent } from '../../protocols/index.js';
import { AgentErrors } from '../errors.js';
import { BlockCache, type LineBlock } from './block-cache.js';
import { decodeBlockLines, encodeBlock, readBlockMeta, type BlockMeta } from './block-codec.js';
import { ChainCursor } from './chain-cursor.js';
import { CommitQueue, type CommitWork } from './commit-queue.js';
import { applyRepairs, unreadableFrom } from './corrupt-read.js';
import { droppedGaps, foldGaps, gapData, parseLedger, type GapLedger } from './gap-fold.js';
import { Holes } from './holes.js';
import { BLOCK_END, BLOCK_PREFIX, blockKey, blockSeq, extraKey, META } from './keys.js';
import { firstBlock, isCorruption, type BufferDb } from './level-store.js';
import { openStore, type OpenedStore } from './open-store.js';
import { resolveBufferOptions, type BufferOptions, type ResolvedBufferOptions } from './options.js';
import { gapEvent, planRelease } from './space-plan.js';
import { recoveries, RefusedWrite, refusedWrite, reopenStore, type Recovery } from './store-recovery.js';
import type { AgentBuffer, BufferState, StoredLine } from './types.js';

type BatchOp = { type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string };

// Reserved for the gap block a drop-oldest commit adds, so the bound holds with it.
const GAP_BLOCK_RESERVE = 512;
const MAX_EXTRA_KEY = 256;
const GAP_TYPE = 'meteorzx.gap';

const holdsGap = (events: readonly ChainedEvent[]): boolean => events.some((e) => e.type === GAP_TYPE);

/**
 * The agent's durable buffer on LevelDB: one deflated block per group commit
 * keyed by its first seq, cursors in meta keys written in the same atomic
 * batch (see docs/buffer.md). All writes go through one CommitQueue, so the
 * chain, the byte count and the cursors change in exactly one place.
 */
export class LevelBuffer implements AgentBuffer {
  private readonly opts: ResolvedBufferOptions;
  private readonly cache: BlockCache;
  private readonly queue: CommitQueue;
  private readonly listeners = new Set<(head: number) => void>();
  private spaceWaiters: (() => void)[] = [];
  private db: BufferDb | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private s = { epoch: '', head: 0, lastHash: undefined as string | undefined, delivered: 0, oldest: 1, bytes: 0 };
  /** Last seq of the oldest stored block: whole delivered blocks can be evicted when ≤ delivered. */
  private oldestBlockLast: number | undefined;
  private recovered: string | undefined;
  /** When the store was last repaired in place (recoverStore). */
  private repairedAt: number | undefined;
  private reopenTimer: NodeJS.Timeout | undefined;
  private holes = new Holes();
  private gapLedger: GapLedger = { seq: 0, ranges: [] };
  /**
   * The furthest any reader has got (the last seq a read returned, or the
   * cursor of a read that found nothing after it). A new block is cached for
   * the push sink only when a reader is this close to the head; see cacheNewBlocks.
   */
  private readFrontier = 0;

  constructor(options: BufferOptions) {
    this.opts = resolveBufferOptions(options);
    this.cache = new BlockCache(this.opts.cacheEvents);
    this.queue = new CommitQueue((work) => this.commit(work), this.opts.commitIntervalMs, this.opts.maxCommitEvents);
  }

  get location(): string {
    return join(this.opts.dataDir, 'buffer');
  }

  async open(): Promise<void> {
    if (this.db !== undefined) return;
    const opened = await openStore(this.opts, this.location);
    await this.adopt(opened);
    this.sweepTimer = setInterval(() => void this.sweep().catch(() => undefined), this.opts.sweepIntervalMs);
    this.sweepTimer.unref();
    // The gap goes through the normal path: chained, durable, pushed like any event.
    if (opened.lost !== undefined) await this.append([gapEvent(opened.lost.data)]);
  }

  /**
   * Takes an opened store's database and cursors as the buffer's own (a
   * replaced store's loss goes into `state().recovered`; its gap event is the
   * caller's to append).
   */
  private async adopt(opened: OpenedStore): Promise<void> {
    if (opened.lost !== undefined) this.recovered = opened.lost.message;
    const { bufferedBytes, ...cursors } = opened.meta;
    this.s = { ...cursors, bytes: bufferedBytes };
    this.oldestBlockLast = (await firstBlock(opened.db))?.lastSeq;
    const [holes, ledger] = await opened.db.getMany([META.holes, META.gaps]);
    this.holes = new Holes(holes?.toString('utf8'));
    this.gapLedger = parseLedger(ledger?.toString('utf8'));
    this.db = opened.db;
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

  append(events: readonly AuditEvent[], extra?: readonly { key: string; value: string }[]): Promise<ChainedEvent[]> {
    if (this.db === undefined || this.closing !== undefined) {
      return Promise.reject(AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open'));
    }
    if (this.isFull() && events.length > 0) {
      const detail = `buffer holds ${this.s.bytes} bytes, limit ${this.opts.maxBytes} (buffer.maxBytes)`;
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

  async readLines(after: number, limit: number, maxBytes = Number.POSITIVE_INFINITY): Promise<StoredLine[]> {
    const out: StoredLine[] = [];
    let seq = after + 1;
    let bytes = 0;
    while (out.length < limit && bytes < maxBytes) {
      seq = this.holes.skip(Math.max(seq, this.s.oldest));
      if (seq > this.s.head) break;
      let block: LineBlock | undefined;
      let cause: unknown;
      try {
        block = await this.blockHolding(seq);
      } catch (err) {
        if (!isCorruption(err)) throw err;
        cause = err;
      }
      if (block === undefined) {
        // Inside [oldest, head] every seq has a block: none (or one that does not decode) is damage.
        await this.recoverUnreadable(seq, cause);
        continue;
      }
      const { firstSeq, lines } = block;
      for (let i = seq - firstSeq; i < lines.length && out.length < limit && bytes < maxBytes; i++) {
        const line = lines[i] as string;
        // The first event always goes, so an event larger than maxBytes cannot stall a reader.
        bytes += line.length + 1;
        if (bytes > maxBytes && out.length > 0) return this.consumed(out);
        out.push({ seq: firstSeq + i, line });
      }
      seq = firstSeq + lines.length;
    }
    if (out.length === 0) this.readFrontier = Math.max(this.readFrontier, after);
    return this.consumed(out);
  }

  /**
   * Bookkeeping after a read: moves the read frontier, and drops from the
   * cache every block the read took to its end. A reader rarely comes back
   * for what it has read (the push sink re-reads only after a failure, from
   * disk), and a decoded block kept after its read lives long enough to be
   * copied by the young-generation GC and promoted: that cost durable intake
   * a third of its rate in bench/agent-buffer.mjs.
   */
  private consumed(out: StoredLine[]): StoredLine[] {
    const last = out.at(-1);
    if (last !== undefined) {
      this.readFrontier = Math.max(this.readFrontier, last.seq);
      this.cache.dropBefore(last.seq + 1);
    }
    return out;
  }

  async ack(seq: number): Promise<void> {
    const target = Math.min(seq, this.s.head);
    // A drop moves `delivered` past what it deleted; an ack still matters when it passes the newest gap event.
    if (target <= this.s.delivered && (this.gapLedger.seq === 0 || target < this.gapLedger.seq)) return;
    if (this.db === undefined) throw AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open');
    await this.queue.ack(target);
  }

  /** Runs the retention sweep now (the timer runs it every sweepIntervalMs). */
  sweep(): Promise<void> {
    if (this.db === undefined || this.closing !== undefined) return Promise.resolve();
    return this.queue.sweep();
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
      bufferedBytes: s.bytes,
    };
    if (this.recovered !== undefined) state.recovered = this.recovered;
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

  /**
   * Keeps a commit's decoded block for the push sink when a reader is near
   * the head (within the cache's budget) and so will read it in a moment
   * without inflating anything. With no reader near — a pull-only agent, a
   * sink that is down or far behind — nobody would read it from memory, and
   * holding it would only make every event outlive a young-generation GC.
   */
  private cacheNewBlocks(blocks: readonly { firstSeq: number; lines: string[] }[], headBefore: number): void {
    if (headBefore - this.readFrontier > this.opts.cacheEvents) return;
    for (const b of blocks) this.cache.put(b.firstSeq, b.lines);
  }

  /** Full = at the byte bound with nothing delivered left to evict. drop-oldest is never full. */
  private isFull(): boolean {
    if (this.opts.whenFull === 'drop-oldest' || this.s.bytes < this.opts.maxBytes) return false;
    return !(this.oldestBlockLast !== undefined && this.oldestBlockLast <= this.s.delivered);
  }

  private async blockHolding(seq: number): Promise<LineBlock | undefined> {
    const cached = this.cache.find(seq);
    if (cached !== undefined) return cached;
    const db = this.db;
    if (db === undefined) throw AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open');
    for await (const [key, value] of db.iterator({ lte: blockKey(seq), gte: BLOCK_PREFIX, reverse: true, limit: 1 })) {
      const firstSeq = blockSeq(key);
      let lines: string[];
      try {
        lines = decodeBlockLines(firstSeq, value);
      } catch (err) {
        throw AgentErrors.METEORZX_BUFFER_CORRUPT(`block at seq ${firstSeq} cannot be decoded: ${(err as Error).message}`, { cause: err });
      }
      if (seq >= firstSeq + lines.length) return undefined;
      this.cache.put(firstSeq, lines);
      return { firstSeq, lines };
    }
    return undefined;
  }

  /**
   * Records the damaged run holding `seq` as a hole with a `buffer-corrupt`
   * gap (through the commit queue, so it is durable and ordered with drops),
   * so readers step past it and delivery continues.
   */
  private async recoverUnreadable(seq: number, cause: unknown): Promise<void> {
    const db = this.db;
    if (db === undefined) throw AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open');
    const range = await unreadableFrom(db, this.cache, seq, { head: this.s.head, nextHole: this.holes.nextStart(seq) }, cause);
    await this.queue.repair(range);
  }

  private async *storedBlocks(db: BufferDb): AsyncGenerator<BlockMeta> {
    try {
      for await (const [key, value] of db.iterator({ gte: blockKey(this.s.oldest), lt: BLOCK_END })) {
        yield readBlockMeta(blockSeq(key), value);
      }
    } catch (err) {
      // LevelDB reports skipped damaged table blocks at the end of a scan: release what was seen.
      if (!isCorruption(err)) throw err;
      this.opts.logger?.error({ err }, 'buffer: damaged blocks met while planning a release; they stay until read');
    }
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
          await this.recoverStore(next, e, work);
        } catch (recoverErr) {
          err = recoverErr;
          break;
        }
      }
    }
    const failure = AgentErrors.METEORZX_BUFFER_WRITE_FAILED(`group commit failed: ${(err as Error).message}`, { cause: err });
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
  private async recoverStore(how: Recovery, refused: RefusedWrite, work: CommitWork): Promise<void> {
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
      // A new epoch, whose seqs the pending ack and unreadable ranges do not name (the push sender follows
      // the epoch: see Sender.followEpoch). Its gap goes in the next commit: this one is running.
      // replaceStore has logged it.
      work.ackTo = 0;
      work.repairs.length = 0;
      void this.append([gapEvent(opened.lost.data)]).catch(() => undefined);
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
        this.opts.logger?.warn({ epoch: this.s.epoch }, 'buffer: the database is open again');
        if (opened.lost !== undefined) await this.append([gapEvent(opened.lost.data)]).catch(() => undefined);
      })();
    }, delayMs);
    this.reopenTimer.unref();
  }

  private async commitOrThrow(work: CommitWork): Promise<void> {
    const db = this.db;
    if (db === undefined) throw AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open');
    const now = this.opts.clock.now();
    const s = this.s;
    const cursor = new ChainCursor({ agent: this.opts.id, epoch: s.epoch, head: s.head, lastHash: s.lastHash });
    const ops: BatchOp[] = [];
    const slices: [number, number][] = [];
    for (const a of work.appends) {
      const start = cursor.count;
      for (const event of a.events) cursor.push(event, a.receivedAt, now);
      slices.push([start, cursor.count]);
      for (const x of a.extra ?? []) ops.push({ type: 'put', key: extraKey(x.key), value: Buffer.from(x.value, 'utf8') });
    }
    const blocks: { firstSeq: number; value: Buffer; lines: string[] }[] = [];
    if (cursor.count > 0) {
      blocks.push({ firstSeq: s.head + 1, value: encodeBlock(cursor.lines, now, holdsGap(cursor.events)), lines: cursor.lines });
    }
    const incoming = blocks.reduce((n, b) => n + b.value.length, 0);
    const delivered = Math.max(s.delivered, Math.min(work.ackTo, s.head));
    const dropUndelivered = this.opts.whenFull === 'drop-oldest';

    let needBytes = s.bytes + incoming - this.opts.maxBytes + (dropUndelivered ? GAP_BLOCK_RESERVE : 0);
    if (incoming === 0 && !work.sweep) needBytes = work.makeRoom ? s.bytes - this.opts.maxBytes + 1 : 0;
    const evictable = this.oldestBlockLast !== undefined && (this.oldestBlockLast <= delivered || dropUndelivered);
    const plan =
      (needBytes > 0 && evictable) || work.sweep
        ? await planRelease(this.storedBlocks(db), {
            delivered,
            needBytes,
            dropUndelivered,
            deliveredBefore: work.sweep ? now - this.opts.retainMs : undefined,
            undeliveredBefore:
              work.sweep && this.opts.maxUndeliveredAgeMs !== undefined ? now - this.opts.maxUndeliveredAgeMs : undefined,
          })
        : undefined;

    let newDelivered = delivered;
    let newOldest = s.oldest;
    let freed = plan?.freedBytes ?? 0;
    const gaps: Record<string, unknown>[] = [];
    if (plan !== undefined && plan.deleted.length > 0) {
      for (const b of plan.deleted) ops.push({ type: 'del', key: blockKey(b.firstSeq) });
      const lastDeleted = plan.deleted[plan.deleted.length - 1] as BlockMeta;
      newOldest = lastDeleted.lastSeq + 1;
      newDelivered = Math.max(newDelivered, lastDeleted.lastSeq);
    }
    // The gateway has the newest gap event: the ranges it named need no repeating.
    let ledger: GapLedger = this.gapLedger.seq > 0 && work.ackTo >= this.gapLedger.seq ? { seq: 0, ranges: [] } : this.gapLedger;
    let ledgerChanged = ledger !== this.gapLedger;
    if (plan !== undefined && plan.lost.length > 0) {
      for (const lost of plan.lost) this.opts.logger?.warn({ ...lost, epoch: s.epoch }, 'buffer: undelivered events deleted; gap event appended');
      const folded = foldGaps(plan.lost, ledger.ranges, await droppedGaps(db, this.cache, plan.deleted, delivered, this.opts.logger));
      gaps.push(...folded.ranges.map(gapData), ...folded.verbatim);
      ledger = { seq: cursor.head + folded.ranges.length, ranges: folded.ranges };
      ledgerChanged = true;
    }
    // Damaged ranges found by reads: a hole readers step over, and a gap for the part not yet delivered.
    const repaired = applyRepairs(work.repairs, this.holes, { oldest: newOldest, delivered: newDelivered, epoch: s.epoch });
    const { holes, holesChanged } = repaired;
    newOldest = repaired.oldest;
    newDelivered = repaired.delivered;
    freed += repaired.freedBytes;
    gaps.push(...repaired.gaps);
    if (gaps.length > 0) {
      // Gaps follow this commit's events, in a block of their own so the events' block needs no re-encoding.
      const gapFirst = cursor.head + 1;
      const gapStart = cursor.count;
      for (const data of gaps) cursor.push(gapEvent(data as Parameters<typeof gapEvent>[0]), new Date(now).toISOString(), now);
      const gapLines = cursor.lines.slice(gapStart);
      blocks.push({ firstSeq: gapFirst, value: encodeBlock(gapLines, now, true), lines: gapLines });
    }
    if (ledgerChanged) ops.push({ type: 'put', key: META.gaps, value: Buffer.from(JSON.stringify(ledger)) });
    if (holesChanged) ops.push({ type: 'put', key: META.holes, value: Buffer.from(holes.toJSON()) });
    const written = blocks.reduce((n, b) => n + b.value.length, 0);
    const bytes = Math.max(0, s.bytes - freed + written);
    for (const b of blocks) ops.push({ type: 'put', key: blockKey(b.firstSeq), value: b.value });
    const meta = (key: string, value: string | number): void => void ops.push({ type: 'put', key, value: Buffer.from(String(value)) });
    meta(META.head, cursor.head);
    meta(META.lastHash, cursor.lastHash ?? '');
    meta(META.delivered, newDelivered);
    meta(META.oldest, newOldest);
    meta(META.bufferedBytes, bytes);

    // Events are acknowledged only by a synced write (durability fsync); cursor-only batches need no sync:
    // after a power cut the cursor may be behind, which replays events the gateway deduplicates.
    await db.batch(ops, { sync: this.opts.durability === 'fsync' && blocks.length > 0 }).catch((err: unknown) => {
      throw refusedWrite(err);
    });

    this.s = { epoch: s.epoch, head: cursor.head, lastHash: cursor.lastHash, delivered: newDelivered, oldest: newOldest, bytes };
    this.holes = holes;
    this.gapLedger = ledger;
    for (const r of repaired.recorded) {
      this.recovered = `buffer blocks for seq ${r.from}-${r.to} are unreadable (${r.error}); skipped with a gap event`;
      this.opts.logger?.error({ from: r.from, to: r.to, epoch: s.epoch, error: r.error }, `buffer: ${this.recovered}`);
    }
    if (plan !== undefined && plan.deleted.length > 0) {
      this.cache.dropBefore(newOldest);
      this.oldestBlockLast = plan.next?.lastSeq ?? lastSeqOf(blocks[0]);
    } else if (this.oldestBlockLast === undefined && blocks.length > 0) {
      this.oldestBlockLast = lastSeqOf(blocks[0]);
    }
    this.cacheNewBlocks(blocks, s.head);
    work.appends.forEach((a, i) => {
      const [start, end] = slices[i] as [number, number];
      a.resolve(cursor.events.slice(start, end));
    });
    for (const w of [...work.ackWaiters, ...work.sweepWaiters, ...work.repairWaiters]) w.resolve();
    if (cursor.head > s.head) for (const listener of this.listeners) listener(cursor.head);
    if (this.spaceWaiters.length > 0) {
      if (!this.isFull()) this.wakeSpaceWaiters(false);
    }
    // An ack may have made delivered blocks evictable while appends are being refused.
    if (this.s.bytes >= this.opts.maxBytes && this.oldestBlockLast !== undefined && this.oldestBlockLast <= this.s.delivered) {
      this.queue.makeRoom();
    }
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

