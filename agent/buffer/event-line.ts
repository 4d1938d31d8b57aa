import { linesBuffer } from '../../protocols/index.js';
import type { StoredLine } from './types.js';

const linesOf = (items: readonly StoredLine[]): string[] => items.map((item) => item.line);

/** The events as an NDJSON body (one stored line each, trailing newline). */
export function ndjsonOf(items: readonly StoredLine[]): Buffer {
  return linesBuffer(linesOf(items), '', '\n', items.length > 0 ? '\n' : '');
}

/** The events as one JSON array (the MQTT payload). */
export function jsonArrayOf(items: readonly StoredLine[]): Buffer {
  return linesBuffer(linesOf(items), '[', ',', ']');
}
