import type { ChainedEvent } from '../../protocols/index.js';

/**
 * The canonical JSON text of a chained event, as the commit produced it
 * (and as it is stored). Kept on the event under a symbol, which
 * JSON.stringify ignores, so the push transports and byte accounting reuse
 * it instead of serialising every event a second time.
 */
const LINE: unique symbol = Symbol('meteorzx.line');

type WithLine = ChainedEvent & { [LINE]?: string };

export function attachLine(event: ChainedEvent, line: string): void {
  (event as WithLine)[LINE] = line;
}

/** The event's stored JSON line when known, else its JSON.stringify. */
export function eventLine(event: ChainedEvent): string {
  return (event as WithLine)[LINE] ?? JSON.stringify(event);
}

/** The events as an NDJSON body (one line each, trailing newline). */
export function ndjsonOf(events: readonly ChainedEvent[]): string {
  let out = '';
  for (const e of events) out += `${eventLine(e)}\n`;
  return out;
}

/** The events as one JSON array (the MQTT payload). */
export function jsonArrayOf(events: readonly ChainedEvent[]): string {
  let out = '[';
  for (let i = 0; i < events.length; i++) out += i === 0 ? eventLine(events[i] as ChainedEvent) : `,${eventLine(events[i] as ChainedEvent)}`;
  return `${out}]`;
}
