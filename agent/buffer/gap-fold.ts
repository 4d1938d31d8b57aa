import { GAP_TYPE, type ChainedEvent } from '../../protocols/index.js';
import type { BlockCache } from './block-cache.js';
import { decodeBlockLines, type BlockMeta } from './block-codec.js';
import { blockKey } from './keys.js';
import type { BufferDb } from './level-store.js';
import type { BufferLogger } from './options.js';
import type { GapReason, LostRange } from './space-plan.js';

type GapData = Record<string, unknown>;

export interface NamedRange {
  from: number;
  to: number;
  reason: string;
}

/** The ranges named by the buffer's own undelivered gap events, and the seq of the newest one naming all of them. */
export interface GapLedger {
  seq: number;
  ranges: NamedRange[];
}

const FOLDABLE: ReadonlySet<string> = new Set<GapReason>(['buffer-full-drop-oldest', 'retention-undelivered']);

export function parseLedger(json: string | undefined): GapLedger {
  try {
    const v = JSON.parse(json ?? '') as GapLedger;
    if (Number.isSafeInteger(v.seq) && Array.isArray(v.ranges)) return v;
  } catch {
    // Absent or unreadable: the next gap names only what it drops (older ranges stay in their own events).
  }
  return { seq: 0, ranges: [] };
}

/** Merges ranges per reason into maximal contiguous runs: the exact union. */
export function mergeRanges(ranges: readonly NamedRange[]): NamedRange[] {
  const out: NamedRange[] = [];
  const sorted = [...ranges].sort((a, b) => (a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : a.from - b.from));
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && last.reason === r.reason && r.from <= last.to + 1) last.to = Math.max(last.to, r.to);
    else out.push({ ...r });
  }
  return out;
}

/**
 * The gap events a release appends. Gap events sit at the head of the
 * buffer, so a long overflow under drop-oldest deletes them before they are
 * delivered; whatever they named would then be recorded nowhere. So the new
 * gap names the union of what this release loses, what every undelivered gap
 * of the buffer's still names (the ledger) and what the dropped gap events
 * named: one event per contiguous run and reason, exact, and the number of
 * events stays small however long the overflow lasts. A range may thus be
 * named by more than one gap event (consumers take the union). Dropped gap
 * events that do not fold (another reason, another epoch) are appended again.
 */
export function foldGaps(
  lost: readonly LostRange[],
  ledger: readonly NamedRange[],
  droppedGaps: readonly ChainedEvent[],
): { ranges: NamedRange[]; verbatim: GapData[] } {
  const ranges: NamedRange[] = [...ledger, ...lost.map((l) => ({ from: l.from, to: l.to, reason: l.reason }))];
  const verbatim: GapData[] = [];
  for (const event of droppedGaps) {
    const data = (event.data ?? {}) as GapData;
    const { from, to, reason } = data;
    const simple =
      typeof reason === 'string' && FOLDABLE.has(reason) && Number.isSafeInteger(from) && Number.isSafeInteger(to) && data.lostEpoch === undefined;
    if (simple) ranges.push({ from: from as number, to: to as number, reason });
    else verbatim.push({ ...data });
  }
  return { ranges: mergeRanges(ranges), verbatim };
}

export function gapData(r: NamedRange): GapData {
  return { from: r.from, to: r.to, count: r.to - r.from + 1, reason: r.reason };
}

/** Undelivered gap events inside blocks about to be deleted: their ranges must not vanish with them. */
export async function droppedGaps(
  db: BufferDb,
  cache: BlockCache,
  deleted: readonly BlockMeta[],
  delivered: number,
  logger: BufferLogger | undefined,
): Promise<ChainedEvent[]> {
  const out: ChainedEvent[] = [];
  for (const b of deleted) {
    // Only flagged blocks hold gap events: the others are never inflated here.
    if (!b.gaps || b.lastSeq <= delivered) continue;
    let lines = cache.find(b.firstSeq)?.lines;
    if (lines === undefined) {
      try {
        const value = await db.get(blockKey(b.firstSeq));
        lines = value === undefined ? [] : decodeBlockLines(b.firstSeq, value);
      } catch (err) {
        logger?.error({ err, firstSeq: b.firstSeq }, 'buffer: a dropped block with gap events cannot be read; their ranges are lost');
        lines = [];
      }
    }
    for (const line of lines) {
      const e = JSON.parse(line) as ChainedEvent;
      if (e.type === GAP_TYPE && e.seq > delivered) out.push(e);
    }
  }
  return out;
}
