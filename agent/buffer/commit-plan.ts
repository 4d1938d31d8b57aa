import { GAP_TYPE, type AuditEvent, type ChainedEvent, type RejectedItem } from '../../protocols/index.js';
import type { BlockCache } from './block-cache.js';
import { encodeBlock, readBlockMeta, type BlockMeta } from './block-codec.js';
import { ChainCursor, LineTooLarge } from './chain-cursor.js';
import type { CommitWork } from './commit-queue.js';
import { applyRepairs, type UnreadableRange } from './corrupt-read.js';
import { droppedGaps, foldGaps, gapData, type GapLedger, type NamedRange } from './gap-fold.js';
import { nextHeld, splitHeld, type HeldRanges } from './held-ranges.js';
import type { Holes } from './holes.js';
import { BLOCK_END, blockKey, blockSeq, extraKey, META } from './keys.js';
import { isCorruption, type BufferDb, type StoredMeta } from './level-store.js';
import type { ResolvedBufferOptions } from './options.js';
import { gapEvent, planRelease, type ReleasePlan } from './space-plan.js';
import { eventsRefusal } from './refused-events.js';

export type BatchOp = { type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string };

/** A block this commit writes, with its lines for the cache. */
export interface NewBlock {
  firstSeq: number;
  value: Buffer;
  lines: string[];
}

/** What the buffer holds when a commit is planned; planCommit changes none of it. */
export interface CommitBase {
  db: BufferDb;
  opts: ResolvedBufferOptions;
  cursors: StoredMeta;
  holes: Holes;
  gapLedger: GapLedger;
  cache: BlockCache;
  /** Last seq of the oldest stored block. */
  oldestBlockLast: number | undefined;
  /** Deleted ranges the push sink holds in memory (held-ranges.ts). */
  held: HeldRanges;
  /** The newest seq the push sink holds in memory (its window), and of which epoch; those up to it are not lost when deleted. */
  heldUpTo: () => { epoch: string; upTo: number };
}

/** One group commit, ready to write: the batch, and what the buffer adopts once it is durable. */
export interface CommitPlan {
  ops: BatchOp[];
  /** Whether the batch must be synced (it holds events, and durability is fsync). */
  sync: boolean;
  blocks: NewBlock[];
  /** The chained events, in commit order; `slices[i]` is append i's share of them. */
  events: ChainedEvent[];
  slices: [number, number][];
  /** `refused[i]`: why append i could not be chained (it is not in the batch; the others are). */
  refused: unknown[];
  cursors: StoredMeta;
  holes: Holes;
  gapLedger: GapLedger;
  /** Unreadable ranges this commit records as holes. */
  recorded: UnreadableRange[];
  /** Blocks deleted to make room or by the retention sweep, and the oldest one left. */
  release: ReleasePlan | undefined;
  /** The push sink's held ranges after this commit; the stale ones are named lost by it. */
  held: NamedRange[];
}

// Reserved for the gap block a drop-oldest commit adds, so the bound holds with it.
const GAP_BLOCK_RESERVE = 512;

const holdsGap = (events: readonly ChainedEvent[]): boolean => events.some((e) => e.type === GAP_TYPE);

/**
 * Plans one group commit: chains the appended events, makes room (deleting
 * delivered blocks, or undelivered ones under drop-oldest, with a gap event
 * naming them), runs the retention sweep when asked, records unreadable
 * ranges as holes, and moves the cursors — all into one atomic batch. It
 * reads the store but writes nothing, so a failed write leaves nothing to
 * roll back.
 */
export async function planCommit(base: CommitBase, work: CommitWork, now: number): Promise<CommitPlan> {
  const { db, opts, cursors: s } = base;
  const cursor = new ChainCursor({ agent: opts.id, epoch: s.epoch, head: s.head, lastHash: s.lastHash }, opts.maxLineBytes);
  const ops: BatchOp[] = [];
  const slices: [number, number][] = [];
  const refused: unknown[] = [];
  for (const a of work.appends) {
    const start = cursor.count;
    const cannot: RejectedItem[] = [];
    let unstorable = false;
    try {
      for (let i = 0; i < a.events.length; i++) {
        try {
          cursor.push(a.events[i] as AuditEvent, a.receivedAt, now);
        } catch (err) {
          // Every event of the append that cannot be stored is named at once, so its caller retries once
          // without them (or with an intake error record in their place) instead of for ever.
          if (!(err instanceof LineTooLarge)) unstorable = true;
          cannot.push({ index: i, error: err instanceof LineTooLarge ? err.message : `event cannot be stored: ${(err as Error).message}` });
        }
      }
      if (cannot.length > 0) throw eventsRefusal(cannot, unstorable);
    } catch (err) {
      // An event no canonical JSON can hold (validation lets none through), or one too large once
      // stored: its append alone fails, not every caller that shares the commit.
      cursor.truncate(start);
      refused[slices.length] = err;
      slices.push([start, start]);
      continue;
    }
    slices.push([start, cursor.count]);
    for (const x of a.extra ?? []) ops.push(x.value === null ? { type: 'del', key: extraKey(x.key) } : { type: 'put', key: extraKey(x.key), value: Buffer.from(x.value, 'utf8') });
  }
  const blocks: NewBlock[] = [];
  if (cursor.count > 0) {
    blocks.push({ firstSeq: s.head + 1, value: encodeBlock(cursor.lines, now, holdsGap(cursor.events)), lines: cursor.lines });
  }
  const incoming = blocks.reduce((n, b) => n + b.value.length, 0);
  // Acks and unreadable ranges name seqs of the epoch they were queued in: a store replaced since makes them moot.
  const ackTo = work.ackEpoch === s.epoch ? work.ackTo : 0;
  const repairs = work.repairs.filter((r) => r.epoch === s.epoch);
  const delivered = Math.max(s.delivered, Math.min(ackTo, s.head));
  const dropUndelivered = opts.whenFull === 'drop-oldest';

  // Only a commit that brings events needs the gap reserve: after any drop the buffer sits within it of
  // the bound, and a sweep reserving it there deleted an undelivered block every interval.
  let needBytes = s.bufferedBytes + incoming - opts.maxBytes + (dropUndelivered && incoming > 0 ? GAP_BLOCK_RESERVE : 0);
  if (incoming === 0 && !work.sweep) needBytes = work.makeRoom ? s.bufferedBytes - opts.maxBytes + 1 : 0;
  const evictable = base.oldestBlockLast !== undefined && (base.oldestBlockLast <= delivered || dropUndelivered);
  const release =
    (needBytes > 0 && evictable) || work.sweep
      ? await planRelease(storedBlocks(db, s.oldest, opts), {
          delivered,
          needBytes,
          dropUndelivered,
          deliveredBefore: work.sweep ? now - opts.retainMs : undefined,
          undeliveredBefore: work.sweep && opts.maxUndeliveredAgeMs !== undefined ? now - opts.maxUndeliveredAgeMs : undefined,
        })
      : undefined;

  let newDelivered = delivered;
  let newOldest = s.oldest;
  let freed = release?.freedBytes ?? 0;
  const gaps: Record<string, unknown>[] = [];
  if (release !== undefined && release.deleted.length > 0) {
    for (const b of release.deleted) ops.push({ type: 'del', key: blockKey(b.firstSeq) });
    const lastDeleted = release.deleted[release.deleted.length - 1] as BlockMeta;
    newOldest = lastDeleted.lastSeq + 1;
    newDelivered = Math.max(newDelivered, lastDeleted.lastSeq);
  }
  // The gateway has the newest gap event: the ranges it named need no repeating.
  let ledger: GapLedger = base.gapLedger.seq > 0 && ackTo >= base.gapLedger.seq ? { seq: 0, ranges: [] } : base.gapLedger;
  let ledgerChanged = ledger !== base.gapLedger;
  // What the push sink holds in memory is not lost: it sends it from there (see held-ranges.ts).
  const split = release !== undefined && release.lost.length > 0 ? splitHeld(release.lost, heldIn(base.heldUpTo(), s.epoch)) : { lost: [], held: [] };
  for (const r of split.held) opts.logger?.warn({ ...r, epoch: s.epoch }, 'buffer: undelivered events deleted while the push sink holds them; it sends them from memory');
  // Nothing held, nothing recorded: the usual commit does no more work here.
  const touched = base.held.live.length > 0 || split.held.length > 0 || base.held.stale.length > 0;
  const held = touched ? nextHeld(base.held.live, work.ackEpoch === s.epoch ? work.ackTo : 0, split.held) : base.held.live;
  const heldChanged = touched && (base.held.stale.length > 0 || JSON.stringify(held) !== JSON.stringify(base.held.live));
  for (const lost of split.lost) opts.logger?.warn({ ...lost, epoch: s.epoch }, 'buffer: undelivered events deleted; gap event appended');
  if (release !== undefined && release.lost.length > 0) {
    const folded = foldGaps(split.lost, ledger.ranges, await droppedGaps(db, base.cache, release.deleted, delivered, opts.logger));
    if (folded.ranges.length > 0 || folded.verbatim.length > 0) {
      gaps.push(...folded.ranges.map(gapData), ...folded.verbatim);
      ledger = { seq: cursor.head + folded.ranges.length, ranges: folded.ranges };
      ledgerChanged = true;
    }
  }
  // Held by a push sink of an earlier life of this process, never acked: nothing holds them now.
  gaps.push(...base.held.stale.map(gapData));
  // Damaged ranges found by reads: a hole readers step over, and a gap for the part not yet delivered.
  const repaired = applyRepairs(repairs, base.holes, { oldest: newOldest, delivered: newDelivered, epoch: s.epoch });
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
  if (heldChanged) ops.push(held.length === 0 ? { type: 'del', key: META.held } : { type: 'put', key: META.held, value: Buffer.from(JSON.stringify(held)) });
  if (repaired.holesChanged) ops.push({ type: 'put', key: META.holes, value: Buffer.from(repaired.holes.toJSON()) });
  const written = blocks.reduce((n, b) => n + b.value.length, 0);
  const bufferedBytes = Math.max(0, s.bufferedBytes - freed + written);
  for (const b of blocks) ops.push({ type: 'put', key: blockKey(b.firstSeq), value: b.value });
  const meta = (key: string, value: string | number): void => void ops.push({ type: 'put', key, value: Buffer.from(String(value)) });
  meta(META.head, cursor.head);
  meta(META.lastHash, cursor.lastHash ?? '');
  meta(META.delivered, newDelivered);
  meta(META.oldest, newOldest);
  meta(META.bufferedBytes, bufferedBytes);

  return {
    ops,
    // Events are acknowledged only by a synced write (durability fsync); cursor-only batches need no sync:
    // after a power cut the cursor may be behind, which replays events the gateway deduplicates.
    sync: opts.durability === 'fsync' && blocks.length > 0,
    blocks,
    events: cursor.events,
    slices,
    refused,
    cursors: { epoch: s.epoch, head: cursor.head, lastHash: cursor.lastHash, delivered: newDelivered, oldest: newOldest, bufferedBytes },
    holes: repaired.holes,
    gapLedger: ledger,
    recorded: repaired.recorded,
    release,
    held,
  };
}

/** A window of another epoch (the sink has not followed a replaced store yet) holds none of this one's seqs. */
function heldIn(held: { epoch: string; upTo: number }, epoch: string): number {
  return held.epoch === epoch ? held.upTo : 0;
}

/** The stored blocks from `oldest` on, as planRelease walks them. */
async function* storedBlocks(db: BufferDb, oldest: number, opts: ResolvedBufferOptions): AsyncGenerator<BlockMeta> {
  try {
    for await (const [key, value] of db.iterator({ gte: blockKey(oldest), lt: BLOCK_END })) {
      yield readBlockMeta(blockSeq(key), value);
    }
  } catch (err) {
    // LevelDB reports skipped damaged table blocks at the end of a scan: release what was seen.
    if (!isCorruption(err)) throw err;
    opts.logger?.error({ err }, 'buffer: damaged blocks met while planning a release; they stay until read');
  }
}
