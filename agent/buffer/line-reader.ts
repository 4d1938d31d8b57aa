import { AgentErrors } from '../errors.js';
import type { BlockCache, LineBlock } from './block-cache.js';
import { decodeBlockLines } from './block-codec.js';
import { unreadableFrom, type UnreadableRange } from './corrupt-read.js';
import type { Holes } from './holes.js';
import { BLOCK_PREFIX, blockKey, blockSeq } from './keys.js';
import { isCorruption, type BufferDb } from './level-store.js';
import type { StoredLine } from './types.js';

/** The buffer as a read sees it: taken afresh at every step, since a commit or a reopen may change it meanwhile. */
export interface ReadView {
  db: BufferDb | undefined;
  epoch: string;
  oldest: number;
  head: number;
  holes: Holes;
}

/**
 * The buffer's read path: stored lines after a seq, from the block cache or
 * inflated from disk, stepping over holes. A block that is missing or does
 * not decode is damage: its run is handed to `repair` (a hole with a
 * `buffer-corrupt` gap, written through the commit queue) and the read goes
 * on past it.
 */
export class LineReader {
  /**
   * The furthest any reader has got (the last seq a read returned, or the
   * cursor of a read that found nothing after it). A new block is cached for
   * the push sink only when a reader is this close to the head; see cacheNewBlocks.
   */
  private frontier = 0;

  constructor(
    private readonly cache: BlockCache,
    private readonly cacheEvents: number,
    private readonly view: () => ReadView,
    private readonly repair: (range: UnreadableRange) => Promise<void>,
  ) {}

  /**
   * Lines of one epoch: should the store be replaced while the read waits on
   * LevelDB, it ends with what it read before (the seqs after `after` name
   * other events in the new epoch).
   */
  async readLines(after: number, limit: number, maxBytes = Number.POSITIVE_INFINITY): Promise<StoredLine[]> {
    const out: StoredLine[] = [];
    const { epoch } = this.view();
    let seq = after + 1;
    let bytes = 0;
    while (out.length < limit && bytes < maxBytes) {
      const { oldest, head, holes } = this.view();
      seq = holes.skip(Math.max(seq, oldest));
      if (seq > head) break;
      let block: LineBlock | undefined;
      let cause: unknown;
      try {
        block = await this.blockHolding(seq);
      } catch (err) {
        if (!isCorruption(err)) throw err;
        cause = err;
      }
      if (this.view().epoch !== epoch) break;
      if (block === undefined) {
        // Inside [oldest, head] every seq has a block: none (or one that does not decode) is damage.
        await this.recoverUnreadable(seq, cause);
        continue;
      }
      const { firstSeq, lines } = block;
      for (let i = seq - firstSeq; i < lines.length && out.length < limit && bytes < maxBytes; i++) {
        const line = lines[i] as string;
        // The first event always goes, so an event larger than maxBytes cannot stall a reader. Bytes in
        // UTF-8, as sent: counted in UTF-16 units, a batch of CJK text was up to three times maxBytes.
        bytes += Buffer.byteLength(line) + 1;
        if (bytes > maxBytes && out.length > 0) return this.consumed(out);
        out.push({ seq: firstSeq + i, line });
      }
      seq = firstSeq + lines.length;
    }
    if (out.length === 0) this.frontier = Math.max(this.frontier, after);
    return this.consumed(out);
  }

  /**
   * Keeps a commit's decoded block for the push sink when a reader is near
   * the head (within the cache's budget) and so will read it in a moment
   * without inflating anything. With no reader near — a pull-only agent, a
   * sink that is down or far behind — nobody would read it from memory, and
   * holding it would only make every event outlive a young-generation GC.
   */
  cacheNewBlocks(blocks: readonly { firstSeq: number; lines: string[] }[], headBefore: number): void {
    if (headBefore - this.frontier > this.cacheEvents) return;
    for (const b of blocks) this.cache.put(b.firstSeq, b.lines);
  }

  /**
   * Bookkeeping after a read: moves the read frontier, and drops from the
   * cache every block the read took to its end. A reader rarely comes back
   * for what it has read (the push sink re-reads only after a failure, from
   * disk), and a decoded block kept after its read lives long enough to be
   * copied by the young-generation GC and promoted: that cost durable intake
   * a third of its rate in bench/agent-buffer.mjs.
   */
  private consumed(out: StoredLine[]): StoredLine[] {
    const last = out.at(-1);
    if (last !== undefined) {
      this.frontier = Math.max(this.frontier, last.seq);
      this.cache.dropBefore(last.seq + 1);
    }
    return out;
  }

  private async blockHolding(seq: number): Promise<LineBlock | undefined> {
    const cached = this.cache.find(seq);
    if (cached !== undefined) return cached;
    const db = this.openDb();
    for await (const [key, value] of db.iterator({ lte: blockKey(seq), gte: BLOCK_PREFIX, reverse: true, limit: 1 })) {
      const firstSeq = blockSeq(key);
      let lines: string[];
      try {
        lines = decodeBlockLines(firstSeq, value);
      } catch (err) {
        throw AgentErrors.METEORZX_BUFFER_CORRUPT(`block at seq ${firstSeq} cannot be decoded: ${(err as Error).message}`, { cause: err });
      }
      if (seq >= firstSeq + lines.length) return undefined;
      // Not from a store replaced while this read waited (LevelDB lets a pending read finish after close):
      // the cache was cleared for the new store, whose seqs start again at 1, and would serve these lines as its own.
      if (this.view().db === db) this.cache.put(firstSeq, lines);
      return { firstSeq, lines };
    }
    return undefined;
  }

  /**
   * Records the damaged run holding `seq` as a hole with a `buffer-corrupt`
   * gap (through the commit queue, so it is durable and ordered with drops),
   * so readers step past it and delivery continues.
   */
  private async recoverUnreadable(seq: number, cause: unknown): Promise<void> {
    const db = this.openDb();
    const { epoch, head, holes } = this.view();
    await this.repair(await unreadableFrom(db, this.cache, seq, { head, nextHole: holes.nextStart(seq), epoch }, cause));
  }

  private openDb(): BufferDb {
    const { db } = this.view();
    if (db === undefined) throw AgentErrors.METEORZX_BUFFER_CLOSED('the buffer is not open');
    return db;
  }
}
