import type { StoredLine } from './types.js';

/**
 * Lines written straight into one Buffer of the exact size: `open`, the
 * lines separated by `separator`, then `close`. Joining them as a string
 * first would make a string the size of the whole batch (hundreds of KB,
 * allocated in V8's old generation) only to copy it into bytes and drop it.
 * Used for a commit's block text and for push and pull bodies.
 */
export function linesBuffer(lines: readonly string[], open = '', separator = '\n', close = ''): Buffer {
  let size = Buffer.byteLength(open) + Buffer.byteLength(close) + Math.max(0, lines.length - 1) * Buffer.byteLength(separator);
  for (const line of lines) size += Buffer.byteLength(line);
  const out = Buffer.allocUnsafe(size);
  let at = out.write(open, 0);
  for (let i = 0; i < lines.length; i++) {
    if (i > 0) at += out.write(separator, at);
    at += out.write(lines[i] as string, at);
  }
  out.write(close, at);
  return out;
}

const linesOf = (items: readonly StoredLine[]): string[] => items.map((item) => item.line);

/** The events as an NDJSON body (one stored line each, trailing newline). */
export function ndjsonOf(items: readonly StoredLine[]): Buffer {
  return linesBuffer(linesOf(items), '', '\n', items.length > 0 ? '\n' : '');
}

/** The events as one JSON array (the MQTT payload). */
export function jsonArrayOf(items: readonly StoredLine[]): Buffer {
  return linesBuffer(linesOf(items), '[', ',', ']');
}
