import { promisify } from 'node:util';
import { deflate, inflate } from 'node:zlib';
import type { CustodyRecord, StoredEvent } from '../../../protocols/index.js';
import { GatewayErrors } from '../../errors.js';

const deflateAsync = promisify(deflate);
const inflateAsync = promisify(inflate);

/**
 * A block is the lines of one commit (canonical JSON, one record per line —
 * canonical JSON escapes every newline inside strings) deflated together.
 * zlib's format (not raw deflate) carries an Adler-32 checksum, so a flipped
 * byte on disk fails to decode instead of yielding different events.
 * Compression runs on libuv's thread pool, off the event loop.
 */
export async function encodeLines(lines: readonly string[], level: number): Promise<Buffer> {
  return deflateAsync(Buffer.from(lines.join('\n')), { level });
}

export async function decodeLines(block: Uint8Array, what: string): Promise<string[]> {
  let text: string;
  try {
    text = (await inflateAsync(block)).toString('utf8');
  } catch (err) {
    throw GatewayErrors.METEORZX_STORAGE_CORRUPT(`${what} cannot be decoded: ${(err as Error).message}`, { cause: err });
  }
  return text === '' ? [] : text.split('\n');
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

function parseLines<T>(lines: readonly string[], what: string): T[] {
  try {
    return lines.map((line) => JSON.parse(line) as T);
  } catch (err) {
    throw GatewayErrors.METEORZX_STORAGE_CORRUPT(`${what} holds invalid JSON: ${(err as Error).message}`, { cause: err });
  }
}
