/**
 * Commits whose synced write has been started but not settled, as the next
 * commit's preparation must see them (pipelining, see GroupCommitter):
 *
 *  - dedup: an id accepted by a commit in flight is a duplicate for the
 *    next batch — but only if that commit succeeds;
 *  - so when one fails, every commit prepared while it was in flight fails
 *    too (its callers retry): it may have called that commit's ids
 *    duplicates, and its chain positions followed that commit's events.
 *
 * The pipeline ends a commit only after recording its ids in the dedup
 * cache, so an id never falls between the two.
 */
export class InFlightCommit {
  private failedFlag = false;
  private resolveSettled!: () => void;
  /** Resolves (never rejects) when the commit has ended, durable or failed. */
  readonly settled = new Promise<void>((resolve) => {
    this.resolveSettled = resolve;
  });

  constructor(
    /** Ids this commit stores (its accepted events). */
    readonly ids: ReadonlySet<string>,
    private readonly onEnd: (c: InFlightCommit) => void,
  ) {}

  get failed(): boolean {
    return this.failedFlag;
  }

  /** Marks the write failed at once, before anything else runs: a preparation checking now must see it. */
  fail(): void {
    this.failedFlag = true;
  }

  end(): void {
    this.onEnd(this);
    this.resolveSettled();
  }
}

export class InFlightCommits {
  private readonly commits = new Set<InFlightCommit>();

  /** The commits a preparation starting now builds on. */
  snapshot(): readonly InFlightCommit[] {
    return this.commits.size === 0 ? [] : [...this.commits];
  }

  begin(ids: ReadonlySet<string>): InFlightCommit {
    const commit = new InFlightCommit(ids, (c) => this.commits.delete(c));
    this.commits.add(commit);
    return commit;
  }

  get size(): number {
    return this.commits.size;
  }
}

/** Whether `id` is stored by one of `commits` (dedup against writes still in flight); undefined when none. */
export function pendingIn(commits: readonly InFlightCommit[]): ((id: string) => boolean) | undefined {
  if (commits.length === 0) return undefined;
  return (id) => commits.some((c) => c.ids.has(id));
}

/** Whether any of `commits` failed. */
export function anyFailed(commits: readonly InFlightCommit[]): boolean {
  return commits.some((c) => c.failed);
}
