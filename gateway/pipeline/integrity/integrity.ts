import { LRUCache } from 'lru-cache';
import { checkLink, type AuditEvent, type ChainPosition, type Integrity } from '../../../protocols/index.js';
import { addGap, edges, fillGap, findGap, MAX_GAPS_PER_EPOCH, type EdgedGap } from '../../storage/seq-gaps.js';
import type { ChainState } from '../../storage/types.js';

/** Reads a chain's head and open gaps from storage when the cache does not hold it (after a restart, or evicted). */
export type ChainHeadLookup = (agent: string, epoch: string) => Promise<ChainState | undefined>;

export interface IntegrityVerdict {
  integrity: Integrity;
  /** Why the chain is broken, for the alert. */
  detail?: string;
  /**
   * Verified on its content, at a seq the chain already holds outside any
   * gap: a resend of the event received there, or a second event at that
   * position (a forked chain). The caller tells them apart by id (dedup).
   */
  repeat?: true;
}

/**
 * What the tracker holds per chain: the highest seq seen, its hash, and the gaps below it with their
 * edges. The hash is unknown only for a head read back from a registry whose highest seq arrived unchained.
 */
interface Chain {
  seq: number;
  hash: string | undefined;
  gaps: EdgedGap[] | undefined;
}

const hashKnown = (chain: Chain): chain is Chain & ChainPosition => chain.hash !== undefined;

type ChainedEvent = AuditEvent & { hash: string; seq: number; agent: string; epoch: string };

const key = (agent: string, epoch: string): string => `${agent}\u0000${epoch}`;

/**
 * The integrity stage (DESIGN §4): runs on events as they arrived, before
 * transforms change their content. Per (agent, epoch) it keeps the position
 * of the highest seq seen and the open gaps below it, and judges each event:
 *  - `unchained`: no hash (or no seq);
 *  - `broken`: its hash does not match its content, or it does not link to
 *    a neighbour that is known: the next seq whose `prev` is not the hash of
 *    the one before; a late seq at the bottom of a gap whose `prev` is not
 *    the hash of the seq below the gap, or at its top whose hash is not the
 *    `prev` of the seq above it; a late seq whose `prev` is not the hash of
 *    the late seq before it in the same commit;
 *  - `verified`: content matches its hash and it links to every neighbour
 *    known. A seq after a gap, a late seq in the middle of one, or a repeat
 *    of one received before, is checked on its content only — it becomes the
 *    edge its neighbours are checked against when they come. A repeat is
 *    marked (`repeat`): unless dedup finds its id stored, it is a second
 *    event at a position the chain holds, and the pipeline marks it broken.
 * Whichever of two neighbours arrives second is the one marked: stored
 * events are never changed. The gap registry (seq-gaps.ts) keeps the same
 * gaps and edges on disk, so a restart or an eviction reads them back.
 * `prepare` loads unknown chains first so that `check` is synchronous and
 * runs in commit order.
 */
export class ChainTracker {
  private readonly chains: LRUCache<string, Chain>;
  /** Chains looked up and found empty in storage (first event of a new epoch). */
  private readonly absent = new Set<string>();
  /** Per chain, the last late event checked in this commit: the next seq after it must link to it. */
  private readonly runs = new Map<string, ChainPosition>();

  constructor(
    private readonly lookup: ChainHeadLookup,
    maxChains = 100_000,
    /**
     * Open gaps held over all chains (a chain weighs 1 + its gaps). ≈50 B each: the edge hashes are the
     * strings the registry holds too. As many as the registry holds by default.
     */
    maxGaps = 100_000,
  ) {
    // Room for at least one chain with the most gaps an epoch holds: the cache refuses an entry larger than its bound.
    const maxSize = maxChains + Math.max(maxGaps, MAX_GAPS_PER_EPOCH);
    this.chains = new LRUCache({ max: maxChains, maxSize, sizeCalculation: (c) => 1 + (c.gaps?.length ?? 0) });
  }

  /** Loads the chains of `events` not held; starts a commit (runs of late events do not cross commits). */
  async prepare(events: Iterable<AuditEvent>): Promise<void> {
    this.runs.clear();
    const wanted = new Map<string, [string, string]>();
    for (const e of events) {
      if (e.agent === undefined || e.epoch === undefined || e.hash === undefined) continue;
      const k = key(e.agent, e.epoch);
      if (!this.chains.has(k) && !this.absent.has(k)) wanted.set(k, [e.agent, e.epoch]);
    }
    await Promise.all(
      [...wanted].map(async ([k, [agent, epoch]]) => {
        const state = await this.lookup(agent, epoch);
        if (state === undefined) this.absent.add(k);
        else this.chains.set(k, { seq: state.seq, hash: state.hash, gaps: state.gaps?.length ? state.gaps : undefined });
      }),
    );
  }

  /**
   * `unhashed`: the event's canonical JSON without `hash`, when the caller read it from the text
   * (readCanonicalLine); `null`: links only, the hash taken as given (verify's replay of stored events).
   */
  check(event: AuditEvent, unhashed?: string | null): IntegrityVerdict {
    if (event.hash === undefined || event.seq === undefined || event.agent === undefined || event.epoch === undefined) {
      return { integrity: 'unchained' };
    }
    const k = key(event.agent, event.epoch);
    const chain = this.chains.get(k);
    if (chain !== undefined && event.seq === chain.seq + 1) {
      // In order, nearly every event: one link to check, the position moves in place.
      const problem = checkLink(event, hashKnown(chain) ? chain : undefined, unhashed);
      chain.seq = event.seq;
      chain.hash = event.hash;
      return problem === undefined ? VERIFIED : broken(event.seq, problem.detail);
    }
    return this.checkOutOfOrder(k, chain, event as ChainedEvent, unhashed);
  }

  /** Forgets every position: after a failed commit the cache may be ahead of storage. */
  reset(): void {
    this.chains.clear();
    this.absent.clear();
    this.runs.clear();
  }

  /** A chain's first event, a seq after a gap, or a late one. */
  private checkOutOfOrder(k: string, chain: Chain | undefined, event: ChainedEvent, unhashed: string | null | undefined): IntegrityVerdict {
    // Its content (and, at seq 1, that it has no prev) first; then its links to whatever neighbours are known.
    let problem = checkLink(event, undefined, unhashed)?.detail;
    if (chain === undefined || event.seq > chain.seq) {
      const gaps = chain?.gaps ?? [];
      const from = chain === undefined ? 1 : chain.seq + 1;
      // The seqs skipped: below them the head it jumped from, above them this event's prev.
      if (event.seq > from) addGap(gaps, { from, to: event.seq - 1, ...edges(chain?.hash, event.prev) });
      // A new object: the cache weighs an entry (its gaps) when it is set.
      this.chains.set(k, { seq: event.seq, hash: event.hash, gaps: gaps.length > 0 ? gaps : undefined });
      this.absent.delete(k);
    } else {
      const late = this.checkLate(k, chain, event);
      problem ??= late.problem;
      if (problem === undefined && late.repeat) return REPEATED;
    }
    return problem === undefined ? VERIFIED : broken(event.seq, problem);
  }

  /**
   * A seq at or below the head: linked to the late seq before it in this commit, and to the edges of the gap
   * it fills; `repeat` when it fills no gap.
   */
  private checkLate(k: string, chain: Chain, event: ChainedEvent): { problem: string | undefined; repeat: boolean } {
    let problem: string | undefined;
    const run = this.runs.get(k);
    if (run !== undefined && event.seq === run.seq + 1 && event.prev !== run.hash) problem = `prev does not match the hash of seq ${run.seq}`;
    this.runs.set(k, { seq: event.seq, hash: event.hash });
    const gaps = chain.gaps;
    const index = gaps === undefined ? -1 : findGap(gaps, event.seq);
    // Not in a gap: a repeat of a seq received before (a resend, a pull), or a fork; its content was checked.
    if (gaps === undefined || index < 0) return { problem, repeat: true };
    const gap = gaps[index] as EdgedGap;
    if (event.seq === gap.from && gap.lowerHash !== undefined && event.prev !== gap.lowerHash) {
      problem ??= `prev does not match the hash of seq ${gap.from - 1}`;
    }
    if (event.seq === gap.to && gap.upperPrev !== undefined && event.hash !== gap.upperPrev) {
      problem ??= `hash does not match the prev of seq ${gap.to + 1}`;
    }
    fillGap(gaps, index, event);
    this.chains.set(k, { seq: chain.seq, hash: chain.hash, gaps: gaps.length > 0 ? gaps : undefined });
    return { problem, repeat: false };
  }
}

const VERIFIED: IntegrityVerdict = Object.freeze({ integrity: 'verified' });
const REPEATED: IntegrityVerdict = Object.freeze({ integrity: 'verified', repeat: true });

function broken(seq: number, detail: string): IntegrityVerdict {
  return { integrity: 'broken', detail: `seq ${seq}: ${detail}` };
}
