/**
 * The identity and chain fields (`id`, `source`, `agent`, `epoch`, `seq`,
 * `hash`, `prev`) of an event refused unparsed for its size, read by one
 * scan of its bytes that builds nothing but them. An agent's event over the
 * gateway's `limits.maxEventBytes` (the agent's own limit being larger) was
 * a rejection record naming nothing, and its seq a hole that stayed open for
 * good: alerted, asked for by backfill and refused again. With these fields
 * the rejection names the event's id and source, and its seq counts as
 * arrived with its hash, as for any other invalid event (DESIGN §4).
 */
export type ItemHead = Partial<Record<HeadField, string | number>>;

type HeadField = 'id' | 'source' | 'agent' | 'epoch' | 'seq' | 'hash' | 'prev';

const FIELDS: ReadonlySet<string> = new Set<HeadField>(['id', 'source', 'agent', 'epoch', 'seq', 'hash', 'prev']);

/** Longest value kept, in bytes: every field above fits (ids ≤ 128 characters, hashes 64). */
const MAX_VALUE_BYTES = 512;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

const isBlank = (b: number | undefined): boolean => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;

/**
 * The head fields of the JSON object at bytes [start, end), those whose
 * value is a string or a number; undefined when the bytes are not an
 * object as far as the scan reads (it does not validate what it skips).
 */
export function readItemHead(bytes: Uint8Array, start: number, end: number): ItemHead | undefined {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let i = start;
  if (buf[i] === 0xef && buf[i + 1] === 0xbb && buf[i + 2] === 0xbf) i += 3;
  while (i < end && isBlank(buf[i])) i += 1;
  if (buf[i] !== 0x7b) return undefined; // '{'
  i += 1;
  const head: ItemHead = {};
  for (;;) {
    while (i < end && isBlank(buf[i])) i += 1;
    if (buf[i] === 0x7d) return head; // '}'
    if (buf[i] !== QUOTE) return undefined;
    const keyEnd = stringEnd(buf, i, end);
    if (keyEnd < 0) return undefined;
    const key = keyEnd - i - 1 <= 6 ? buf.toString('latin1', i + 1, keyEnd) : '';
    i = keyEnd + 1;
    while (i < end && isBlank(buf[i])) i += 1;
    if (buf[i] !== 0x3a) return undefined; // ':'
    i += 1;
    while (i < end && isBlank(buf[i])) i += 1;
    const valueStart = i;
    i = valueEnd(buf, i, end);
    if (i < 0) return undefined;
    if (FIELDS.has(key) && i - valueStart <= MAX_VALUE_BYTES) {
      const value = scalar(buf.toString('utf8', valueStart, i));
      if (value !== undefined) head[key as HeadField] = value;
    }
    while (i < end && isBlank(buf[i])) i += 1;
    if (buf[i] === 0x2c) i += 1; // ','
    else if (buf[i] === 0x7d) return head;
    else return undefined;
  }
}

/** Index of the quote closing the string opening at `i`, or -1. */
function stringEnd(buf: Buffer, i: number, end: number): number {
  for (let j = i + 1; j < end; j += 1) {
    const b = buf[j];
    if (b === BACKSLASH) j += 1;
    else if (b === QUOTE) return j;
  }
  return -1;
}

/** Index just past the value starting at `i` (a nested object or array skipped whole), or -1. */
function valueEnd(buf: Buffer, i: number, end: number): number {
  const first = buf[i];
  if (first === QUOTE) {
    const close = stringEnd(buf, i, end);
    return close < 0 ? -1 : close + 1;
  }
  if (first === 0x7b || first === 0x5b) {
    let depth = 0;
    for (let j = i; j < end; j += 1) {
      const b = buf[j];
      if (b === QUOTE) {
        j = stringEnd(buf, j, end);
        if (j < 0) return -1;
      } else if (b === 0x7b || b === 0x5b) depth += 1;
      else if (b === 0x7d || b === 0x5d) {
        depth -= 1;
        if (depth === 0) return j + 1;
      }
    }
    return -1;
  }
  // A number or a literal: up to the next delimiter.
  let j = i;
  while (j < end && buf[j] !== 0x2c && buf[j] !== 0x7d && !isBlank(buf[j])) j += 1;
  return j > i ? j : -1;
}

function scalar(text: string): string | number | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'string' || typeof v === 'number' ? v : undefined;
  } catch {
    return undefined;
  }
}
