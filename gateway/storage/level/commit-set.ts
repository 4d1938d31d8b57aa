/** Commits per chunk of bits (4 KiB). */
const CHUNK_BITS = 32_768;

/**
 * A set of commit numbers, one bit each, in chunks allocated only where
 * commits are: `verify` remembers which commits hold an event block the
 * ledger accepts, so that the index keys (ordered by day, not commit) can be
 * checked after the ledger walk without a read per key — 125 KB per million
 * commits, and a forged key with a huge commit number costs one chunk, not
 * an array up to it.
 */
export class CommitSet {
  private readonly chunks = new Map<number, Uint32Array>();

  add(commit: number): void {
    const at = Math.floor(commit / CHUNK_BITS);
    let chunk = this.chunks.get(at);
    if (chunk === undefined) {
      chunk = new Uint32Array(CHUNK_BITS / 32);
      this.chunks.set(at, chunk);
    }
    const bit = commit % CHUNK_BITS;
    chunk[bit >>> 5] = (chunk[bit >>> 5] as number) | (1 << (bit & 31));
  }

  has(commit: number): boolean {
    if (!Number.isSafeInteger(commit) || commit < 0) return false;
    const chunk = this.chunks.get(Math.floor(commit / CHUNK_BITS));
    if (chunk === undefined) return false;
    const bit = commit % CHUNK_BITS;
    return ((chunk[bit >>> 5] as number) & (1 << (bit & 31))) !== 0;
  }
}
