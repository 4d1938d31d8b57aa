/**
 * Key layout of the buffer database. Blocks sort by first seq because the
 * seq is fixed-width hex (14 digits hold any safe integer); meta keys sit
 * apart under `m!`, the agent's own checkpoints (`extra`) under `x!`.
 */
const SEQ_WIDTH = 14;

export const BLOCK_PREFIX = 'b!';
/** Upper bound of the block key range (`!` < `0` < `f` < `~`). */
export const BLOCK_END = 'b!~';
export const EXTRA_PREFIX = 'x!';

export const META = {
  epoch: 'm!epoch',
  head: 'm!head',
  lastHash: 'm!lastHash',
  delivered: 'm!delivered',
  oldest: 'm!oldest',
  bufferedBytes: 'm!bufferedBytes',
  /** Unreadable seq ranges found after open (JSON); read apart from META_KEYS, absent in most stores. */
  holes: 'm!holes',
  /** Ranges named by the buffer's undelivered gap events (JSON, see gap-fold.ts); read apart from META_KEYS. */
  gaps: 'm!gaps',
  /** Deleted ranges the push sink held in memory, not yet acked (JSON, see held-ranges.ts); read apart from META_KEYS. */
  held: 'm!held',
  /** The agent id the epoch's latest events are chained under (see open-store.ts, continueUnderId); read apart from META_KEYS. */
  agent: 'm!agent',
} as const;

export const META_KEYS = [META.epoch, META.head, META.lastHash, META.delivered, META.oldest, META.bufferedBytes] as const;

export function blockKey(firstSeq: number): string {
  return BLOCK_PREFIX + firstSeq.toString(16).padStart(SEQ_WIDTH, '0');
}

export function blockSeq(key: string): number {
  return Number.parseInt(key.slice(BLOCK_PREFIX.length), 16);
}

export function extraKey(key: string): string {
  return EXTRA_PREFIX + key;
}
