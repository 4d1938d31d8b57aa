import type { StoredLine } from './types.js';

/**
 * The stored lines written straight into one Buffer of the exact size:
 * `open`, the lines separated by `separator`, then `close`. Joining them
 * as a string first would make a string the size of the whole batch
 * (hundreds of KB, allocated in V8's old generation) only to copy it into a
 * Buffer and drop it.
 */
function linesBuffer(items: readonly StoredLine[], open: string, separator: string, close: string): Buffer {
  let size = Buffer.byteLength(open) + Buffer.byteLength(close) + Math.max(0, items.length - 1) * Buffer.byteLength(separator);
  for (const item of items) size += Buffer.byteLength(item.line);
  const out = Buffer.allocUnsafe(size);
  let at = out.write(open, 0);
  for (let i = 0; i < items.length; i++) {
    if (i > 0) at += out.write(separator, at);
    at += out.write((items[i] as StoredLine).line, at);
  }
  out.write(close, at);
  return out;
}

/** The events as an NDJSON body (one stored line each, trailing newline). */
export function ndjsonOf(items: readonly StoredLine[]): Buffer {
  return linesBuffer(items, '', '\n', items.length > 0 ? '\n' : '');
}

/** The events as one JSON array (the MQTT payload). */
export function jsonArrayOf(items: readonly StoredLine[]): Buffer {
  return linesBuffer(items, '[', ',', ']');
}
