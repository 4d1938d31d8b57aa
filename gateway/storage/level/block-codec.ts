import { promisify } from 'node:util';
import { deflate, deflateSync, inflate, type ZlibOptions } from 'node:zlib';
import { bufferLines, linesBuffer, type CustodyRecord, type StoredEvent } from '../../../protocols/index.js';
import { GatewayErrors } from '../../errors.js';

const deflateAsync = promisify(deflate);
const inflateAsync = promisify(inflate);

/**
 * A block is the lines of one commit (canonical JSON, one record per line —
 * canonical JSON escapes every newline inside strings) deflated together.
 * zlib's format (not raw deflate) carries an Adler-32 checksum, so a flipped
 * byte on disk fails to decode instead of yielding different events.
 * Compression of all but small blocks runs on libuv's thread pool, off the event loop.
 */
export async function encodeLines(lines: readonly string[], level: number): Promise<Buffer> {
  const text = linesBuffer(lines);
  const options = DEFLATE_OPTIONS[level] ?? deflateOptions(level);
  // A small block compresses in less time than a trip through the thread pool costs (its stream set-up
  // alone is ~100 µs, and under CPU contention the wait for a thread is longer still).
  return text.length <= SYNC_DEFLATE_BYTES ? deflateSync(text, options) : deflateAsync(text, options);
}

/** Blocks up to this many bytes (≈150 events) are compressed on the calling thread. */
const SYNC_DEFLATE_BYTES = 64 * 1024;

/**
 * A 8 KiB window instead of zlib's 32 KiB: what repeats in a block sits a
 * line or two apart (field names, the previous record's hash in `prev`), so
 * the blocks come out as small or smaller, and custody blocks (mostly
 * hashes) compress ~30% faster. `inflate` reads any window size. A 128 KiB
 * output chunk lets a commit's block come back from the thread pool in one
 * piece rather than 16 KiB callbacks.
 */
function deflateOptions(level: number): ZlibOptions {
  return { level, windowBits: 13, chunkSize: 128 * 1024 };
}
const DEFLATE_OPTIONS: readonly ZlibOptions[] = Array.from({ length: 10 }, (_, level) => deflateOptions(level));

export async function decodeLines(block: Uint8Array, what: string): Promise<string[]> {
  let text: Buffer;
  try {
    text = await inflateAsync(block);
  } catch (err) {
    throw GatewayErrors.METEORZX_STORAGE_CORRUPT(`${what} cannot be decoded: ${(err as Error).message}`, { cause: err });
  }
  return text.length === 0 ? [] : bufferLines(text);
}

/** A decoded event block, kept in the query LRU. */
export interface EventBlock {
  commit: number;
  lines: string[];
  events: StoredEvent[];
  /** Length of its JSON text, for the cache's size bound. */
  bytes: number;
}

export async function decodeEventBlock(commit: number, block: Uint8Array): Promise<EventBlock> {
  const lines = await decodeLines(block, `event block ${commit}`);
  const bytes = lines.reduce((n, l) => n + l.length, 0);
  return { commit, lines, events: parseLines<StoredEvent>(lines, `event block ${commit}`), bytes };
}

export async function decodeCustodyBlock(commit: number, block: Uint8Array): Promise<CustodyRecord[]> {
  return parseLines<CustodyRecord>(await decodeLines(block, `custody block ${commit}`), `custody block ${commit}`);
}

/** Each line must be a JSON object: valid JSON of another kind (`null`, `5`, `[]`) is damage too, not a record to read fields of. */
function parseLines<T>(lines: readonly string[], what: string): T[] {
  let values: unknown[];
  try {
    values = lines.map((line) => JSON.parse(line) as unknown);
  } catch (err) {
    throw GatewayErrors.METEORZX_STORAGE_CORRUPT(`${what} holds invalid JSON: ${(err as Error).message}`, { cause: err });
  }
  const bad = values.findIndex((v) => typeof v !== 'object' || v === null || Array.isArray(v));
  if (bad >= 0) {
    const v = values[bad];
    const kind = v === null ? 'null' : Array.isArray(v) ? 'an array' : `a ${typeof v}`;
    throw GatewayErrors.METEORZX_STORAGE_CORRUPT(`${what} holds ${kind} on line ${bad + 1}, not a JSON object`);
  }
  return values as T[];
}
