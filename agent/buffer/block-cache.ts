import type { ChainedEvent } from '../../protocols/index.js';

interface CachedBlock {
  firstSeq: number;
  events: readonly ChainedEvent[];
}

/**
 * Decoded blocks, least recently used evicted first, bounded by the number of
 * events held (≈1 KB of heap each). The push sink reads right behind the
 * head: each commit's block is put here as it is written, so a sink that
 * keeps up never inflates anything. Few blocks fit, so lookup is a scan.
 */
export class BlockCache {
  // Map iteration order is insertion order: re-inserting on a hit makes it an LRU.
  private readonly blocks = new Map<number, CachedBlock>();
  private held = 0;

  constructor(private readonly maxEvents: number) {}

  /** Events held in cached blocks. */
  get events(): number {
    return this.held;
  }

  /** The cached block holding `seq`, if any. */
  find(seq: number): CachedBlock | undefined {
    for (const block of this.blocks.values()) {
      if (seq >= block.firstSeq && seq < block.firstSeq + block.events.length) {
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

  put(firstSeq: number, events: readonly ChainedEvent[]): void {
    if (events.length > this.maxEvents) return;
    this.delete(firstSeq);
    this.blocks.set(firstSeq, { firstSeq, events });
    this.held += events.length;
    for (const [key, block] of this.blocks) {
      if (this.held <= this.maxEvents) break;
      this.blocks.delete(key);
      this.held -= block.events.length;
    }
  }

  /** Forgets every block whose events all precede `seq` (deleted from the store, or read to its end). */
  dropBefore(seq: number): void {
    for (const block of [...this.blocks.values()]) {
      if (block.firstSeq + block.events.length <= seq) this.delete(block.firstSeq);
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
    this.held -= old.events.length;
  }
}
