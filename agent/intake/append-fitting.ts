import type { AuditEvent, RejectedItem } from '../../protocols/index.js';
import { tooLargeEvents } from '../buffer/too-large.js';

/**
 * Appends `events` through `append` (the buffer's, or one that times it);
 * when the buffer refuses the append for events too large once stored
 * (METEORZX_EVENT_TOO_LARGE: nothing of it was written), appends the others
 * again without them. Resolves with the refused ones, `index` being the
 * position in `events`; any other error is the caller's. Each retry leaves
 * out at least one event, so it ends.
 */
export async function appendFitting(
  events: readonly AuditEvent[],
  append: (events: readonly AuditEvent[]) => Promise<unknown>,
): Promise<RejectedItem[]> {
  const rejected: RejectedItem[] = [];
  let batch = events;
  // Position in `events` of each event of `batch`; undefined while they are the same.
  let positions: number[] | undefined;
  for (;;) {
    try {
      await append(batch);
      return rejected;
    } catch (err) {
      const tooLarge = tooLargeEvents(err);
      if (tooLarge === undefined || tooLarge.length === 0) throw err;
      const refused = new Map(tooLarge.map((r) => [r.index, r.error]));
      const kept: AuditEvent[] = [];
      const keptAt: number[] = [];
      batch.forEach((event, i) => {
        const at = positions === undefined ? i : (positions[i] as number);
        const error = refused.get(i);
        if (error === undefined) {
          kept.push(event);
          keptAt.push(at);
        } else rejected.push({ index: at, error });
      });
      batch = kept;
      positions = keptAt;
    }
  }
}
