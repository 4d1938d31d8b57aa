import { sha256Hex } from './canonical.js';
import { fastCanonicalJson, fastCanonicalJsonWithout } from './fast-canonical.js';
import type { AuditEvent } from './envelope.js';

/**
 * `hash` = SHA-256 (hex) of the RFC 8785 canonical JSON of the event without
 * `hash`; it covers `prev`, so each hash commits to the whole chain before it.
 */
export function computeHash(event: AuditEvent): string {
  if (event.hash === undefined) return sha256Hex(fastCanonicalJson(event));
  return sha256Hex(fastCanonicalJsonWithout(event as unknown as Record<string, unknown>, 'hash'));
}

/** Sets `prev` (when there is a previous hash) and `hash` on a copy of the event. */
export function chainEvent<T extends AuditEvent>(event: T, prev: string | undefined): T & { hash: string } {
  const { hash: _old, prev: _oldPrev, ...rest } = event;
  const linked = (prev === undefined ? rest : { ...rest, prev }) as T;
  return { ...linked, hash: computeHash(linked) };
}

export type ChainBreakReason = 'hash-mismatch' | 'prev-mismatch' | 'seq-gap' | 'seq-order' | 'unchained' | 'chain-mismatch';

export interface ChainBreak {
  /** Position in the list that was verified. */
  index: number;
  seq: number | undefined;
  reason: ChainBreakReason;
  detail: string;
}

/** Where a chain stood after its last verified event. */
export interface ChainPosition {
  seq: number;
  hash: string;
}

/**
 * Checks one event against the position of its predecessor in the same
 * (agent, epoch). `after` undefined means nothing earlier is known: the event
 * is then checked on its own (its hash), and its link only when it is seq 1.
 * `unhashed`: the event's canonical JSON without `hash`, when the caller read
 * it from the event's text (readCanonicalLine): hashed as it is, instead of
 * serialising the event again (computeHash); `null`: its links only, the
 * hash taken as given (a stored event, checked on arrival and maybe masked
 * since, so that its content no longer matches the agent's hash).
 */
export function checkLink(
  event: AuditEvent,
  after: ChainPosition | undefined,
  unhashed?: string | null,
): { reason: ChainBreakReason; detail: string } | undefined {
  if (event.hash === undefined || event.seq === undefined) return { reason: 'unchained', detail: 'no hash or seq' };
  if (unhashed !== null) {
    const expected = unhashed === undefined ? computeHash(event) : sha256Hex(unhashed);
    if (expected !== event.hash) return { reason: 'hash-mismatch', detail: `hash does not match content (expected ${expected})` };
  }
  if (after === undefined) {
    if (event.seq === 1 && event.prev !== undefined) return { reason: 'prev-mismatch', detail: 'seq 1 must have no prev' };
    return undefined;
  }
  if (event.seq <= after.seq) return { reason: 'seq-order', detail: `seq ${event.seq} after seq ${after.seq}` };
  if (event.seq !== after.seq + 1) {
    return { reason: 'seq-gap', detail: `seq ${event.seq} follows seq ${after.seq}: ${event.seq - after.seq - 1} missing` };
  }
  if (event.prev !== after.hash) return { reason: 'prev-mismatch', detail: `prev does not match the hash of seq ${after.seq}` };
  return undefined;
}

export interface ChainVerdict {
  ok: boolean;
  /** Every break found, in order; a break does not stop the walk. */
  breaks: ChainBreak[];
  /** Position after the last event. */
  last: ChainPosition | undefined;
}

/**
 * Verifies a list of events claimed to be consecutive in one (agent, epoch),
 * ordered as given. Any changed byte, reordering, removal or foreign event is
 * reported with its position. `after` anchors the first event to a known predecessor.
 */
export function verifyChain(events: readonly AuditEvent[], after?: ChainPosition): ChainVerdict {
  const breaks: ChainBreak[] = [];
  let position = after;
  const first = events[0];
  events.forEach((event, index) => {
    if (first !== undefined && (event.agent !== first.agent || event.epoch !== first.epoch)) {
      breaks.push({ index, seq: event.seq, reason: 'chain-mismatch', detail: 'event from another agent or epoch' });
      return;
    }
    const problem = checkLink(event, position);
    if (problem !== undefined) breaks.push({ index, seq: event.seq, ...problem });
    if (event.seq !== undefined && event.hash !== undefined) position = { seq: event.seq, hash: event.hash };
  });
  return { ok: breaks.length === 0, breaks, last: position };
}
