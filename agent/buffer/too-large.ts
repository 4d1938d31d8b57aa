import { isMeteorError, type MeteorError, type RejectedItem } from '../../protocols/index.js';
import { AgentErrors } from '../errors.js';

/** An append refused whole because some of its events are too large once stored; `rejected` names them by position in the append. */
type TooLargeRefusal = MeteorError & { readonly rejected: readonly RejectedItem[] };

/** The refusal of an append holding events over the stored-line limit: nothing of the append was written. */
export function tooLargeRefusal(rejected: readonly RejectedItem[]): TooLargeRefusal {
  const first = rejected[0]?.error ?? '';
  const err = AgentErrors.METEORZX_EVENT_TOO_LARGE(`${rejected.length} of the appended events are too large once stored, so none was written (${first})`);
  return Object.assign(err, { rejected });
}

/** The events an append was refused for (positions in that append), when it was refused for their size. */
export function tooLargeEvents(err: unknown): readonly RejectedItem[] | undefined {
  return isMeteorError(err) && err.code === 'METEORZX_EVENT_TOO_LARGE' ? (err as Partial<TooLargeRefusal>).rejected : undefined;
}
