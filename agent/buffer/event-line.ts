import type { StoredLine } from './types.js';

/** The events as an NDJSON body (one stored line each, trailing newline). */
export function ndjsonOf(items: readonly StoredLine[]): string {
  let out = '';
  for (const item of items) out += `${item.line}\n`;
  return out;
}

/** The events as one JSON array (the MQTT payload). */
export function jsonArrayOf(items: readonly StoredLine[]): string {
  let out = '[';
  for (let i = 0; i < items.length; i++) out += i === 0 ? (items[i] as StoredLine).line : `,${(items[i] as StoredLine).line}`;
  return `${out}]`;
}
