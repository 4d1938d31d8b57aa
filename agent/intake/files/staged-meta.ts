import type { ExtraOp } from '../../buffer/types.js';

/**
 * Records written during one discovery, held back to be written together: 1,000 files found by one glob
 * cost 1,000 commits in series, one per new path's first records. Reads go through it (`get`), so what
 * an earlier path of the same discovery recorded is seen as if written: when a glob matches rotated
 * generations too (app.log and app.log.1), the seen-mark app.log's first records put on app.log.1 is what
 * the open of app.log.1 reads to know it is not a new file — an earlier batching that wrote them after
 * the opens read them read app.log.1 again. Nothing of these files is read before the batch is durable
 * (FileIntake.scan writes it before the loop reads any file), so a crash before it leaves no line behind
 * a record: the paths are found again as never followed.
 */
export class StagedMeta {
  private readonly ops = new Map<string, string | null>();
  private holding = 0;

  constructor(private readonly read: (key: string) => Promise<string | undefined>) {}

  /** The value as the buffer will hold it once the staged records are written. */
  async get(key: string): Promise<string | undefined> {
    if (this.ops.has(key)) return this.ops.get(key) ?? undefined;
    return this.read(key);
  }

  /** Whether records are held back now (between `hold` and `release`). */
  get held(): boolean {
    return this.holding > 0;
  }

  hold(): void {
    this.holding += 1;
  }

  /** Ends a `hold`; returns the records to write when it was the outermost one (then no longer staged). */
  release(): ExtraOp[] {
    this.holding = Math.max(0, this.holding - 1);
    if (this.holding > 0) return [];
    const out = [...this.ops].map(([key, value]) => ({ key, value }));
    this.ops.clear();
    return out;
  }

  /** Later ops on a key replace earlier ones, as they would in one batch. */
  stage(ops: readonly ExtraOp[]): void {
    for (const op of ops) this.ops.set(op.key, op.value);
  }
}
