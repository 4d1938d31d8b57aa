import type { AuditEvent } from '../../protocols/index.js';

/** Type of the event that stands for a record an intake could not take (nothing is dropped silently, DESIGN §3.4). */
export const INTAKE_ERROR_TYPE = 'meteorzx.intake.error';

/** Characters of the raw record kept in an intake error event. */
export const RAW_EXCERPT_CHARS = 1024;

/**
 * An intake error event: the reason, where the record came from, and the
 * start of the raw record, so the operator sees at the gateway what was not
 * taken and why.
 */
export function intakeErrorEvent(data: Record<string, unknown> & { intake: string; reason: string }, raw?: string): AuditEvent {
  const out: Record<string, unknown> = { ...data };
  if (raw !== undefined) {
    out.raw = raw.length > RAW_EXCERPT_CHARS ? raw.slice(0, RAW_EXCERPT_CHARS) : raw;
    if (raw.length > RAW_EXCERPT_CHARS) out.rawTruncated = true;
  }
  return { type: INTAKE_ERROR_TYPE, outcome: 'failure', data: out };
}
