import type { CustodyOutcome, SourceStatus } from '../../protocols/index.js';

/**
 * The per-source registry (DESIGN §4: last seen, counts) is a tally of the
 * custody ledger: one count per ingestion attempt of that source, by
 * outcome, and last seen is the latest receive time. Every backend derives
 * it from a commit's custody records with this one function, so the live
 * path and a replay of the ledger (after a crash) always agree.
 *
 * Returns the new state of each source the records name, starting from
 * `prior` (undefined for a source never seen). The states are new objects:
 * `prior`'s are not changed.
 */
export function tallySources(
  records: Iterable<{ source?: string | undefined; outcome: CustodyOutcome; at: string }>,
  prior: (source: string) => SourceStatus | undefined,
): Map<string, SourceStatus> {
  const out = new Map<string, SourceStatus>();
  for (const r of records) {
    const source = r.source;
    // A `retained` record is no ingestion attempt (and names no source).
    if (source === undefined || r.outcome === 'retained') continue;
    let state = out.get(source);
    if (state === undefined) {
      const before = prior(source);
      state =
        before === undefined
          ? { source, lastSeen: r.at, accepted: 0, duplicates: 0, rejected: 0 }
          : { source, lastSeen: before.lastSeen, accepted: before.accepted, duplicates: before.duplicates, rejected: before.rejected };
      out.set(source, state);
    }
    countOutcome(state, r.outcome);
    if (r.at > state.lastSeen) state.lastSeen = r.at;
  }
  return out;
}

function countOutcome(state: SourceStatus, outcome: CustodyOutcome): void {
  if (outcome === 'accepted') state.accepted += 1;
  else if (outcome === 'duplicate') state.duplicates += 1;
  else if (outcome === 'rejected') state.rejected += 1;
}
