/** Buckets per tally: 256 KiB of counters, whatever the store's size. */
const BUCKETS = 1 << 16;

/**
 * Finds the keys of one kind (`id!`, `ci!`, `cs!`) that nothing in the
 * ledger accounts for, without holding a set of keys: they are ordered by
 * id or source, the ledger by commit, and a store may hold ten million.
 * The ledger walk counts each key it read where the ledger says one must
 * be (`expected`, once per key), in a bucket chosen by the key's hash; the
 * scan of the stored keys then counts every key down (`stored`). The walk
 * read its keys in the scan's snapshot, so every key it counted is one the
 * scan meets: a bucket left below zero holds exactly that many keys nothing
 * accounts for, and only the keys of such buckets need a closer look
 * (`suspect`). The counts are exact, so no choice of keys hides one.
 */
export class KeyTally {
  private readonly counts = new Int32Array(BUCKETS);

  expected(key: string): void {
    const b = bucketOf(key);
    this.counts[b] = (this.counts[b] as number) + 1;
  }

  stored(key: string): void {
    const b = bucketOf(key);
    this.counts[b] = (this.counts[b] as number) - 1;
  }

  /** True when some stored key is not one the walk expected. */
  unaccounted(): boolean {
    return this.counts.some((n) => n < 0);
  }

  /** True when `key` shares its bucket with a key the walk did not expect. */
  suspect(key: string): boolean {
    return (this.counts[bucketOf(key)] as number) < 0;
  }
}

/** FNV-1a over the UTF-16 code units: spreads keys that differ only at the end (a commit number) as well as at the start. */
function bucketOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i += 1) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) & (BUCKETS - 1);
}
