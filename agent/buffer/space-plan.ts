import { GAP_TYPE, type AuditEvent } from '../../protocols/index.js';
import type { BlockMeta } from './block-codec.js';

export type GapReason = 'buffer-full-drop-oldest' | 'retention-undelivered' | 'buffer-corrupt' | 'agent-renamed';

/** Why a block is deleted: delivered (nothing lost) or one of the gap reasons. */
export type ReleaseReason = 'delivered' | Exclude<GapReason, 'buffer-corrupt' | 'agent-renamed'>;

export interface LostRange {
  from: number;
  to: number;
  count: number;
  reason: GapReason;
}

export interface ReleasePlan {
  /** Blocks to delete, oldest first (always a prefix of the stored blocks). */
  deleted: BlockMeta[];
  freedBytes: number;
  /** Undelivered seq ranges the deletion loses, one per reason run. */
  lost: LostRange[];
  /** The oldest block that stays, when one was read. */
  next: BlockMeta | undefined;
}

export interface ReleaseRules {
  delivered: number;
  /** Bytes to free for the incoming commit (≤ 0: none). */
  needBytes: number;
  /** May undelivered blocks go to make room? (policy drop-oldest) */
  dropUndelivered: boolean;
  /** Commit-time cut-offs (ms) for the retention sweep; undefined: no sweep in this commit. */
  deliveredBefore?: number;
  undeliveredBefore?: number;
}

function reasonFor(block: BlockMeta, freed: number, rules: ReleaseRules): ReleaseReason | undefined {
  const delivered = block.lastSeq <= rules.delivered;
  if (delivered && rules.deliveredBefore !== undefined && block.time <= rules.deliveredBefore) return 'delivered';
  if (!delivered && rules.undeliveredBefore !== undefined && block.time <= rules.undeliveredBefore) return 'retention-undelivered';
  if (freed < rules.needBytes) {
    if (delivered) return 'delivered';
    if (rules.dropUndelivered) return 'buffer-full-drop-oldest';
  }
  return undefined;
}

/**
 * Walks the stored blocks from the oldest and takes them while a rule says
 * so: retention (delivered and old enough, or undelivered and past the
 * undelivered age limit), then room for the incoming commit (delivered
 * blocks first by construction, undelivered ones only for drop-oldest).
 * Stops at the first block that stays, so the store remains one contiguous range.
 */
export async function planRelease(blocks: AsyncIterable<BlockMeta>, rules: ReleaseRules): Promise<ReleasePlan> {
  const plan: ReleasePlan = { deleted: [], freedBytes: 0, lost: [], next: undefined };
  for await (const block of blocks) {
    const reason = reasonFor(block, plan.freedBytes, rules);
    if (reason === undefined) {
      plan.next = block;
      break;
    }
    plan.deleted.push(block);
    plan.freedBytes += block.bytes;
    if (reason === 'delivered') continue;
    const from = Math.max(block.firstSeq, rules.delivered + 1);
    const last = plan.lost[plan.lost.length - 1];
    if (last !== undefined && last.reason === reason && last.to + 1 === from) {
      last.to = block.lastSeq;
      last.count = last.to - last.from + 1;
    } else {
      plan.lost.push({ from, to: block.lastSeq, count: block.lastSeq - from + 1, reason });
    }
  }
  return plan;
}

/** The event that makes a loss visible downstream (DESIGN §3.4). */
export function gapEvent(data: Record<string, unknown> & { reason: GapReason }): AuditEvent {
  return { type: GAP_TYPE, data };
}
