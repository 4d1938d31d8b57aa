/**
 * Appends of lines started and not yet durable, a bounded number at once. The file loop awaited each
 * file's append before reading the next file: with 1,000 new one-line files, 1,000 synced appends in
 * series, none sharing a group commit. Started here, the appends of the files one poll reads wait in the
 * buffer's commit queue together and share its fsyncs. The loop waits for all of them (`drain`) before
 * anything that reads a file's checkpoint (closing files, rotations, the next poll), and leaves a path
 * with an append in flight open (`busy`).
 *
 * The appends of one path run one after the other, and once one fails the path's later ones are not
 * started: its lines were read, and a later append succeeding would move the checkpoint past the failed
 * one's lines (they would never be read again). Those are given up (`skip`, which rewinds the file).
 */
export class AppendWindow {
  private readonly inFlight = new Map<Promise<void>, { key: object; bytes: number }>();
  private bytes = 0;
  private failure: { err: unknown } | undefined;
  /** Paths whose append failed since the last drain: their later appends are given up. */
  private readonly failed = new Set<object>();

  /** `maxAppends` started at once at most, and `maxBytes` of lines (one append over it runs alone). */
  constructor(
    private readonly maxAppends: number,
    private readonly maxBytes: number,
  ) {}

  /**
   * Starts `work` (for the path `key`, `bytes` of lines) once the window has room and the path's earlier
   * append is settled; a failure is thrown by `drain`. After a failure of the path's, `skip` runs instead.
   */
  async add(key: object, bytes: number, work: () => Promise<void>, skip: () => void): Promise<void> {
    while (this.inFlight.size > 0 && (this.inFlight.size >= this.maxAppends || this.bytes + bytes > this.maxBytes || this.busy(key))) await Promise.race(this.inFlight.keys());
    if (this.failed.has(key)) {
      skip();
      return;
    }
    const p: Promise<void> = work()
      .catch((err: unknown) => {
        this.failure ??= { err };
        this.failed.add(key);
      })
      .finally(() => {
        this.inFlight.delete(p);
        this.bytes -= bytes;
      });
    this.inFlight.set(p, { key, bytes });
    this.bytes += bytes;
  }

  /** Whether an append of the path `key` is in flight. */
  busy(key: object): boolean {
    for (const v of this.inFlight.values()) if (v.key === key) return true;
    return false;
  }

  /** Waits until every started append is settled; throws the first failure since the last drain. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight.keys());
    const failure = this.failure;
    this.failure = undefined;
    this.failed.clear();
    if (failure !== undefined) throw failure.err;
  }
}
