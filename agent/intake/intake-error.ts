import { dropLoneSurrogate, isWellFormed, toWellFormed, type AuditEvent } from '../../protocols/index.js';

/** Type of the event that stands for a record an intake could not take (nothing is dropped silently, DESIGN §3.4). */
export const INTAKE_ERROR_TYPE = 'meteorzx.intake.error';

/** Characters of the raw record kept in an intake error event. */
export const RAW_EXCERPT_CHARS = 1024;

/**
 * An intake error event: the reason, where the record came from, and the
 * start of the raw record, so the operator sees at the gateway what was not
 * taken and why.
 *
 * Its text is made well-formed here, for every intake: cutting the raw
 * record at RAW_EXCERPT_CHARS can split a surrogate pair, and a reason can
 * quote a sender's key holding a lone surrogate (`{"\ud800":1}` parses). A
 * lone surrogate cannot be written as canonical JSON, so the buffer would
 * refuse the error event at its commit: a file or serial intake would retry
 * that append for ever, stuck on the line, and an edge MQTT publish would be
 * refused whole, neighbours included.
 */
export function intakeErrorEvent(data: Record<string, unknown> & { intake: string; reason: string }, raw?: string): AuditEvent {
  const out: Record<string, unknown> = { ...data, reason: toWellFormed(data.reason) };
  if (raw !== undefined) {
    out.raw = toWellFormed(raw.length > RAW_EXCERPT_CHARS ? dropLoneSurrogate(raw.slice(0, RAW_EXCERPT_CHARS)) : raw);
    if (raw.length > RAW_EXCERPT_CHARS) out.rawTruncated = true;
  }
  return { type: INTAKE_ERROR_TYPE, outcome: 'failure', data: out };
}

/**
 * What a reading intake buffers in place of an event the buffer refused —
 * too large once stored (METEORZX_EVENT_TOO_LARGE) or with no canonical JSON
 * (METEORZX_EVENT_UNSTORABLE): an intake error event with the reason and the
 * start of the event's JSON, keeping its `source` and `id` when they can be
 * stored (a device's retried publish stays one record at the gateway).
 */
export function refusedRecord(intake: string, event: AuditEvent, reason: string): AuditEvent {
  const raw = JSON.stringify(event);
  const type = typeof event.type === 'string' ? toWellFormed(event.type) : event.type;
  const out = intakeErrorEvent({ intake, reason, type, ...(raw.length > RAW_EXCERPT_CHARS ? { rawTruncated: true } : {}) }, dropLoneSurrogate(raw.slice(0, RAW_EXCERPT_CHARS)));
  if (event.source !== undefined && isWellFormed(event.source)) out.source = event.source;
  if (event.id !== undefined && isWellFormed(event.id)) out.id = event.id;
  return out;
}
