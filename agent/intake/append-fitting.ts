import type { AuditEvent, RejectedItem } from '../../protocols/index.js';
import { refusedEvents } from '../buffer/refused-events.js';

/**
 * Appends `events` through `append` (the buffer's, or one that times it);
 * when the buffer refuses the append for events it cannot store — too large
 * once stored (METEORZX_EVENT_TOO_LARGE), or with no canonical JSON
 * (METEORZX_EVENT_UNSTORABLE), nothing of it written — appends again
 * without them — or, given `replace`, with what it makes of each in its
 * place (a reading intake's error record: nothing is dropped silently,
 * DESIGN §3.4). Resolves with the refused ones, `index` being the position
 * in `events`; any other error is the caller's. Each retry leaves out or
 * replaces at least one event, and a replacement refused in turn is left
 * out, so it ends.
 */
export async function appendFitting(
  events: readonly AuditEvent[],
  append: (events: readonly AuditEvent[]) => Promise<unknown>,
  replace?: (event: AuditEvent, error: string) => AuditEvent,
): Promise<RejectedItem[]> {
  const rejected: RejectedItem[] = [];
  let batch = events;
  // Position in `events` of each event of `batch`; undefined while they are the same.
  let positions: number[] | undefined;
  const replaced = new Set<number>();
  for (;;) {
    try {
      await append(batch);
      return rejected;
    } catch (err) {
      const cannot = refusedEvents(err);
      if (cannot === undefined || cannot.length === 0) throw err;
      const refused = new Map(cannot.map((r) => [r.index, r.error]));
      const kept: AuditEvent[] = [];
      const keptAt: number[] = [];
      batch.forEach((event, i) => {
        const at = positions === undefined ? i : (positions[i] as number);
        const error = refused.get(i);
        if (error === undefined) {
          kept.push(event);
          keptAt.push(at);
          return;
        }
        if (replaced.has(at)) return;
        rejected.push({ index: at, error });
        if (replace === undefined) return;
        replaced.add(at);
        kept.push(replace(event, error));
        keptAt.push(at);
      });
      batch = kept;
      positions = keptAt;
    }
  }
}
