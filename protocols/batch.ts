import { isUtf8 } from 'node:buffer';
import { DEFAULT_LIMITS, type Limits } from './limits.js';
import { ProtocolErrors } from './errors.js';
import { readItemHead, type ItemHead } from './item-head.js';

/**
 * One item of a decoded batch: either a parsed JSON value with the size of its
 * text, or the reason it could not be read. Index is its position in the batch.
 */
export type BatchItem =
  | { index: number; value: unknown; bytes: number; error?: undefined; text?: string }
  | { index: number; value?: undefined; bytes: number; error: string; text?: undefined; head?: ItemHead | undefined };

export interface DecodeOptions {
  /**
   * Keep each parsed item's JSON text as `text` (the string JSON.parse read).
   * The gateway reads an agent's stored line from it (readCanonicalLine)
   * instead of serialising the event again; others let it go at once.
   */
  keepText?: boolean;
  /**
   * Read a `json` body that is not one JSON value but a run of JSON objects
   * or arrays — `{…}{…}`, or one per line — as one item per value, as NDJSON
   * is read. Fluent Bit's HTTP output sends its `json_stream` format (and
   * `gelf`) so, labelled `application/json`, and drops a chunk answered 400
   * for good. For HTTP bodies; an MQTT payload stays one event or an array.
   */
  jsonSequence?: boolean;
}

/** `json-seq`: RFC 7464 JSON text sequences, each record an RS (0x1E), a JSON text and a line feed. */
export type BodyFormat = 'json' | 'ndjson' | 'json-seq';

/**
 * UTF-8 text of a body or line, or undefined when it is not valid UTF-8.
 * `isUtf8` (simdutf) and Buffer's decoder are cheaper per small payload
 * than a fatal TextDecoder, and one MQTT event is one payload.
 */
function utf8Text(bytes: Uint8Array): string | undefined {
  return isUtf8(bytes) ? decodedText(bytes) : undefined;
}

/** The text of bytes already known to be valid UTF-8; a leading byte-order mark is dropped, as TextDecoder does. */
function decodedText(bytes: Uint8Array): string {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** Which format a Content-Type names; undefined for one we do not take. */
export function bodyFormat(contentType: string | undefined): BodyFormat | undefined {
  const base = (contentType ?? 'application/json').split(';')[0]?.trim().toLowerCase() ?? '';
  if (base === 'application/json' || base === '' || base === 'text/json') return 'json';
  if (base === 'application/x-ndjson' || base === 'application/ndjson' || base === 'application/jsonl') return 'ndjson';
  if (base === 'application/json-seq') return 'json-seq';
  return undefined;
}

/**
 * The 415 for a Content-Type `bodyFormat` does not take, naming the ones it
 * does. `curl -d` sends `application/x-www-form-urlencoded` unless told
 * otherwise, and is how most people first try an endpoint: that answer says
 * which flag to add.
 */
export function unsupportedContentType(contentType: string | undefined): Error {
  const type = (contentType ?? '').slice(0, 80);
  const form = type.split(';')[0]?.trim().toLowerCase() === 'application/x-www-form-urlencoded';
  const hint = form ? `; curl -d sends that type: add -H 'Content-Type: application/json'` : '';
  return ProtocolErrors.METEORZX_UNSUPPORTED_MEDIA_TYPE(`unsupported Content-Type "${type}" (use application/json or application/x-ndjson${hint})`);
}

/**
 * Decodes a body (already decompressed) into batch items. A JSON body is one
 * event or an array of events; NDJSON is one event per line, and a bad line
 * (malformed JSON, invalid UTF-8) rejects that line alone. Throws a typed
 * error only when the body as a whole cannot be read or is over a limit.
 */
export function decodeBatch(body: Uint8Array, format: BodyFormat, limits: Limits = DEFAULT_LIMITS, options: DecodeOptions = {}): BatchItem[] {
  if (body.byteLength > limits.maxBodyBytes) {
    throw ProtocolErrors.METEORZX_BODY_TOO_LARGE(`body is ${body.byteLength} bytes, over the limit of ${limits.maxBodyBytes} (maxBodyBytes)`);
  }
  const keepText = options.keepText === true;
  const items =
    format === 'json' ? decodeJson(body, limits, keepText, options.jsonSequence === true) : decodeRecords(body, format === 'json-seq' ? RS : LF, limits, keepText);
  if (items.length > limits.maxBatchEvents) throw batchTooLarge(limits.maxBatchEvents);
  return items;
}

/** Counting stops past the limit (what is beyond it is not read at all), so the message cannot say how many there were. */
function batchTooLarge(max: number): Error {
  return ProtocolErrors.METEORZX_BATCH_TOO_LARGE(`batch has more than ${max} events (maxBatchEvents)`);
}

function decodeJson(body: Uint8Array, limits: Limits, keepText: boolean, sequence: boolean): BatchItem[] {
  if (!isUtf8(body)) throw ProtocolErrors.METEORZX_BODY_UNREADABLE('body is not valid UTF-8');
  const maxItems = limits.maxBatchEvents;
  const ranges = arrayItemRanges(body, maxItems);
  if (ranges === TOO_MANY) throw batchTooLarge(maxItems);
  const items = ranges === undefined ? undefined : parseItems(body, ranges, keepText, limits);
  if (Array.isArray(items)) return items;
  // A body no event could be is never parsed whole: JSON.parse builds every object of it first, and
  // 8 MiB of `{},{},…` is ≈ 2.8 million objects, ≈ 200 MB of heap, for a body the checks then refuse.
  if (body.byteLength > largestItemBytes(limits)) return decodeLargeJson(body, items, limits, keepText, sequence);
  // One event, or a body that is not valid JSON (a valid array was read item by item above).
  const text = decodedText(body);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const values = sequence ? sequenceRanges(body, maxItems) : undefined;
    if (values === TOO_MANY) throw batchTooLarge(maxItems);
    // Every value must parse: a body that is neither one JSON text nor a clean run of them stays unreadable.
    const run = values === undefined ? undefined : parseItems(body, values, keepText, limits);
    if (Array.isArray(run)) return run;
    throw ProtocolErrors.METEORZX_BODY_UNREADABLE(`body is not valid JSON: ${(err as Error).message}`);
  }
  return [{ index: 0, value: parsed, bytes: body.byteLength, text: keepText ? text : undefined }];
}

/**
 * The items of a top-level JSON array (`ranges` from arrayItemRanges), each
 * decoded and parsed from its own bytes, so an agent's batch (hundreds of
 * KB) never becomes one string in V8's large-object space (see
 * protocols/lines.ts), and each item is sized by its bytes as sent — what an
 * NDJSON line of it would count — without re-serialising it. An item larger
 * than any event is refused unparsed. JSON.parse's message (with the item's
 * index) when an item is not valid JSON: the caller then parses a small body
 * whole, and so answers with JSON.parse's own error. Every item passing
 * JSON.parse, with only commas and blanks between them inside one `[…]`, is a
 * valid array.
 */
function parseItems(body: Uint8Array, ranges: readonly number[], keepText: boolean, limits: Limits): BatchItem[] | string {
  const cap = largestItemBytes(limits);
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const items: BatchItem[] = new Array<BatchItem>(ranges.length / 2);
  for (let n = 0; n < ranges.length; n += 2) {
    const start = ranges[n] as number;
    const end = ranges[n + 1] as number;
    const bytes = end - start;
    if (bytes > cap) {
      // Not parsed: refused for its size alone, as an NDJSON line is (decodeLine).
      items[n / 2] = { index: n / 2, bytes, error: overEventLimit(bytes, limits), head: readItemHead(body, start, end) };
      continue;
    }
    const text = buf.toString('utf8', start, end);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      return `item ${n / 2}: ${(err as Error).message}`;
    }
    items[n / 2] = { index: n / 2, value, bytes, text: keepText ? text : undefined };
  }
  return items;
}

/**
 * The item of a JSON array at bytes [start, end) on its own, for a reader
 * that takes an array's items in slices (protocols/chained-batch.ts): an
 * item over the event limit is refused unparsed, one that does not parse is
 * refused alone (as an NDJSON line is), not the whole body.
 */
export function decodeArrayItem(body: Uint8Array, start: number, end: number, index: number, limits: Limits, keepText: boolean): BatchItem {
  const bytes = end - start;
  if (bytes > largestItemBytes(limits)) return { index, bytes, error: overEventLimit(bytes, limits), head: readItemHead(body, start, end) };
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8', start, end);
  try {
    const value: unknown = JSON.parse(text);
    return { index, value, bytes, text: keepText ? text : undefined };
  } catch (err) {
    return { index, bytes, error: `malformed JSON: ${(err as Error).message}` };
  }
}

/**
 * Where each item of a top-level JSON array starts and ends (flat pairs);
 * undefined unless the body is a clean array of at most `maxItems` items.
 */
export function jsonArrayRanges(body: Uint8Array, maxItems: number): number[] | undefined {
  const ranges = arrayItemRanges(body, maxItems);
  return ranges === TOO_MANY ? undefined : ranges;
}

/** Bytes past which an item cannot be an event (the allowance of a chained event included): it is not parsed. */
function largestItemBytes(limits: Limits): number {
  return limits.maxEventBytes + (limits.chainAllowanceBytes ?? 0);
}

function overEventLimit(bytes: number, limits: Limits): string {
  return `event is ${bytes} bytes, over the limit of ${limits.maxEventBytes} (maxEventBytes)`;
}

/**
 * A `json` body larger than any one event that is not a clean array: one
 * object or array (refused for its size unparsed, unless blanks made it
 * large), a run of them (with `sequence`), or unreadable — answered from
 * the scan and each value's own parse, never by parsing the body whole.
 * `arrayError` is why an array's item did not parse.
 */
function decodeLargeJson(body: Uint8Array, arrayError: string | undefined, limits: Limits, keepText: boolean, sequence: boolean): BatchItem[] {
  if (arrayError !== undefined) throw ProtocolErrors.METEORZX_BODY_UNREADABLE(`body is not valid JSON: ${arrayError}`);
  const values = valueRanges(body, limits.maxBatchEvents);
  if (values === TOO_MANY) {
    if (sequence) throw batchTooLarge(limits.maxBatchEvents);
    throw ProtocolErrors.METEORZX_BODY_UNREADABLE('body is not valid JSON: more than one JSON value');
  }
  if (values === undefined) {
    let i = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0;
    while (isBlankByte(body[i])) i += 1;
    // A scalar costs no more than its bytes to parse, and JSON.parse names what is wrong with it.
    if (body[i] !== 0x7b && body[i] !== 0x5b) return parseWhole(body, keepText);
    throw ProtocolErrors.METEORZX_BODY_UNREADABLE('body is not valid JSON: an object or array is not closed, or is followed by something else');
  }
  if (values.length > 2 && !sequence) throw ProtocolErrors.METEORZX_BODY_UNREADABLE('body is not valid JSON: more than one JSON value');
  const items = parseItems(body, values, keepText, limits);
  if (typeof items === 'string') throw ProtocolErrors.METEORZX_BODY_UNREADABLE(`body is not valid JSON: ${items}`);
  return items;
}

function parseWhole(body: Uint8Array, keepText: boolean): BatchItem[] {
  const text = decodedText(body);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw ProtocolErrors.METEORZX_BODY_UNREADABLE(`body is not valid JSON: ${(err as Error).message}`);
  }
  return [{ index: 0, value: parsed, bytes: body.byteLength, text: keepText ? text : undefined }];
}

const TOO_MANY = Symbol('too many items');

const isBlankByte = (b: number | undefined): boolean => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;

/**
 * Where each item of a top-level JSON array starts and ends (flat pairs,
 * without the blanks around items), by a scan of the bytes that follows
 * strings and nesting; undefined unless the body is `[`, items separated by
 * single commas, `]`, with blanks (and a leading byte-order mark) allowed
 * around them; TOO_MANY as soon as it counts more than `maxItems` (the rest
 * is not read). The items themselves are not validated here. Bytes ≥ 0x80
 * are never structural in UTF-8, so they need no decoding.
 */
function arrayItemRanges(body: Uint8Array, maxItems: number): number[] | typeof TOO_MANY | undefined {
  let i = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0;
  while (isBlankByte(body[i])) i += 1;
  if (body[i] !== 0x5b) return undefined; // '['
  i += 1;
  while (isBlankByte(body[i])) i += 1;
  const ranges: number[] = [];
  if (body[i] === 0x5d) return restIsBlank(body, i + 1) ? ranges : undefined; // '[]'
  let depth = 0;
  let inString = false;
  let start = -1; // first non-blank byte of the current item
  let last = -1; // last non-blank byte of the current item
  for (; i < body.length; i++) {
    const b = body[i] as number;
    if (inString) {
      if (b === 0x5c) i += 1; // backslash: skip the escaped byte
      else if (b === 0x22) inString = false;
      last = i;
      continue;
    }
    if (isBlankByte(b)) continue;
    if (depth === 0 && (b === 0x2c || b === 0x5d)) {
      if (start < 0) return undefined; // an empty item: '[,' or ',,' or ',]'
      ranges.push(start, last + 1);
      if (ranges.length > 2 * maxItems) return TOO_MANY;
      if (b === 0x5d) return restIsBlank(body, i + 1) ? ranges : undefined;
      start = -1;
      continue;
    }
    if (start < 0) start = i;
    last = i;
    if (b === 0x22) inString = true;
    else if (b === 0x5b || b === 0x7b) depth += 1;
    else if (b === 0x5d || b === 0x7d) {
      depth -= 1;
      if (depth < 0) return undefined;
    }
  }
  return undefined; // no closing ']'
}

/**
 * Where each value of a run of top-level JSON objects or arrays starts and
 * ends (flat pairs), blanks allowed between and around them; undefined
 * unless the body is two or more such values and nothing else (a scalar
 * between them, an unclosed value); TOO_MANY past `maxItems`. Scanned as
 * arrayItemRanges scans, following strings and nesting; the values
 * themselves are checked by JSON.parse afterwards.
 */
function sequenceRanges(body: Uint8Array, maxItems: number): number[] | typeof TOO_MANY | undefined {
  const ranges = valueRanges(body, maxItems);
  return ranges !== undefined && ranges !== TOO_MANY && ranges.length < 4 ? undefined : ranges;
}

/** As sequenceRanges, one value included. */
function valueRanges(body: Uint8Array, maxItems: number): number[] | typeof TOO_MANY | undefined {
  let i = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0;
  const ranges: number[] = [];
  for (;;) {
    while (isBlankByte(body[i])) i += 1;
    if (i >= body.length) return ranges.length >= 2 ? ranges : undefined;
    if (body[i] !== 0x7b && body[i] !== 0x5b) return undefined; // each value an object or an array
    const start = i;
    let depth = 0;
    let inString = false;
    for (; i < body.length; i++) {
      const b = body[i] as number;
      if (inString) {
        if (b === 0x5c) i += 1;
        else if (b === 0x22) inString = false;
      } else if (b === 0x22) inString = true;
      else if (b === 0x7b || b === 0x5b) depth += 1;
      else if (b === 0x7d || b === 0x5d) {
        depth -= 1;
        if (depth === 0) break;
      }
    }
    if (depth !== 0 || i >= body.length) return undefined;
    i += 1;
    ranges.push(start, i);
    if (ranges.length > 2 * maxItems) return TOO_MANY;
  }
}

function restIsBlank(body: Uint8Array, from: number): boolean {
  for (let i = from; i < body.length; i++) if (!isBlankByte(body[i])) return false;
  return true;
}

const LF = 0x0a;
const RS = 0x1e;

/**
 * NDJSON (records end at LF, a CR before it dropped) or an RFC 7464
 * sequence (records start at RS; a JSON text may span lines, and the blanks
 * after it, its LF included, are dropped). Each record is one item.
 */
function decodeRecords(body: Uint8Array, separator: typeof LF | typeof RS, limits: Limits, keepText: boolean): BatchItem[] {
  const items: BatchItem[] = [];
  let start = 0;
  let index = 0;
  while (start <= body.byteLength) {
    let end = body.indexOf(separator, start);
    if (end === -1) end = body.byteLength;
    let lineEnd = end;
    if (separator === LF) {
      if (lineEnd > start && body[lineEnd - 1] === 0x0d) lineEnd -= 1;
    } else {
      while (lineEnd > start && isBlankByte(body[lineEnd - 1])) lineEnd -= 1;
    }
    const line = body.subarray(start, lineEnd);
    start = end + 1;
    if (isBlank(line)) continue;
    items.push(decodeLine(line, index, limits, keepText));
    index += 1;
    // Stop decoding past the batch limit: the caller rejects the whole body anyway.
    if (index > limits.maxBatchEvents) break;
  }
  return items;
}

function isBlank(line: Uint8Array): boolean {
  for (const b of line) if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return false;
  return true;
}

function decodeLine(line: Uint8Array, index: number, limits: Limits, keepText: boolean): BatchItem {
  const bytes = line.byteLength;
  // The allowance for a chained event's added fields, if any, before parsing: validateEvent checks the event exactly.
  if (bytes > largestItemBytes(limits)) {
    // Not parsed at all: an oversized line costs no more than its bytes (one scan reads its id and chain fields).
    return { index, bytes, error: overEventLimit(bytes, limits), head: readItemHead(line, 0, bytes) };
  }
  const text = utf8Text(line);
  if (text === undefined) return { index, bytes, error: 'invalid UTF-8' };
  try {
    const value: unknown = JSON.parse(text);
    return { index, value, bytes, text: keepText ? text : undefined };
  } catch (err) {
    return { index, bytes, error: `malformed JSON: ${(err as Error).message}` };
  }
}

/** Decodes an MQTT payload: one JSON event or a JSON array of events. */
export function decodePayload(payload: Uint8Array, limits: Limits = DEFAULT_LIMITS, options: DecodeOptions = {}): BatchItem[] {
  return decodeBatch(payload, 'json', { ...limits, maxBodyBytes: Math.max(limits.maxBodyBytes, payload.byteLength) }, options);
}
