/** A block's stored lines, one per event, the first being `firstSeq`'s. */
export interface LineBlock {
  firstSeq: number;
  lines: readonly string[];
}

/**
 * Inflated blocks, least recently used evicted first, bounded by the number
 * of events held (one string of ≈300 B each). The push sink reads right
 * behind the head: each commit's block is put here as it is written, so a
 * sink that keeps up never inflates anything. Only the lines are kept, not
 * the parsed events: one string per event is what a young-generation GC
 * copies while the block waits for its reader. Few blocks fit, so lookup is a scan.
 */
export class BlockCache {
  // Map iteration order is insertion order: re-inserting on a hit makes it an LRU.
  private readonly blocks = new Map<number, LineBlock>();
  private held = 0;

  constructor(private readonly maxEvents: number) {}

  /** Events held in cached blocks. */
  get events(): number {
    return this.held;
  }

  /** The cached block holding `seq`, if any. */
  find(seq: number): LineBlock | undefined {
    for (const block of this.blocks.values()) {
      if (seq >= block.firstSeq && seq < block.firstSeq + block.lines.length) {
        this.blocks.delete(block.firstSeq);
        this.blocks.set(block.firstSeq, block);
        return block;
      }
    }
    return undefined;
  }

  /** The lowest cached block start after `seq`, if any. */
  firstAfter(seq: number): number | undefined {
    let best: number | undefined;
    for (const block of this.blocks.values()) if (block.firstSeq > seq && (best === undefined || block.firstSeq < best)) best = block.firstSeq;
    return best;
  }

  put(firstSeq: number, lines: readonly string[]): void {
    if (lines.length > this.maxEvents) return;
    this.delete(firstSeq);
    this.blocks.set(firstSeq, { firstSeq, lines });
    this.held += lines.length;
    for (const [key, block] of this.blocks) {
      if (this.held <= this.maxEvents) break;
      this.blocks.delete(key);
      this.held -= block.lines.length;
    }
  }

  /** Forgets every block whose events all precede `seq` (deleted from the store, or read to its end). */
  dropBefore(seq: number): void {
    for (const block of [...this.blocks.values()]) {
      if (block.firstSeq + block.lines.length <= seq) this.delete(block.firstSeq);
    }
  }

  clear(): void {
    this.blocks.clear();
    this.held = 0;
  }

  private delete(firstSeq: number): void {
    const old = this.blocks.get(firstSeq);
    if (old === undefined) return;
    this.blocks.delete(firstSeq);
    this.held -= old.lines.length;
  }
}
