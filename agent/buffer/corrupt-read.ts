import type { BlockCache } from './block-cache.js';
import { decodeBlockLines } from './block-codec.js';
import { Holes } from './holes.js';
import { BLOCK_END, blockKey, blockSeq } from './keys.js';
import { isCorruption, type BufferDb } from './level-store.js';

/** An unreadable run of seqs found by a read, and what it cost. */
export interface UnreadableRange {
  from: number;
  to: number;
  /** Estimated stored bytes of the damaged blocks (LevelDB's own estimate; 0 when unknown). */
  bytes: number;
  error: string;
  /** The epoch whose seqs these are: a store replaced meanwhile makes the range moot. */
  epoch: string;
}

/**
 * First seq after `seq` that starts a block that can be read: from the
 * decoded-block cache, else the next stored block that decodes. LevelDB
 * iterators step over damaged table blocks silently and report the damage
 * only at the end, so entries seen before the error are still usable.
 */
async function nextReadable(db: BufferDb, cache: BlockCache, seq: number): Promise<number | undefined> {
  let best = cache.firstAfter(seq);
  try {
    for await (const [key, value] of db.iterator({ gt: blockKey(seq), lt: BLOCK_END })) {
      const firstSeq = blockSeq(key);
      if (best !== undefined && firstSeq >= best) break;
      try {
        if (decodeBlockLines(firstSeq, value).length > 0) {
          best = firstSeq;
          break;
        }
      } catch {
        // A damaged value: keep looking.
      }
    }
  } catch (err) {
    if (!isCorruption(err)) throw err;
  }
  return best;
}

/**
 * Works out how far the damage holding `seq` reaches: up to the next
 * readable block, the next known hole, or the head. The range is exact in
 * seqs: every block key encodes its first seq, so whatever lies between
 * `seq` and the next readable block start is what cannot be read.
 */
export async function unreadableFrom(
  db: BufferDb,
  cache: BlockCache,
  seq: number,
  limits: { head: number; nextHole: number; epoch: string },
  cause: unknown,
): Promise<UnreadableRange> {
  const next = await nextReadable(db, cache, seq);
  const to = Math.min(next === undefined ? limits.head : next - 1, limits.nextHole - 1, limits.head);
  let bytes = 0;
  try {
    bytes = await db.approximateSize(blockKey(seq), blockKey(to + 1));
  } catch {
    // Only an estimate for the byte count; unknown is fine.
  }
  const error = cause instanceof Error ? cause.message : `no block holds seq ${seq}`;
  return { from: seq, to, bytes, error, epoch: limits.epoch };
}

export interface RepairOutcome {
  holes: Holes;
  holesChanged: boolean;
  oldest: number;
  delivered: number;
  freedBytes: number;
  /** Gap event data for the undelivered part of each new hole. */
  gaps: Record<string, unknown>[];
  /** The ranges newly recorded (already-known or since-deleted ones are left out). */
  recorded: UnreadableRange[];
}

/**
 * Applies the unreadable ranges found by reads to a copy of the cursors and
 * holes (the buffer adopts them only once the batch is durable): each
 * becomes a hole; `oldest` and `delivered` move past it when it was next in
 * line; its undelivered part gets a `buffer-corrupt` gap.
 */
export function applyRepairs(
  repairs: readonly UnreadableRange[],
  current: Holes,
  at: { oldest: number; delivered: number; epoch: string },
): RepairOutcome {
  const holes = new Holes(current.toJSON());
  const out: RepairOutcome = { holes, holesChanged: holes.pruneBefore(at.oldest), oldest: at.oldest, delivered: at.delivered, freedBytes: 0, gaps: [], recorded: [] };
  for (const r of repairs) {
    const from = holes.skip(Math.max(r.from, out.oldest));
    if (from > r.to) continue; // already known, or deleted meanwhile
    holes.add(from, r.to);
    out.holesChanged = true;
    out.freedBytes += r.bytes;
    if (out.oldest === from) out.oldest = r.to + 1;
    const lostFrom = Math.max(from, out.delivered + 1);
    if (out.delivered >= from - 1) out.delivered = Math.max(out.delivered, r.to);
    if (lostFrom <= r.to) {
      out.gaps.push({ from: lostFrom, to: r.to, count: r.to - lostFrom + 1, reason: 'buffer-corrupt', epoch: at.epoch, error: r.error });
    }
    out.recorded.push({ ...r, from });
  }
  return out;
}
