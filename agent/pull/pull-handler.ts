import type { ServerResponse } from 'node:http';
import { NDJSON } from '../../protocols/index.js';
import { ndjsonOf } from '../buffer/event-line.js';
import type { AgentBuffer, StoredLine } from '../buffer/types.js';
import { AgentErrors } from '../errors.js';
import { sendError, sendJson } from '../http-helpers.js';

/** Headers every pull answer carries, so a client knows which chain it reads and how far it goes. */
export const EPOCH_HEADER = 'x-meteorzx-epoch';
export const HEAD_HEADER = 'x-meteorzx-head';
export const OLDEST_HEADER = 'x-meteorzx-oldest';
/**
 * On an empty answer whose every seq in (after, head] is a recorded hole: that head. Without it the
 * answer would look like seqs the agent failed to send, and a puller would record them lost a second time.
 */
export const HOLES_TO_HEADER = 'x-meteorzx-holes-to';

export interface PullHandlerOptions {
  buffer: AgentBuffer;
  /** Most events one answer may hold (a larger `limit` is capped to it). Default 10,000. */
  maxLimit?: number;
  /** Events read from the buffer per chunk written; bounds memory whatever `limit` is. Default 500. */
  chunkEvents?: number;
  /** About how many bytes one chunk holds. Default 1 MiB. */
  chunkBytes?: number;
  /** Largest `maxBytes` a client may ask for (a larger one is capped to it). Default 16 MiB. */
  maxPageBytes?: number;
  /** Answer bytes all pulls may hold at once; without it, unbounded. */
  budget?: PullBudget;
  /** Retry-After on a 503, seconds. Default 1. */
  retryAfterSeconds?: number;
}

/**
 * The answer bytes pulls in progress may hold, shared by all of them. A
 * capped page is held whole (up to its cap) and any answer holds a chunk
 * while a slow client drains it: without a bound, a few clients asking for
 * 16 MiB pages and never reading pinned 16 MiB each, for as long as they
 * kept the connection. Each answer reserves what it may hold before reading
 * anything; past the budget it gets a 503 + Retry-After instead.
 */
export class PullBudget {
  private held = 0;

  constructor(readonly maxBytes: number) {}

  /** Reserves `bytes`; false when that would go past the budget (nothing reserved). */
  hold(bytes: number): boolean {
    if (this.held + bytes > this.maxBytes) return false;
    this.held += bytes;
    return true;
  }

  release(bytes: number): void {
    this.held -= bytes;
  }

  get heldBytes(): number {
    return this.held;
  }
}

/** The 410 body: what the client needs to resume (or to record the loss). */
export interface PullGoneBody {
  error: string;
  code: string;
  oldest: number;
  epoch: string;
  head: number;
}

/**
 * `GET /v1/events?after=SEQ&limit=N[&epoch=E]` (DESIGN §5): buffered events
 * with seq > after, in seq order, delivered-but-retained included, as NDJSON.
 * The answer is streamed chunk by chunk with backpressure, so a 10,000-event
 * page never sits in memory whole. A range retention already deleted (or an
 * epoch this buffer no longer is) answers 410 naming the oldest seq still
 * held: a puller must learn of the loss, never get a silently shorter answer.
 * Holes (damage, each already named by a `buffer-corrupt` gap event) are
 * stepped over: `limit` counts events sent, and a seq missing between two
 * lines is always a hole; holes that reach the head leave an empty answer
 * that says so (HOLES_TO_HEADER).
 */
export async function servePull(url: URL, method: string, res: ServerResponse, options: PullHandlerOptions): Promise<void> {
  const { buffer } = options;
  const max = options.maxLimit ?? 10_000;
  const after = intParam(url, 'after', 0);
  const limit = intParam(url, 'limit', 1000);
  const maxBytes = intParam(url, 'maxBytes', Number.POSITIVE_INFINITY);
  if (after === undefined || limit === undefined || limit < 1 || maxBytes === undefined || maxBytes < 1) {
    sendError(res, AgentErrors.METEORZX_BAD_REQUEST('after, limit and maxBytes must be integers ≥ 0 (limit and maxBytes ≥ 1)'));
    return;
  }
  const state = buffer.state();
  const wantEpoch = url.searchParams.get('epoch');
  const headers = { [EPOCH_HEADER]: state.epoch, [HEAD_HEADER]: String(state.head), [OLDEST_HEADER]: String(state.oldest) };
  if ((wantEpoch !== null && wantEpoch !== '' && wantEpoch !== state.epoch) || (after + 1 < state.oldest && after < state.head)) {
    const why =
      wantEpoch !== null && wantEpoch !== '' && wantEpoch !== state.epoch
        ? `epoch ${wantEpoch} is no longer held (the buffer is epoch ${state.epoch})`
        : `seqs ${after + 1}..${state.oldest - 1} were deleted by retention; the oldest seq still held is ${state.oldest}`;
    const err = AgentErrors.METEORZX_PULL_GONE(why);
    const body: PullGoneBody = { error: err.message, code: err.code, oldest: state.oldest, epoch: state.epoch, head: state.head };
    sendJson(res, 410, body, headers);
    return;
  }
  const page = pageExtent(after, Math.min(limit, max), state.head, buffer.holeRanges());
  const cap = Number.isFinite(maxBytes) ? Math.min(maxBytes, options.maxPageBytes ?? 16 << 20) : undefined;
  if (page.count === 0 || (cap === undefined && method === 'HEAD')) {
    sendPage(res, method, headers, state.head, after, page);
    return;
  }
  // What this answer may hold: its whole page when capped, else about a chunk (and a line over it).
  const reserve = cap ?? (options.chunkBytes ?? 1 << 20);
  const budget = options.budget;
  if (budget !== undefined && !budget.hold(reserve)) {
    const err = AgentErrors.METEORZX_PULL_BUSY(`pulls in progress hold ${budget.heldBytes} answer bytes (the limit is ${budget.maxBytes}); retry shortly`);
    sendError(res, err, { 'retry-after': String(options.retryAfterSeconds ?? 1) });
    return;
  }
  const held = { bytes: reserve };
  try {
    if (cap !== undefined) await sendCapped(res, method, headers, buffer, after, page.last, cap, options, held);
    else if (sendPage(res, method, headers, state.head, after, page)) await stream(res, buffer, after, page.last, options);
  } finally {
    budget?.release(held.bytes);
  }
}

/** Writes the head of an uncapped answer; true when its events are still to be streamed. */
function sendPage(res: ServerResponse, method: string, headers: Record<string, string>, head: number, after: number, page: { count: number; last: number }): boolean {
  // Known before the first byte: the seqs held after `after` are …head minus the recorded holes (damage the
  // agent already named with a buffer-corrupt gap), so a page steps over a hole instead of stopping at it.
  // Nothing to send although after < head: pageExtent found every seq up to the head inside a hole.
  const extent = page.count > 0 ? { 'x-last-seq': String(page.last) } : after < head ? { [HOLES_TO_HEADER]: String(head) } : {};
  res.writeHead(200, { 'content-type': NDJSON, ...headers, ...extent });
  if (method === 'HEAD' || page.count === 0) {
    res.end();
    return false;
  }
  return true;
}

/**
 * The extent of a page: the first `limit` seqs of (after, head] outside
 * every hole, as their number and the last of them (`after` when none).
 */
export function pageExtent(after: number, limit: number, head: number, holes: readonly (readonly [number, number])[]): { count: number; last: number } {
  let at = after; // every seq ≤ at is counted or a hole
  let count = 0;
  let last = after;
  for (const [from, to] of holes) {
    if (to <= at) continue;
    if (at >= head) break;
    const held = Math.max(0, Math.min(from - 1, head) - at);
    if (count + held >= limit) return { count: limit, last: at + (limit - count) };
    if (held > 0) last = at + held;
    count += held;
    at = Math.max(at, Math.min(to, head));
  }
  const take = Math.min(Math.max(0, head - at), limit - count);
  return take > 0 ? { count: count + take, last: at + take } : { count, last };
}

/** The first seq after `seq` outside every hole. */
function nextHeld(seq: number, holes: readonly (readonly [number, number])[]): number {
  let s = seq + 1;
  for (const [from, to] of holes) if (s >= from && s <= to) s = to + 1;
  return s;
}

/**
 * A page capped at `maxBytes` bytes of NDJSON (UTF-8, as sent; a first line
 * larger than the cap still goes, alone, so it cannot stall a puller).
 * Where it ends is known only once read, so it is read whole — at most the
 * cap — and X-Last-Seq names its real last seq; then it is written chunk by
 * chunk.
 */
async function sendCapped(
  res: ServerResponse,
  method: string,
  headers: Record<string, string>,
  buffer: AgentBuffer,
  after: number,
  last: number,
  maxBytes: number,
  options: PullHandlerOptions,
  held: { bytes: number },
): Promise<void> {
  const page: StoredLine[][] = [];
  let bytes = 0;
  for await (const chunk of chunks(buffer, after, last, options, maxBytes)) {
    page.push(chunk);
    for (const line of chunk) bytes += line.line.length + 1;
  }
  // The cap was reserved; the page, read, may be far smaller (UTF-16 units: at most its UTF-8 bytes).
  if (bytes < held.bytes) {
    options.budget?.release(held.bytes - bytes);
    held.bytes = bytes;
  }
  const sentLast = page.at(-1)?.at(-1)?.seq;
  res.writeHead(200, { 'content-type': NDJSON, ...headers, ...(sentLast === undefined ? {} : { 'x-last-seq': String(sentLast) }) });
  if (method === 'HEAD') {
    res.end();
    return;
  }
  // Chunk by chunk, as read: the page's lines are held once, not joined again into one body.
  for (const chunk of page) {
    if (res.destroyed) return;
    if (!res.write(ndjsonOf(chunk))) await drained(res);
  }
  res.end();
}

async function stream(res: ServerResponse, buffer: AgentBuffer, after: number, last: number, options: PullHandlerOptions): Promise<void> {
  let sent = after;
  for await (const chunk of chunks(buffer, after, last, options)) {
    if (res.destroyed) return;
    if (!res.write(ndjsonOf(chunk))) await drained(res);
    sent = (chunk.at(-1) as StoredLine).seq;
  }
  // Its X-Last-Seq went out before the first line: an answer ending short of it (drop-oldest or retention deleted
  // what it was about to read) is cut off, so the client sees it incomplete, not complete and shorter than said.
  // Unless what it lacks is a hole this read found (a block that no longer decodes, recorded with its gap
  // event before the read went on): then it is complete, and the next page steps over the hole. Cut off, the
  // page failed for every puller the first time the damage was met.
  if (sent < last && nextHeld(sent, buffer.holeRanges()) <= last) res.destroy();
  else res.end();
}

/**
 * The page's lines after `after` up to `last`, chunk by chunk, as many whole lines as fit in `maxBytes`
 * bytes of UTF-8 (newlines included; measured only when a cap is given).
 */
async function* chunks(buffer: AgentBuffer, after: number, last: number, options: PullHandlerOptions, maxBytes = Number.POSITIVE_INFINITY): AsyncGenerator<StoredLine[]> {
  const chunkEvents = options.chunkEvents ?? 500;
  const chunkBytes = options.chunkBytes ?? 1 << 20;
  const capped = Number.isFinite(maxBytes);
  let cursor = after;
  let bytes = 0;
  let taken = 0;
  while (cursor < last && bytes < maxBytes) {
    const lines = await buffer.readLines(cursor, Math.min(chunkEvents, last - cursor), Math.min(chunkBytes, maxBytes - bytes));
    // Only a recorded hole (read after the read: it may have just found one) may lie between two lines sent.
    // Anything else missing — retention moved past the cursor while streaming — stops short rather than
    // skip; the next pull gets the 410.
    const holes = buffer.holeRanges();
    let n = 0;
    while (n < lines.length && (lines[n] as StoredLine).seq <= last && (lines[n] as StoredLine).seq === nextHeld(cursor, holes)) {
      const line = lines[n] as StoredLine;
      const size = capped ? Buffer.byteLength(line.line) + 1 : 0;
      // readLines lets its first line over its budget; only the page's first may be.
      if (taken > 0 && bytes + size > maxBytes) break;
      cursor = line.seq;
      bytes += size;
      taken += 1;
      n += 1;
    }
    if (n === 0) return;
    yield n === lines.length ? lines : lines.slice(0, n);
    if (n < lines.length && cursor < last) return;
  }
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

function intParam(url: URL, name: string, fallback: number): number | undefined {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) ? n : undefined;
}
