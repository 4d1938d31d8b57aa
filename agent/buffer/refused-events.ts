import { isMeteorError, type MeteorError, type RejectedItem } from '../../protocols/index.js';
import { AgentErrors } from '../errors.js';

/** An append refused whole because some of its events cannot be stored; `rejected` names them by position in the append. */
type EventsRefusal = MeteorError & { readonly rejected: readonly RejectedItem[] };

/**
 * The refusal of an append holding events that cannot be stored: over the
 * stored-line limit (METEORZX_EVENT_TOO_LARGE) or, when any one has no
 * canonical JSON at all (METEORZX_EVENT_UNSTORABLE), named by position.
 * Nothing of the append was written.
 */
export function eventsRefusal(rejected: readonly RejectedItem[], unstorable: boolean): EventsRefusal {
  const first = rejected[0]?.error ?? '';
  const err = unstorable
    ? AgentErrors.METEORZX_EVENT_UNSTORABLE(`${rejected.length} of the appended events cannot be stored, so none was written (${first})`)
    : AgentErrors.METEORZX_EVENT_TOO_LARGE(`${rejected.length} of the appended events are too large once stored, so none was written (${first})`);
  return Object.assign(err, { rejected });
}

/** The events an append was refused for (positions in that append), when it was refused for them and not for the buffer's state. */
export function refusedEvents(err: unknown): readonly RejectedItem[] | undefined {
  if (!isMeteorError(err) || (err.code !== 'METEORZX_EVENT_TOO_LARGE' && err.code !== 'METEORZX_EVENT_UNSTORABLE')) return undefined;
  return (err as Partial<EventsRefusal>).rejected;
}
