import { GAP_TYPE, type AuditEvent, type Integrity } from '../../../protocols/index.js';
import type { SeqRange } from '../../storage/seq-gaps.js';


/**
 * The seqs an arrived event reports lost in its own chain, when it is the
 * agent's own gap event (a buffer that dropped or deleted undelivered
 * events): `data.from`..`data.to`, below its own seq. The registry then
 * marks that hole reported by the agent, and backfill does not ask the
 * agent again for what it said it no longer has (it would answer 410 and
 * the loss would be recorded a second time).
 *
 * Closing a hole is a claim about a chain, so only the chain may make it:
 * the event must be chained (agent, epoch, seq, hash) and verified on
 * arrival, and name seqs of its own epoch — `data.epoch`, when given, must
 * be its epoch, and a gap naming another epoch (`lostEpoch`: a buffer
 * replaced after corruption) marks nothing. An unchained event (anyone's,
 * the gateway's own backfill record included) or a broken one marks
 * nothing. The hash is unkeyed: what this trusts is what the integrity
 * check trusts.
 */
export function reportedLoss(event: AuditEvent, integrity: Integrity | undefined): SeqRange | undefined {
  if (event.type !== GAP_TYPE || integrity !== 'verified') return undefined;
  const { agent, epoch, seq, hash, data } = event;
  if (agent === undefined || epoch === undefined || seq === undefined || hash === undefined) return undefined;
  if (data === undefined || data === null || typeof data !== 'object' || Array.isArray(data)) return undefined;
  const fields = data as Record<string, unknown>;
  if ('lostEpoch' in fields) return undefined;
  if (fields.epoch !== undefined && fields.epoch !== epoch) return undefined;
  if (fields.agent !== undefined && fields.agent !== agent) return undefined;
  const { from, to } = fields;
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to)) return undefined;
  // The agent appends its gap event after the seqs it lost: a range reaching its own seq or above is not one.
  if ((from as number) < 1 || (from as number) > (to as number) || (to as number) >= seq) return undefined;
  return { from: from as number, to: to as number };
}
