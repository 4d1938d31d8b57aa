import { LRUCache } from 'lru-cache';
import { checkLink, type AuditEvent, type ChainPosition, type Integrity } from '../../../protocols/index.js';

/** Reads a chain's head from storage when the cache does not hold it (after a restart, or evicted). */
export type ChainHeadLookup = (agent: string, epoch: string) => Promise<ChainPosition | undefined>;

export interface IntegrityVerdict {
  integrity: Integrity;
  /** Why the chain is broken, for the alert. */
  detail?: string;
}

const key = (agent: string, epoch: string): string => `${agent}\u0000${epoch}`;

/**
 * The integrity stage (DESIGN §4): runs on events as they arrived, before
 * transforms change their content. Per (agent, epoch) it keeps the position
 * of the highest seq seen and judges each event:
 *  - `unchained`: no hash (or no seq);
 *  - `broken`: its hash does not match its content, or it is the next seq
 *    but its `prev` is not the hash of the one before;
 *  - `verified`: content matches its hash and, where the predecessor is
 *    known, it links to it. A seq after a gap or a late seq filling one can
 *    only be checked on its own content; the gap itself is the registry's
 *    to report, not a break.
 * `prepare` loads unknown heads first so that `check` is synchronous and runs
 * in commit order.
 */
export class ChainTracker {
  private readonly heads: LRUCache<string, ChainPosition>;
  /** Chains looked up and found empty in storage (first event of a new epoch). */
  private readonly absent = new Set<string>();

  constructor(
    private readonly lookup: ChainHeadLookup,
    maxChains = 100_000,
  ) {
    this.heads = new LRUCache({ max: maxChains });
  }

  async prepare(events: Iterable<AuditEvent>): Promise<void> {
    const wanted = new Map<string, [string, string]>();
    for (const e of events) {
      if (e.agent === undefined || e.epoch === undefined || e.hash === undefined) continue;
      const k = key(e.agent, e.epoch);
      if (!this.heads.has(k) && !this.absent.has(k)) wanted.set(k, [e.agent, e.epoch]);
    }
    await Promise.all(
      [...wanted].map(async ([k, [agent, epoch]]) => {
        const head = await this.lookup(agent, epoch);
        if (head === undefined) this.absent.add(k);
        else this.heads.set(k, head);
      }),
    );
  }

  /** `unhashed`: the event's canonical JSON without `hash`, when the caller read it from the text (readCanonicalLine). */
  check(event: AuditEvent, unhashed?: string): IntegrityVerdict {
    if (event.hash === undefined || event.seq === undefined || event.agent === undefined || event.epoch === undefined) {
      return { integrity: 'unchained' };
    }
    const k = key(event.agent, event.epoch);
    const head = this.heads.get(k);
    // Out of order (a gap being filled, a resend) or after a gap: only the content can be checked.
    const linkable = head !== undefined && event.seq === head.seq + 1;
    const problem = checkLink(event, linkable ? head : undefined, unhashed);
    if (head === undefined || event.seq > head.seq) {
      this.heads.set(k, { seq: event.seq, hash: event.hash });
      this.absent.delete(k);
    }
    return problem === undefined ? { integrity: 'verified' } : { integrity: 'broken', detail: `seq ${event.seq}: ${problem.detail}` };
  }

  /** Forgets every position: after a failed commit the cache may be ahead of storage. */
  reset(): void {
    this.heads.clear();
    this.absent.clear();
  }
}
