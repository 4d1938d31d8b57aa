import type { EpochStatus, SeqGap } from '../../protocols/index.js';

/**
 * Per (agent, epoch) bookkeeping of which seqs arrived (DESIGN §4): a seq
 * counts as received when its event arrives, even as a duplicate; a hole is
 * a seq that never arrived. Gaps open when a seq jumps ahead and close or
 * split when a missing seq arrives later. Pure, so every backend shares it.
 */
export interface EpochState extends EpochStatus {
  /** Hash of the highest seq received: the chain head that seeds integrity checks after a restart. */
  lastHash?: string;
}

/**
 * An agent sending only every other seq would grow the gap list without end;
 * past this many the two oldest gaps merge. That over-reports (a merged gap
 * also covers seqs that did arrive) rather than hiding a loss.
 */
export const MAX_GAPS_PER_EPOCH = 1000;

export function newEpochState(agent: string, epoch: string, at: string): EpochState {
  return { agent, epoch, lastSeq: 0, lastSeen: at, received: 0, gaps: [] };
}

/** Records one arrived seq; mutates and returns `state`. */
export function recordSeq(state: EpochState, seq: number, hash: string | undefined, at: string): EpochState {
  state.received += 1;
  if (at > state.lastSeen) state.lastSeen = at;
  if (seq > state.lastSeq) {
    if (seq > state.lastSeq + 1) addGap(state.gaps, { from: state.lastSeq + 1, to: seq - 1, since: at });
    state.lastSeq = seq;
    if (hash === undefined) delete state.lastHash;
    else state.lastHash = hash;
    return state;
  }
  closeSeq(state.gaps, seq);
  return state;
}

function addGap(gaps: SeqGap[], gap: SeqGap): void {
  gaps.push(gap);
  if (gaps.length > MAX_GAPS_PER_EPOCH) {
    const [a, b] = gaps as [SeqGap, SeqGap];
    gaps.splice(0, 2, { from: a.from, to: b.to, since: a.since });
  }
}

/** Removes `seq` from the gap holding it, if any (gaps are sorted and disjoint). */
function closeSeq(gaps: SeqGap[], seq: number): void {
  let lo = 0;
  let hi = gaps.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const gap = gaps[mid] as SeqGap;
    if (seq < gap.from) hi = mid - 1;
    else if (seq > gap.to) lo = mid + 1;
    else {
      if (gap.from === gap.to) gaps.splice(mid, 1);
      else if (seq === gap.from) gap.from += 1;
      else if (seq === gap.to) gap.to -= 1;
      else gaps.splice(mid, 1, { from: gap.from, to: seq - 1, since: gap.since }, { from: seq + 1, to: gap.to, since: gap.since });
      return;
    }
  }
}

/** The public view of an epoch (without the internal chain head). */
export function epochStatus(state: EpochState): EpochStatus {
  const { lastHash: _internal, ...status } = state;
  return { ...status, gaps: status.gaps.map((g) => ({ ...g })) };
}
