import type { ServerResponse } from 'node:http';
import { NDJSON } from '../../protocols/index.js';
import { ndjsonOf } from '../buffer/event-line.js';
import type { AgentBuffer } from '../buffer/types.js';
import { AgentErrors } from '../errors.js';
import { sendError, sendJson } from '../http-helpers.js';

/** Headers every pull answer carries, so a client knows which chain it reads and how far it goes. */
export const EPOCH_HEADER = 'x-meteorzx-epoch';
export const HEAD_HEADER = 'x-meteorzx-head';
export const OLDEST_HEADER = 'x-meteorzx-oldest';

export interface PullHandlerOptions {
  buffer: AgentBuffer;
  /** Most events one answer may hold (a larger `limit` is capped to it). Default 10,000. */
  maxLimit?: number;
  /** Events read from the buffer per chunk written; bounds memory whatever `limit` is. Default 500. */
  chunkEvents?: number;
  /** About how many bytes one chunk holds. Default 1 MiB. */
  chunkBytes?: number;
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
 */
export async function servePull(url: URL, method: string, res: ServerResponse, options: PullHandlerOptions): Promise<void> {
  const { buffer } = options;
  const max = options.maxLimit ?? 10_000;
  const after = intParam(url, 'after', 0);
  const limit = intParam(url, 'limit', 1000);
  if (after === undefined || limit === undefined || limit < 1) {
    sendError(res, AgentErrors.METEORZX_BAD_REQUEST('after and limit must be integers ≥ 0 (limit ≥ 1)'));
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
  const count = Math.max(0, Math.min(Math.min(limit, max), state.head - after));
  // The buffer holds oldest..head without holes, so the last seq is known before the first byte.
  res.writeHead(200, { 'content-type': NDJSON, ...headers, ...(count > 0 ? { 'x-last-seq': String(after + count) } : {}) });
  if (method === 'HEAD' || count === 0) {
    res.end();
    return;
  }
  await stream(res, buffer, after, count, options);
}

async function stream(res: ServerResponse, buffer: AgentBuffer, after: number, count: number, options: PullHandlerOptions): Promise<void> {
  const chunkEvents = options.chunkEvents ?? 500;
  const chunkBytes = options.chunkBytes ?? 1 << 20;
  let cursor = after;
  let left = count;
  while (left > 0 && !res.destroyed) {
    const events = await buffer.readLines(cursor, Math.min(chunkEvents, left), chunkBytes);
    const first = events[0];
    // Retention moved past the cursor while streaming: stop short rather than skip; the next pull gets the 410.
    if (first === undefined || first.seq !== cursor + 1) break;
    cursor = (events.at(-1) as (typeof events)[number]).seq;
    left -= events.length;
    if (!res.write(ndjsonOf(events))) await drained(res);
  }
  res.end();
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
