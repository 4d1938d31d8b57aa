import { isUtf8 } from 'node:buffer';
import { DEFAULT_LIMITS, type Limits } from './limits.js';
import { ProtocolErrors } from './errors.js';

/**
 * One item of a decoded batch: either a parsed JSON value with the size of its
 * text, or the reason it could not be read. Index is its position in the batch.
 */
export type BatchItem =
  | { index: number; value: unknown; bytes: number; error?: undefined }
  | { index: number; value?: undefined; bytes: number; error: string };

export type BodyFormat = 'json' | 'ndjson';

/**
 * UTF-8 text of a body or line, or undefined when it is not valid UTF-8.
 * `isUtf8` (simdutf) and Buffer's decoder are cheaper per small payload
 * than a fatal TextDecoder, and one MQTT event is one payload.
 */
function utf8Text(bytes: Uint8Array): string | undefined {
  if (!isUtf8(bytes)) return undefined;
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  // A leading byte-order mark is dropped, as TextDecoder does.
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** Which format a Content-Type names; undefined for one we do not take. */
export function bodyFormat(contentType: string | undefined): BodyFormat | undefined {
  const base = (contentType ?? 'application/json').split(';')[0]?.trim().toLowerCase() ?? '';
  if (base === 'application/json' || base === '' || base === 'text/json') return 'json';
  if (base === 'application/x-ndjson' || base === 'application/ndjson' || base === 'application/jsonl' || base === 'application/json-seq') {
    return 'ndjson';
  }
  return undefined;
}

/**
 * Decodes a body (already decompressed) into batch items. A JSON body is one
 * event or an array of events; NDJSON is one event per line, and a bad line
 * (malformed JSON, invalid UTF-8) rejects that line alone. Throws a typed
 * error only when the body as a whole cannot be read or is over a limit.
 */
export function decodeBatch(body: Uint8Array, format: BodyFormat, limits: Limits = DEFAULT_LIMITS): BatchItem[] {
  if (body.byteLength > limits.maxBodyBytes) {
    throw ProtocolErrors.METEORZX_BODY_TOO_LARGE(`body is ${body.byteLength} bytes, over the limit of ${limits.maxBodyBytes} (maxBodyBytes)`);
  }
  const items = format === 'json' ? decodeJson(body) : decodeNdjson(body, limits);
  if (items.length > limits.maxBatchEvents) {
    throw ProtocolErrors.METEORZX_BATCH_TOO_LARGE(`batch has ${items.length} events, over the limit of ${limits.maxBatchEvents} (maxBatchEvents)`);
  }
  return items;
}

function decodeJson(body: Uint8Array): BatchItem[] {
  const text = utf8Text(body);
  if (text === undefined) throw ProtocolErrors.METEORZX_BODY_UNREADABLE('body is not valid UTF-8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw ProtocolErrors.METEORZX_BODY_UNREADABLE(`body is not valid JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(parsed)) return [{ index: 0, value: parsed, bytes: body.byteLength }];
  const sizes = arrayItemBytes(body, parsed.length);
  return parsed.map((value: unknown, index) => ({ index, value, bytes: sizes[index] as number }));
}

/**
 * The size of each item of a top-level JSON array as sent: its bytes in the
 * body, without the whitespace around it — what an NDJSON line of it would
 * count. A scan of the bytes, not a JSON.stringify of every parsed item (that
 * was ≈3 µs per event for an agent's batch). Only called on a body that
 * JSON.parse accepted as an array, so the structure is known to be valid;
 * bytes ≥ 0x80 are never structural in UTF-8, so they need no decoding.
 */
function arrayItemBytes(body: Uint8Array, count: number): number[] {
  const sizes: number[] = new Array<number>(count);
  let i = body.indexOf(0x5b) + 1; // past '['
  let n = 0;
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
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue;
    if (depth === 0 && (b === 0x2c || b === 0x5d)) {
      if (start >= 0) sizes[n++] = last - start + 1;
      if (b === 0x5d) break;
      start = -1;
      continue;
    }
    if (start < 0) start = i;
    last = i;
    if (b === 0x22) inString = true;
    else if (b === 0x5b || b === 0x7b) depth += 1;
    else if (b === 0x5d || b === 0x7d) depth -= 1;
  }
  return sizes;
}

function decodeNdjson(body: Uint8Array, limits: Limits): BatchItem[] {
  const items: BatchItem[] = [];
  let start = 0;
  let index = 0;
  while (start <= body.byteLength) {
    let end = body.indexOf(0x0a, start);
    if (end === -1) end = body.byteLength;
    let lineEnd = end;
    if (lineEnd > start && body[lineEnd - 1] === 0x0d) lineEnd -= 1;
    const line = body.subarray(start, lineEnd);
    start = end + 1;
    if (isBlank(line)) continue;
    items.push(decodeLine(line, index, limits));
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

function decodeLine(line: Uint8Array, index: number, limits: Limits): BatchItem {
  const bytes = line.byteLength;
  if (bytes > limits.maxEventBytes) {
    // Not parsed at all: an oversized line costs no more than its bytes.
    return { index, bytes, error: `event is ${bytes} bytes, over the limit of ${limits.maxEventBytes} (maxEventBytes)` };
  }
  const text = utf8Text(line);
  if (text === undefined) return { index, bytes, error: 'invalid UTF-8' };
  try {
    return { index, value: JSON.parse(text), bytes };
  } catch (err) {
    return { index, bytes, error: `malformed JSON: ${(err as Error).message}` };
  }
}

/** Decodes an MQTT payload: one JSON event or a JSON array of events. */
export function decodePayload(payload: Uint8Array, limits: Limits = DEFAULT_LIMITS): BatchItem[] {
  return decodeBatch(payload, 'json', { ...limits, maxBodyBytes: Math.max(limits.maxBodyBytes, payload.byteLength) });
}
