/**
 * How many events a new batch may hold, learnt from the batches the peer
 * refused for their size. A gateway whose `limits.maxBatchEvents` is below
 * `push.batch.maxEvents` answers 413 to every full batch, and a broker with
 * a smaller packet limit closes the link under it; the sender halves such a
 * batch until its parts go through, but every new batch was read at
 * `maxEvents` again and halved again: 5,000 events in batches of 500 to a
 * gateway limited to 100 took 150 sends, 70 of them refused. Once a batch
 * of n is refused for what it is (the peer acked a later send, so it takes
 * events), new batches hold at most n / 2. The cap lasts `probeAfterMs`
 * after the last such refusal, then full batches are tried again: a limit
 * raised since is used, and one refusal too many does not shrink batches
 * for good.
 */
export class BatchCap {
  private cap: number;
  private since = 0;

  constructor(
    private readonly maxEvents: number,
    private readonly now: () => number,
    private readonly probeAfterMs = 600_000,
  ) {
    this.cap = maxEvents;
  }

  /** Events a new batch may hold now. */
  get limit(): number {
    if (this.cap < this.maxEvents && this.now() - this.since >= this.probeAfterMs) this.cap = this.maxEvents;
    return this.cap;
  }

  /** A batch of `events` events was refused for its size (a 413, a link closed under it): new batches hold at most half. */
  refused(events: number): boolean {
    // A single event refused is about that event, not the batch size.
    if (events < 2) return false;
    const half = Math.floor(events / 2);
    this.since = this.now();
    if (half >= this.limit) return false;
    this.cap = half;
    return true;
  }
}
