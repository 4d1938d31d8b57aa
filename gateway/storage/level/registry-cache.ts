/**
 * The registry entries (`ra!` epochs, `rs!` sources) held in memory: a
 * bounded LRU in front of their keys, so that a producer varying source,
 * agent or epoch cannot grow the gateway's heap without end. A miss is read
 * again from the store (see LevelStorage's loads).
 *
 * An entry set by a commit that is not durable yet is ahead of its key on
 * disk: evicting it and reading the key again would plan the next commit on
 * a state that the one in flight is about to replace. So each entry remembers
 * the commit that set it, and `trim` passes over the entries newer than the
 * durable head (at most the keys of the commits in flight).
 *
 * Recency is the order of a plain Map: `set` moves the entry to the end and
 * `trim` evicts from the start. The writer sets every entry a commit touches,
 * so `get` is a bare Map lookup — once per distinct key per commit, not per
 * event.
 */
export interface RegistryCacheOptions<V> {
  /** Entries kept (pinned entries may exceed it until their commit is durable). */
  max: number;
  /** Total weight kept, in the unit `weigh` counts (default: no bound beyond `max`). */
  maxWeight?: number;
  /** Weight of one entry beyond its count (an epoch: its gaps); read once, at `set`. */
  weigh?: (value: V) => number;
}

interface Entry<V> {
  value: V;
  /** The commit that set it (0: read from the store, durable). */
  commit: number;
  weight: number;
}

export class RegistryCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private readonly max: number;
  private readonly maxWeight: number;
  private readonly weigh: ((value: V) => number) | undefined;
  private totalWeight = 0;

  constructor(opts: RegistryCacheOptions<V>) {
    this.max = Math.max(1, opts.max);
    this.maxWeight = opts.maxWeight ?? Number.POSITIVE_INFINITY;
    this.weigh = opts.weigh;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The sum of `weigh` over the entries held. */
  get weight(): number {
    return this.totalWeight;
  }

  get(key: string): V | undefined {
    return this.entries.get(key)?.value;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Holds `value` as the most recent entry; `commit` is the commit that wrote it (0 when read from the store). */
  set(key: string, value: V, commit = 0): void {
    const weight = this.weigh?.(value) ?? 0;
    const entry = this.entries.get(key);
    if (entry === undefined) {
      this.entries.set(key, { value, commit, weight });
    } else {
      this.entries.delete(key);
      this.totalWeight -= entry.weight;
      entry.value = value;
      entry.commit = commit;
      entry.weight = weight;
      this.entries.set(key, entry);
    }
    this.totalWeight += weight;
  }

  /** Only what is missing: a read from the store never replaces a state a commit has set meanwhile. */
  setIfAbsent(key: string, value: V): void {
    if (!this.entries.has(key)) this.set(key, value);
  }

  clear(): void {
    this.entries.clear();
    this.totalWeight = 0;
  }

  /** Evicts the least recently set entries whose commit is durable (≤ `durableCommit`) until within the bounds. */
  trim(durableCommit: number): void {
    if (this.entries.size <= this.max && this.totalWeight <= this.maxWeight) return;
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.max && this.totalWeight <= this.maxWeight) return;
      if (entry.commit > durableCommit) continue;
      this.entries.delete(key);
      this.totalWeight -= entry.weight;
    }
  }
}
