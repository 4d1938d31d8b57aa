/**
 * Appends of lines started and not yet durable, a bounded number at once. The file loop awaited each
 * file's append before reading the next file: with 1,000 new one-line files, 1,000 synced appends in
 * series, none sharing a group commit. Started here, the appends of the files one poll reads wait in the
 * buffer's commit queue together and share its fsyncs. The loop waits for all of them (`drain`) before
 * anything that reads a file's checkpoint (closing files, rotations, the next poll), and leaves a path
 * with an append in flight open (`busy`).
 */
export class AppendWindow {
  private readonly inFlight = new Map<Promise<void>, { key: object; bytes: number }>();
  private bytes = 0;
  private failure: { err: unknown } | undefined;

  /** `maxAppends` started at once at most, and `maxBytes` of lines (one append over it runs alone). */
  constructor(
    private readonly maxAppends: number,
    private readonly maxBytes: number,
  ) {}

  /** Starts `work` (for the path `key`, `bytes` of lines) once the window has room; a failure is thrown by `drain`. */
  async add(key: object, bytes: number, work: () => Promise<void>): Promise<void> {
    while (this.inFlight.size > 0 && (this.inFlight.size >= this.maxAppends || this.bytes + bytes > this.maxBytes)) await Promise.race(this.inFlight.keys());
    const p: Promise<void> = work()
      .catch((err: unknown) => {
        this.failure ??= { err };
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
    if (failure !== undefined) throw failure.err;
  }
}
