import type { EpochStatus, SeqGap } from '../../protocols/index.js';

/**
 * Per (agent, epoch) bookkeeping of which seqs arrived (DESIGN §4): a seq
 * counts as received when its event arrives, even as a duplicate; a hole is
 * a seq that never arrived. Gaps open when a seq jumps ahead and close or
 * split when a missing seq arrives later. Pure, so every backend and the
 * pipeline's integrity stage share it.
 */
export interface EpochState extends Omit<EpochStatus, 'gaps'> {
  gaps: StoredGap[];
  /** Hash of the highest seq received: the chain head that seeds integrity checks after a restart. */
  lastHash?: string;
}

/**
 * What the chain says about a gap's neighbours, so that a late event filling
 * it can be linked to them (the hash is unkeyed: without these, an event
 * altered and re-hashed in transit would pass when it arrives late).
 * Undefined where it is not known: the neighbour had no hash, the gap was
 * recorded before edges were kept, or (`lowerHash` of a gap from seq 1)
 * there is no neighbour. A late event is then checked on its content only.
 */
export interface GapEdges {
  /** Hash of seq `from - 1`: the `prev` the event at `from` must carry. */
  lowerHash?: string;
  /** `prev` of seq `to + 1`: the hash the event at `to` must have. */
  upperPrev?: string;
}

/** A gap as the registry and the integrity stage hold it. */
export interface EdgedGap extends GapEdges {
  from: number;
  to: number;
}

/** A gap as the registry stores it (`ra!` key): the public fields and its edges. */
export type StoredGap = SeqGap & GapEdges;

/**
 * An agent sending only every other seq would grow the gap list without end;
 * past this many the two oldest gaps merge. That over-reports (a merged gap
 * also covers seqs that did arrive) rather than hiding a loss; the merged
 * gap keeps the outer edges, which stay true of the chain.
 */
export const MAX_GAPS_PER_EPOCH = 1000;

export function newEpochState(agent: string, epoch: string, at: string): EpochState {
  return { agent, epoch, lastSeq: 0, lastSeen: at, received: 0, gaps: [] };
}

/** A seq range, both ends included. */
export interface SeqRange {
  from: number;
  to: number;
}

/** One arrived seq: its event's `hash` and `prev` as they arrived (undefined: unchained). */
export interface ArrivedSeq {
  seq: number;
  hash?: string | undefined;
  prev?: string | undefined;
  /** The seqs below it that its event, the agent's own verified gap event, names lost (agent-gap.ts). */
  lost?: SeqRange | undefined;
}

/** Records one arrived seq; mutates and returns `state`. */
export function recordSeq(state: EpochState, seen: ArrivedSeq, at: string): EpochState {
  const { seq, hash } = seen;
  state.received += 1;
  if (at > state.lastSeen) state.lastSeen = at;
  if (seq > state.lastSeq) {
    if (seq > state.lastSeq + 1) addGap(state.gaps, { from: state.lastSeq + 1, to: seq - 1, since: at, ...edges(state.lastHash, seen.prev) });
    state.lastSeq = seq;
    if (hash === undefined) delete state.lastHash;
    else state.lastHash = hash;
  } else {
    const index = findGap(state.gaps, seq);
    if (index >= 0) fillGap(state.gaps, index, seen);
  }
  // After the seq itself: a gap event that arrives ahead opens the very gap it names.
  if (seen.lost !== undefined) markReported(state.gaps, seen.lost);
  return state;
}

/**
 * Marks the parts of the gaps inside `range` as reported lost by the agent
 * (its own gap event names them): a gap straddling an end of the range is
 * split there. The edges at a split are the seqs next to it, which never
 * arrived either: unknown, as in any gap. Seqs of the range that did arrive
 * are no gap and stay as they are.
 */
export function markReported(gaps: StoredGap[], range: SeqRange): void {
  const first = findFirstGapEndingAtOrAfter(gaps, range.from);
  let index = first;
  while (index < gaps.length) {
    const gap = gaps[index] as StoredGap;
    if (gap.from > range.to) break;
    if (gap.reportedByAgent === true) {
      index += 1;
      continue;
    }
    const parts: StoredGap[] = [];
    if (gap.from < range.from) {
      const below: StoredGap = { ...gap, to: range.from - 1 };
      delete below.upperPrev;
      parts.push(below);
    }
    const middle: StoredGap = { ...gap, from: Math.max(gap.from, range.from), to: Math.min(gap.to, range.to), reportedByAgent: true };
    if (middle.from !== gap.from) delete middle.lowerHash;
    if (middle.to !== gap.to) delete middle.upperPrev;
    parts.push(middle);
    if (gap.to > range.to) {
      const above: StoredGap = { ...gap, from: range.to + 1 };
      delete above.lowerHash;
      parts.push(above);
    }
    gaps.splice(index, 1, ...parts);
    index += parts.length;
  }
  joinReported(gaps, Math.max(first - 1, 0), index);
  trimGaps(gaps);
}

/**
 * Joins reported gaps that touch (one ends where the next begins) among
 * `gaps[start..end]`. Gaps touch only where markReported split one hole, so
 * they are one recorded loss: an agent whose buffer keeps dropping names
 * its whole loss again in each gap event (1..20, then 1..60, …), and
 * without joining every such event left one more gap — hundreds from one
 * outage, until the cap merged an older hole nobody recorded into them and
 * the agent's recorded loss was alerted and asked for as a new hole.
 */
function joinReported(gaps: StoredGap[], start: number, end: number): void {
  let i = start;
  let last = Math.min(end, gaps.length - 1);
  while (i < last) {
    const a = gaps[i] as StoredGap;
    const b = gaps[i + 1] as StoredGap;
    if (a.reportedByAgent === true && b.reportedByAgent === true && a.to + 1 === b.from) {
      const joined: StoredGap = { ...a, to: b.to };
      delete joined.upperPrev;
      if (b.upperPrev !== undefined) joined.upperPrev = b.upperPrev;
      if (b.since < a.since) joined.since = b.since;
      gaps.splice(i, 2, joined);
      last -= 1;
    } else {
      i += 1;
    }
  }
}

/** Index of the first gap whose `to` is ≥ `seq` (gaps.length when none). */
function findFirstGapEndingAtOrAfter(gaps: readonly EdgedGap[], seq: number): number {
  let lo = 0;
  let hi = gaps.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((gaps[mid] as EdgedGap).to < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The edges of a gap opened below an event: `lowerHash` of the head it jumped from, `upperPrev` its own prev. */
export function edges(lowerHash: string | undefined, upperPrev: string | undefined): GapEdges {
  const out: GapEdges = {};
  if (lowerHash !== undefined) out.lowerHash = lowerHash;
  if (upperPrev !== undefined) out.upperPrev = upperPrev;
  return out;
}

/** Appends a gap above every other one, merging the two oldest past MAX_GAPS_PER_EPOCH. */
export function addGap<G extends EdgedGap>(gaps: G[], gap: G): void {
  gaps.push(gap);
  trimGaps(gaps);
}

/**
 * Merges the two oldest gaps while there are more than MAX_GAPS_PER_EPOCH.
 * The merged gap is reported by the agent only if both were: otherwise a
 * loss nobody recorded would be hidden behind one that was.
 */
function trimGaps<G extends EdgedGap & { reportedByAgent?: true }>(gaps: G[]): void {
  while (gaps.length > MAX_GAPS_PER_EPOCH) {
    const [a, b] = gaps as [G, G];
    const merged: G = { ...a, to: b.to };
    delete merged.upperPrev;
    if (b.upperPrev !== undefined) merged.upperPrev = b.upperPrev;
    if (b.reportedByAgent !== true) delete merged.reportedByAgent;
    gaps.splice(0, 2, merged);
  }
}

/** Index of the gap holding `seq`, or -1 (gaps are sorted and disjoint). */
export function findGap(gaps: readonly EdgedGap[], seq: number): number {
  const index = findFirstGapEndingAtOrAfter(gaps, seq);
  return index < gaps.length && (gaps[index] as EdgedGap).from <= seq ? index : -1;
}

/**
 * Removes `seen.seq` from the gap at `index` (which holds it): the gap
 * shrinks or splits, and the arrived event becomes the edge of what is left
 * on either side of it — its hash the lower edge above it, its prev the
 * upper edge below it.
 */
export function fillGap<G extends EdgedGap>(gaps: G[], index: number, seen: ArrivedSeq): void {
  const gap = gaps[index] as G;
  const { seq } = seen;
  if (gap.from === gap.to) {
    gaps.splice(index, 1);
    return;
  }
  const below: G = { ...gap, to: seq - 1 };
  const above: G = { ...gap, from: seq + 1 };
  setEdge(below, 'upperPrev', seen.prev);
  setEdge(above, 'lowerHash', seen.hash);
  if (seq === gap.from) gaps.splice(index, 1, above);
  else if (seq === gap.to) gaps.splice(index, 1, below);
  else gaps.splice(index, 1, below, above);
}

function setEdge(gap: EdgedGap, edge: keyof GapEdges, value: string | undefined): void {
  if (value === undefined) delete gap[edge];
  else gap[edge] = value;
}

/** The public view of an epoch (without the internal chain head and gap edges). */
export function epochStatus(state: EpochState): EpochStatus {
  const { lastHash: _internal, ...status } = state;
  return { ...status, gaps: status.gaps.map((g) => (g.reportedByAgent === true ? { from: g.from, to: g.to, since: g.since, reportedByAgent: true } : { from: g.from, to: g.to, since: g.since })) };
}
