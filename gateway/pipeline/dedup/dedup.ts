import type { Storage } from '../../storage/types.js';
import { RecentIds } from './recent-ids.js';

export interface DedupOptions {
  /** How long an id is remembered, ms (pipeline.dedup.window). */
  windowMs: number;
  /** Ids held in memory in front of the on-disk index; 0 disables the cache. */
  cacheSize: number;
  clock: () => number;
  /** Called with the number of ids the cache answered. */
  onCacheHits?: (n: number) => void;
}

/**
 * The dedup stage. The on-disk index (`storage.seen`) is the truth and keeps
 * a whole window (10M ids do not live in RAM, DESIGN §7); a bounded cache of
 * recently stored ids (RecentIds) answers the common case — a retry arriving soon after
 * the original — without a read. Repeats inside one commit are caught by
 * the caller passing the batch's ids in arrival order: the first occurrence
 * wins.
 */
export class Dedup {
  private readonly cache: RecentIds | undefined;

  constructor(
    private readonly storage: Pick<Storage, 'seen'>,
    private readonly opts: DedupOptions,
  ) {
    this.cache = opts.cacheSize > 0 ? new RecentIds(opts.cacheSize) : undefined;
  }

  /**
   * Which of `ids` (in arrival order) are duplicates: stored inside the
   * window, stored by a commit still in flight (`pending`), or repeated
   * earlier in the list.
   */
  async duplicates(ids: readonly string[], pending?: (id: string) => boolean): Promise<boolean[]> {
    const oldest = this.opts.clock() - this.opts.windowMs;
    const out = new Array<boolean>(ids.length).fill(false);
    const firstSeen = new Set<string>();
    const ask: string[] = [];
    let hits = 0;
    ids.forEach((id, i) => {
      if (firstSeen.has(id)) {
        out[i] = true;
        return;
      }
      firstSeen.add(id);
      const storedAt = this.cache?.get(id);
      if (storedAt !== undefined && storedAt >= oldest) {
        out[i] = true;
        hits += 1;
      } else if (pending?.(id) === true) out[i] = true;
      else ask.push(id);
    });
    if (hits > 0) this.opts.onCacheHits?.(hits);
    if (ask.length > 0) {
      const seen = await this.storage.seen(ask, this.opts.windowMs);
      if (seen.size > 0) {
        const marked = new Set<string>();
        ids.forEach((id, i) => {
          // Only the first occurrence needs marking here; later ones already are.
          if (seen.has(id) && !marked.has(id)) {
            out[i] = true;
            marked.add(id);
          }
        });
      }
    }
    return out;
  }

  /** Records ids that are now durably stored. */
  remember(ids: readonly string[], receivedMs: number): void {
    if (this.cache === undefined) return;
    for (const id of ids) this.cache.set(id, receivedMs);
  }

  /** Records one id that is now durably stored. */
  rememberId(id: string, receivedMs: number): void {
    this.cache?.set(id, receivedMs);
  }
}
