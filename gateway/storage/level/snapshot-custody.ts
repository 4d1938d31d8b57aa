import type { CustodyRecord } from '../../../protocols/index.js';
import { decodeCustodyBlock } from './block-codec.js';
import { custodyKey } from './keys.js';
import type { LevelDb } from './level-storage.js';

/** Blocks kept: at the default 1,000 records per commit, a decoded block is ~0.5 MB. */
const KEPT = 16;

/**
 * Custody blocks that `verify` reads out of the ledger's order (the commit a
 * retention marker names, the commit an index key points at), in its
 * snapshot, decoded once while they are among the last few used.
 */
export class SnapshotCustody {
  private readonly kept = new Map<number, CustodyRecord[] | undefined>();

  constructor(
    private readonly db: LevelDb,
    private readonly snapshot: ReturnType<LevelDb['snapshot']>,
  ) {}

  /** The records of `commit`; undefined when it has no custody block or one that cannot be decoded (the ledger walk names that). */
  async records(commit: number): Promise<CustodyRecord[] | undefined> {
    if (this.kept.has(commit)) {
      const records = this.kept.get(commit);
      this.kept.delete(commit);
      this.kept.set(commit, records);
      return records;
    }
    const raw = (await this.db.get(custodyKey(commit), { snapshot: this.snapshot })) as Buffer | undefined;
    const records = raw === undefined ? undefined : await decodeCustodyBlock(commit, raw).catch(() => undefined);
    if (this.kept.size >= KEPT) this.kept.delete(this.kept.keys().next().value as number);
    this.kept.set(commit, records);
    return records;
  }
}

/** The `index`-th accepted record of a commit (the one whose event sits at that index of its block). */
export function acceptedAt(records: readonly CustodyRecord[], index: number): CustodyRecord | undefined {
  let seen = 0;
  for (const r of records) {
    if (r.outcome !== 'accepted') continue;
    if (seen === index) return r;
    seen += 1;
  }
  return undefined;
}
