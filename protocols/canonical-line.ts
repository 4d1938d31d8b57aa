import { isWellFormed } from './unicode.js';

/**
 * An agent's stored line read as text: the gateway's integrity check and its
 * stored line, without serialising the event again.
 *
 * An agent sends each event as the line it stored: the RFC 8785 canonical
 * JSON of the event without `hash`, with `,"hash":"<64 hex>"` added before
 * the closing brace (agent/buffer/chain-cursor.ts). The hash covers that
 * canonical text, so the text minus the hash member is exactly what the
 * gateway would otherwise rebuild with `fastCanonicalJsonWithout` (copy,
 * sort, JSON.stringify) — if, and only if, the text really is canonical.
 * `readCanonicalLine` checks that with one scan of the characters, for a
 * strict subset of canonical JSON that every agent line falls in:
 *
 *  - no blanks; keys without escapes, not starting with a digit, not
 *    `__proto__`, strictly increasing (UTF-16 code units) in every object;
 *  - strings escaped exactly as JSON.stringify escapes them (`\"`, `\\`,
 *    `\b \f \n \r \t`, `\u00xx` for the other control characters), with no
 *    lone surrogate;
 *  - numbers only as integers of at most 15 digits, and not `-0` (the forms
 *    JSON.stringify writes for them are the digits themselves);
 *  - at most 32 levels of nesting.
 *
 * Anything else — a text that is valid JSON but outside the subset, or not
 * canonical at all — answers undefined and the caller takes the generic path,
 * so the verdict is always the one the generic path would give. The
 * property tests in test/unit/protocols/canonical-line.test.ts hold it to
 * that against `fastCanonicalJsonWithout`.
 */
export interface CanonicalLine {
  /** The canonical JSON of the event without `hash`: the text its hash covers. */
  readonly unhashed: string;
  /** The `hash` the line carries (64 lowercase hex digits), not yet checked against anything. */
  readonly hash: string;
  /** Where each top-level key of `unhashed` starts and ends (flat pairs: first character, closing quote). */
  readonly keys: readonly number[];
}

const HASH_MEMBER = ',"hash":"';
// ,"hash":" + 64 hex digits + "}
const HASH_SUFFIX = HASH_MEMBER.length + 64 + 2;
const MAX_DEPTH = 32;
const MAX_DIGITS = 15;

/**
 * `text` read as an agent's line; undefined unless it is one, in the subset
 * above. `text` must be exactly what JSON.parse read into the event (the
 * scan relies on it being valid JSON). When it answers, the event without
 * `hash` has `unhashed` as its RFC 8785 canonical JSON, and `hash` is the
 * event's `hash`.
 */
export function readCanonicalLine(text: string): CanonicalLine | undefined {
  const n = text.length;
  if (n < HASH_SUFFIX + 2 || text.charCodeAt(n - 1) !== 0x7d || text.charCodeAt(n - 2) !== 0x22) return undefined;
  if (!text.startsWith(HASH_MEMBER, n - HASH_SUFFIX)) return undefined;
  for (let i = n - 66; i < n - 2; i += 1) {
    const c = text.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return undefined;
  }
  const unhashed = `${text.slice(0, n - HASH_SUFFIX)}}`;
  if (unhashed.charCodeAt(0) !== 0x7b) return undefined;
  // A raw lone surrogate (JSON.parse takes one) is left to the generic path; escaped ones fail the scan.
  if (!isWellFormed(unhashed)) return undefined;
  const keys: number[] = [];
  if (new Scan(unhashed).object(0, 1, keys) !== unhashed.length) return undefined;
  // A second top-level "hash" would be the one JSON.parse dropped: not the text the event's hash covers.
  for (let k = 0; k < keys.length; k += 2) if (keyIs(unhashed, keys[k] as number, keys[k + 1] as number, 'hash')) return undefined;
  return { unhashed, hash: text.slice(n - 66, n - 2), keys };
}

/**
 * The canonical JSON of the line's event without `hash`, with `members`
 * added as top-level members (each `[key, canonical JSON of its value]`,
 * sorted by key, keys needing no escape). Undefined when the event already
 * has one of those keys. Used for the gateway's stored line: the event plus
 * `hash`, `ingest` and `tags`, which would otherwise be serialised whole.
 */
export function withMembers(line: CanonicalLine, members: readonly (readonly [string, string])[]): string | undefined {
  const { unhashed, keys } = line;
  const count = keys.length / 2;
  const start = (m: number): number => (keys[2 * m] as number) - 1;
  const end = (m: number): number => (m + 1 < count ? (keys[2 * m + 2] as number) - 2 : unhashed.length - 1);
  let out = '{';
  let first = true;
  let next = 0; // the first member of the line not yet written
  for (const [key, json] of members) {
    let at = next;
    while (at < count && compareRanges(unhashed, keys[2 * at] as number, keys[2 * at + 1] as number, key, 0, key.length) < 0) at += 1;
    if (at < count && keyIs(unhashed, keys[2 * at] as number, keys[2 * at + 1] as number, key)) return undefined;
    if (at > next) {
      out += (first ? '' : ',') + unhashed.slice(start(next), end(at - 1));
      first = false;
      next = at;
    }
    out += `${first ? '' : ','}"${key}":${json}`;
    first = false;
  }
  if (next < count) out += (first ? '' : ',') + unhashed.slice(start(next), end(count - 1));
  return `${out}}`;
}

function keyIs(s: string, from: number, to: number, key: string): boolean {
  return to - from === key.length && s.startsWith(key, from);
}

/** a[a0, a1) against b[b0, b1), in UTF-16 code units (RFC 8785's key order). */
function compareRanges(a: string, a0: number, a1: number, b: string, b0: number, b1: number): number {
  const len = Math.min(a1 - a0, b1 - b0);
  for (let k = 0; k < len; k += 1) {
    const d = a.charCodeAt(a0 + k) - b.charCodeAt(b0 + k);
    if (d !== 0) return d;
  }
  return a1 - a0 - (b1 - b0);
}

/**
 * One left-to-right scan of a text JSON.parse accepted (so no raw control
 * character sits inside a string, and the structure is balanced). Strings
 * are crossed with `indexOf` rather than character by character: most of an
 * event is string content. The next backslash is looked up once and reused
 * until the scan passes it, so a text without escapes costs one search.
 */
class Scan {
  /** The first backslash at or after the last search's start (s.length: none); -1 before the first search. */
  private backslash = -1;

  constructor(readonly s: string) {}

  /** The first backslash at or after `from` (s.length when there is none). `from` never decreases. */
  private nextBackslash(from: number): number {
    if (this.backslash < from && this.backslash !== this.s.length) {
      const at = this.s.indexOf('\\', from);
      this.backslash = at < 0 ? this.s.length : at;
    }
    return this.backslash;
  }

  /** The index just past the value at `i`, or -1 when it is outside the subset. */
  value(i: number, depth: number): number {
    const s = this.s;
    const c = s.charCodeAt(i);
    if (c === 0x22) return this.string(i);
    if (c === 0x7b) return this.object(i, depth + 1, undefined);
    if (c === 0x5b) return this.array(i, depth + 1);
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return integer(s, i);
    if (c === 0x74) return s.startsWith('true', i) ? i + 4 : -1;
    if (c === 0x66) return s.startsWith('false', i) ? i + 5 : -1;
    if (c === 0x6e) return s.startsWith('null', i) ? i + 4 : -1;
    return -1;
  }

  /** `keys`, when given, collects each key's first character and closing quote. */
  object(i: number, depth: number, keys: number[] | undefined): number {
    const s = this.s;
    if (depth > MAX_DEPTH) return -1;
    i += 1;
    if (s.charCodeAt(i) === 0x7d) return i + 1;
    let prevFrom = -1;
    let prevTo = -1;
    for (;;) {
      if (s.charCodeAt(i) !== 0x22) return -1;
      const from = i + 1;
      const to = this.key(from);
      if (to < 0) return -1;
      if (prevFrom >= 0 && compareRanges(s, prevFrom, prevTo, s, from, to) >= 0) return -1;
      keys?.push(from, to);
      prevFrom = from;
      prevTo = to;
      i = to + 1;
      if (s.charCodeAt(i) !== 0x3a) return -1;
      i = this.value(i + 1, depth);
      if (i < 0) return -1;
      const c = s.charCodeAt(i);
      if (c === 0x7d) return i + 1;
      if (c !== 0x2c) return -1;
      i += 1;
    }
  }

  /** The closing quote of a key starting at `from`; -1 for a key that needs an escape, starts with a digit, or is `__proto__`. */
  private key(from: number): number {
    const s = this.s;
    const first = s.charCodeAt(from);
    if (first >= 0x30 && first <= 0x39) return -1;
    const close = s.indexOf('"', from);
    if (close < 0 || this.nextBackslash(from) < close) return -1;
    return keyIs(s, from, close, '__proto__') ? -1 : close;
  }

  private array(i: number, depth: number): number {
    const s = this.s;
    if (depth > MAX_DEPTH) return -1;
    i += 1;
    if (s.charCodeAt(i) === 0x5d) return i + 1;
    for (;;) {
      i = this.value(i, depth);
      if (i < 0) return -1;
      const c = s.charCodeAt(i);
      if (c === 0x5d) return i + 1;
      if (c !== 0x2c) return -1;
      i += 1;
    }
  }

  private string(i: number): number {
    const s = this.s;
    let from = i + 1;
    for (;;) {
      const close = s.indexOf('"', from);
      if (close < 0) return -1;
      const escape = this.nextBackslash(from);
      if (escape > close) return close + 1;
      // An escape before the quote: check it, then go on after it (the quote found may be the escaped one).
      const e = s.charCodeAt(escape + 1);
      if (e === 0x22 || e === 0x5c || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        from = escape + 2;
        continue;
      }
      // \u00xx, lowercase, only for a control character JSON.stringify has no short escape for.
      if (e !== 0x75 || s.charCodeAt(escape + 2) !== 0x30 || s.charCodeAt(escape + 3) !== 0x30) return -1;
      const hi = s.charCodeAt(escape + 4);
      const lo = s.charCodeAt(escape + 5);
      const loValue = lo >= 0x30 && lo <= 0x39 ? lo - 0x30 : lo >= 0x61 && lo <= 0x66 ? lo - 0x57 : -1;
      if ((hi !== 0x30 && hi !== 0x31) || loValue < 0) return -1;
      const code = (hi - 0x30) * 16 + loValue;
      if (code === 0x08 || code === 0x09 || code === 0x0a || code === 0x0c || code === 0x0d) return -1;
      from = escape + 6;
    }
  }
}

function integer(s: string, i: number): number {
  const negative = s.charCodeAt(i) === 0x2d;
  if (negative) i += 1;
  const first = s.charCodeAt(i);
  if (first === 0x30) return negative ? -1 : i + 1; // "0"; "-0" is written "0"
  if (!(first >= 0x31 && first <= 0x39)) return -1;
  const from = i;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) break;
    i += 1;
  }
  // A fraction or exponent is left to the generic path (the caller sees an unexpected character).
  return i - from <= MAX_DIGITS ? i : -1;
}
