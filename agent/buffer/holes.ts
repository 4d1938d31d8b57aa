/**
 * Seq ranges of the current epoch found unreadable (a damaged table file)
 * after open. Reads step over them so delivery never stalls on the damage;
 * the ranges are persisted in `m!holes` in the same batch as the gap event
 * that names them, so a restart neither reports them twice nor trips on them.
 * Few ever exist, so a sorted array is enough.
 */
export class Holes {
  private ranges: [number, number][] = [];

  constructor(json?: string) {
    if (json === undefined || json === '') return;
    try {
      const parsed: unknown = JSON.parse(json);
      if (!Array.isArray(parsed)) return;
      for (const r of parsed) {
        if (Array.isArray(r) && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1])) this.add(r[0] as number, r[1] as number);
      }
    } catch {
      // An unreadable hole list only costs a second detection (and a second gap event) later.
    }
  }

  get size(): number {
    return this.ranges.length;
  }

  /** The first seq ≥ `seq` outside every hole. */
  skip(seq: number): number {
    let s = seq;
    for (const [from, to] of this.ranges) if (s >= from && s <= to) s = to + 1;
    return s;
  }

  /** The ranges, sorted and disjoint (a copy). */
  list(): [number, number][] {
    return this.ranges.map(([from, to]) => [from, to]);
  }

  /** Where the first hole after `seq` starts (Infinity when none). */
  nextStart(seq: number): number {
    for (const [from] of this.ranges) if (from > seq) return from;
    return Number.POSITIVE_INFINITY;
  }

  add(from: number, to: number): void {
    if (to < from) return;
    this.ranges.push([from, to]);
    this.ranges.sort((a, b) => a[0] - b[0]);
    const merged: [number, number][] = [];
    for (const r of this.ranges) {
      const last = merged[merged.length - 1];
      if (last !== undefined && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
      else merged.push([r[0], r[1]]);
    }
    this.ranges = merged;
  }

  /** Forgets holes wholly before `oldest` (their blocks are gone from the range); true when any went. */
  pruneBefore(oldest: number): boolean {
    const before = this.ranges.length;
    this.ranges = this.ranges.filter(([, to]) => to >= oldest);
    return this.ranges.length !== before;
  }

  toJSON(): string {
    return JSON.stringify(this.ranges);
  }
}
