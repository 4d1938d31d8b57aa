import { formatIssues, validateEvent, type AuditEvent, type Limits } from '../../../protocols/index.js';
import { intakeErrorEvent } from '../intake-error.js';
import { completeUtf8Length, type Line } from './line-splitter.js';

export { INTAKE_ERROR_TYPE } from '../intake-error.js';

// Room left for what the buffer adds (id, source, time, agent, epoch, seq, prev, hash ≈ 330 bytes).
const ENVELOPE_RESERVE = 512;

export interface LineFormat {
  format: 'json' | 'line';
  /** Event type of `line` events. */
  type: string;
  limits: Limits;
}

export interface LineOrigin {
  intake: string;
  file: string;
}

export type LineResult = { ok: true; event: AuditEvent } | { ok: false; event: AuditEvent; reason: string };

/**
 * Turns one line into an event. `json`: the line is an event (validated like
 * the HTTP intake's). `line`: the text goes into `data.line`. Whatever cannot
 * become an event becomes a `meteorzx.intake.error` event carrying the reason
 * and the start of the raw line, so the operator sees it at the gateway.
 */
export function lineToEvent(line: Line, format: LineFormat, origin: LineOrigin): LineResult {
  if (format.format === 'line') return { ok: true, event: textEvent(line, format, origin) };
  const text = line.bytes.toString('utf8');
  if (line.truncated) {
    return errorResult(line, origin, text, `line of ${line.originalBytes} bytes is over the limit of ${line.bytes.length} (maxLineBytes)`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return errorResult(line, origin, text, `not JSON: ${(err as Error).message}`);
  }
  const result = validateEvent(value, format.limits, line.bytes.length);
  if (!result.ok) return errorResult(line, origin, text, formatIssues(result.errors));
  return { ok: true, event: result.event };
}

/** Events for a batch of lines: blank lines give none (the checkpoint still moves past them); `invalid` counts error events. */
export function linesToEvents(lines: readonly Line[], format: LineFormat, origin: LineOrigin): { events: AuditEvent[]; invalid: number } {
  const events: AuditEvent[] = [];
  let invalid = 0;
  for (const read of lines) {
    const line = withoutBom(read);
    if (line.bytes.length === 0 || (format.format === 'json' && line.bytes.toString('latin1').trim() === '')) continue;
    const result = lineToEvent(line, format, origin);
    if (!result.ok) invalid += 1;
    events.push(result.event);
  }
  return { events, invalid };
}

const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/**
 * The line without a UTF-8 BOM when it is the file's first (Windows editors and PowerShell write one): the
 * BOM marks the encoding, it is not text, and JSON.parse refuses it. Elsewhere U+FEFF is text and stays.
 */
function withoutBom(line: Line): Line {
  return line.start === 0 && line.bytes.subarray(0, 3).equals(UTF8_BOM) ? { ...line, bytes: line.bytes.subarray(3) } : line;
}

function errorResult(line: Line, origin: LineOrigin, text: string, reason: string): LineResult {
  const event = intakeErrorEvent(
    { intake: origin.intake, file: origin.file, offset: line.start, bytes: line.originalBytes, reason: reason.slice(0, 1024) },
    text,
  );
  return { ok: false, event, reason };
}

function textEvent(line: Line, format: LineFormat, origin: LineOrigin): AuditEvent {
  let bytes = line.bytes;
  let truncated = line.truncated;
  const budget = format.limits.maxEventBytes - ENVELOPE_RESERVE;
  // JSON writes a byte of text as at most 6 bytes (\u00xx) and a UTF-16 unit as at most 18 (3 bytes, each
  // escaped): an event under this bound needs no serialising to know it fits, which is nearly every line.
  const mostBesidesLine = 18 * (origin.file.length + format.type.length) + 128;
  for (;;) {
    const data: Record<string, unknown> = { line: bytes.toString('utf8'), file: origin.file, offset: line.start };
    if (truncated) {
      data.truncated = true;
      data.originalBytes = line.originalBytes;
    }
    const event: AuditEvent = { type: format.type, data };
    if (mostBesidesLine + 6 * bytes.length <= budget) return event;
    const size = Buffer.byteLength(JSON.stringify(event));
    if (size <= budget || bytes.length === 0) return event;
    // JSON escaping makes the text longer than its bytes; cutting by the excess always shrinks it enough in a few rounds.
    const cut = bytes.subarray(0, Math.max(0, bytes.length - (size - budget)));
    bytes = cut.subarray(0, completeUtf8Length(cut));
    truncated = true;
  }
}
