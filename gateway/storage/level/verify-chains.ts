import type { StoredEvent } from '../../../protocols/index.js';
import { ChainTracker } from '../../pipeline/integrity/integrity.js';
import type { VerifyProblem } from '../types.js';

/**
 * Replays the agents' chains over the stored events, in the order they were
 * stored (commit by commit, each block in arrival order), with the
 * integrity stage's own tracker, and names every event stored as
 * `verified` that the replay finds broken: a `prev` that is not the hash of
 * the stored event before it, or a second event at a seq its chain already
 * holds (a fork). The fork check at ingest came late: a store written
 * before it may hold such events marked verified, and a verify that only
 * hashes stored bytes passes them.
 *
 * Links only: a stored event's content may have been masked since its
 * arrival check, so its hash is taken as given (that the bytes are the ones
 * stored is the ledger's `eventHash` check). The replay knows no more than
 * ingest did — events not stored (rejected, dropped by a rule, duplicates,
 * deleted by retention) are holes it does not judge across — so it flags
 * nothing that ingest would have passed. Memory: the tracker's bound (a
 * position and the open gaps per chain, least recently used chains
 * forgotten: a forgotten chain's next event starts it again, unjudged).
 */
export class ChainReplay {
  private readonly tracker = new ChainTracker(() => Promise.resolve(undefined));

  constructor(private readonly source: string | undefined) {}

  /** One commit's stored events (their canonical JSON lines, in block order). */
  async commit(lines: readonly string[], report: (p: VerifyProblem) => void): Promise<void> {
    const events: StoredEvent[] = [];
    for (const line of lines) {
      // Only a chained event's line names a hash; the others need no parse.
      if (!line.includes('"hash":')) continue;
      try {
        events.push(JSON.parse(line) as StoredEvent);
      } catch {
        // Bytes that are not an event: the ledger's eventHash check names them.
      }
    }
    if (events.length === 0) return;
    await this.tracker.prepare(events);
    for (const event of events) {
      const verdict = this.tracker.check(event, null);
      if (event.ingest?.integrity !== 'verified' || (this.source !== undefined && event.source !== this.source)) continue;
      if (verdict.integrity !== 'broken' && verdict.repeat !== true) continue;
      const chain = `agent ${event.agent ?? '?'}, epoch ${event.epoch ?? '?'}`;
      const detail =
        verdict.repeat === true
          ? `stored as verified, but its chain (${chain}) already holds an event at seq ${event.seq ?? '?'}: a forked chain`
          : `stored as verified, but its chain (${chain}) is broken there: ${verdict.detail ?? ''}`;
      report({ kind: 'event', where: event.id, detail });
    }
  }
}
