/**
 * A bounded map of recently stored ids to their receive time, in front of
 * the on-disk dedup index. Two generations of plain Maps: writes go to the
 * young one; when it is full it becomes the old one and the previous old
 * one is dropped whole. So it holds the latest `capacity / 2` to `capacity`
 * ids — an approximate LRU, which is all a cache whose miss costs one
 * index read needs — at a fraction of an exact LRU's cost per id (no
 * linked-list bookkeeping on every get and set, on the hot path of every
 * event).
 */
export class RecentIds {
  private young = new Map<string, number>();
  private old = new Map<string, number>();
  private readonly generation: number;

  constructor(capacity: number) {
    this.generation = Math.max(1, Math.ceil(capacity / 2));
  }

  get(id: string): number | undefined {
    return this.young.get(id) ?? this.old.get(id);
  }

  set(id: string, receivedMs: number): void {
    if (this.young.size >= this.generation && !this.young.has(id)) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(id, receivedMs);
  }

  get size(): number {
    return this.young.size + this.old.size;
  }
}
