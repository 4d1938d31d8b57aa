import { dropLoneSurrogate, formatIssues, validateEvent, withFields, type AuditEvent, type Limits } from '../../../protocols/index.js';
import { intakeErrorEvent, RAW_EXCERPT_CHARS } from '../intake-error.js';
import type { SplitRecord } from './line-splitter.js';

export interface RecordContext {
  format: 'json' | 'line';
  /** Event type of a `line` record. */
  type: string;
  /** Source of line records and of JSON events without one; undefined: the agent's id (set by the buffer). */
  source: string | undefined;
  /** The port path, kept in `data.port`. */
  port: string;
  /** Whether a trailing CR is stripped (the delimiter is "\n" and devices often send CRLF). */
  stripCr: boolean;
  limits: Limits;
}

export interface RecordEvent {
  event: AuditEvent;
  /** Set when the record was not a valid event and became an intake error event. */
  invalid?: string;
  /** Set when the record was cut at maxLineBytes. */
  truncated?: boolean;
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });
const lenientUtf8 = new TextDecoder('utf-8');

/**
 * Turns one record read from a port into the event to buffer; undefined for a
 * blank line. `line` records are wrapped (`data.line`); `json` records must
 * be valid events, and anything else becomes a `meteorzx.intake.error` event
 * carrying a sample of the raw text. A cut record is flagged
 * `data.truncated: true` with `data.originalBytes`, the length of the whole
 * record (`data.complete: false`: at least that long, its end not yet seen).
 */
export function recordToEvent(record: SplitRecord, ctx: RecordContext): RecordEvent | undefined {
  if (record.kind === 'discarded') return undefined;
  let bytes = record.bytes;
  if (ctx.stripCr && record.kind === 'line' && bytes.length > 0 && bytes[bytes.length - 1] === 0x0d) bytes = bytes.subarray(0, -1);
  const cut = record.kind === 'truncated' ? { truncated: true, originalBytes: record.bytesSeen, complete: record.complete } : undefined;
  if (cut === undefined && isBlank(bytes)) return undefined;

  if (ctx.format === 'line') {
    const line = lenientUtf8.decode(bytes);
    const { event, shortened } = fitLine(ctx, line, cut);
    return { event, ...(cut !== undefined || shortened ? { truncated: true } : {}) };
  }

  const invalid = (reason: string): RecordEvent => {
    const raw = lenientUtf8.decode(bytes);
    const event = intakeErrorEvent(
      { intake: 'serial', port: ctx.port, reason, bytes: cut?.originalBytes ?? bytes.length, ...cut, ...(raw.length > RAW_EXCERPT_CHARS ? { rawTruncated: true } : {}) },
      dropLoneSurrogate(raw.slice(0, RAW_EXCERPT_CHARS)),
    );
    if (ctx.source !== undefined) event.source = ctx.source;
    return { event, invalid: reason, ...(cut !== undefined ? { truncated: true } : {}) };
  };
  if (cut !== undefined) return invalid(`record of ${cut.originalBytes} bytes is over the limit of ${bytes.length} (maxLineBytes)`);
  let text: string;
  try {
    text = fatalUtf8.decode(bytes);
  } catch {
    return invalid('not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return invalid(`not valid JSON: ${(err as Error).message}`);
  }
  const result = validateEvent(value, ctx.limits, bytes.length);
  if (!result.ok) return invalid(formatIssues(result.errors));
  const event = result.event;
  if (event.source === undefined && ctx.source !== undefined) return { event: withFields(event, { source: ctx.source }) };
  return { event };
}

/**
 * Builds a line event that fits maxEventBytes once serialised: JSON escaping
 * and the envelope make it larger than the line, so the text is shortened
 * (and flagged) when needed rather than producing an event the gateway rejects.
 */
function fitLine(ctx: RecordContext, line: string, cut: Record<string, unknown> | undefined): { event: AuditEvent; shortened: boolean } {
  const build = (text: string, shortened: boolean): AuditEvent => {
    const event: AuditEvent = {
      type: ctx.type,
      data: { line: text, port: ctx.port, ...(cut ?? (shortened ? { truncated: true, originalBytes: Buffer.byteLength(line) } : {})) },
    };
    if (ctx.source !== undefined) event.source = ctx.source;
    return event;
  };
  // Room the buffer adds (id, time, agent, epoch, seq, prev, hash): generous, so the stored event fits too.
  const limit = ctx.limits.maxEventBytes - 512;
  let text = line;
  let event = build(text, false);
  for (;;) {
    const size = Buffer.byteLength(JSON.stringify(event));
    if (size <= limit || text.length === 0) return { event, shortened: text !== line };
    // Each character dropped saves at least one byte, so this converges in a few rounds.
    text = dropLoneSurrogate(text.slice(0, Math.max(0, text.length - (size - limit))));
    event = build(text, true);
  }
}

function isBlank(bytes: Buffer): boolean {
  for (const b of bytes) if (b !== 0x20 && b !== 0x09 && b !== 0x0d && b !== 0x0a) return false;
  return true;
}

