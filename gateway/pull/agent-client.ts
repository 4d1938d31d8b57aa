import { Agent as Dispatcher, request } from 'undici';
import { parseRetryAfter } from '../../common/retry-after.js';
import { tlsCertificateError } from '../../common/tls-trust.js';
import { CHAIN_ALLOWANCE_BYTES, type AgentStatus, type BatchItem, type Limits } from '../../protocols/index.js';
import { decodePage } from './page-decode.js';

/** The agent's pull listener as the gateway sees it (DESIGN §5: GET /v1/status, GET /v1/events). */

export interface AgentPage {
  epoch: string;
  head: number;
  oldest: number;
  items: BatchItem[];
  /** The seq of each item, an undecodable one's too (see decodePage). */
  seqs: number[];
  /** Seq of the last event in the page, or `after` when empty. */
  lastSeq: number;
  /** Seq of the first event, when the page is not empty. */
  firstSeq?: number;
  /**
   * Seq ranges inside (after, lastSeq] the page stepped over: holes in the
   * agent's buffer (damage it recorded with its own `meteorzx.gap`). An
   * agent leaves out nothing else; a range it no longer holds is a 410.
   */
  skipped: [number, number][];
  /**
   * On an empty page: the agent's head, when it says every seq in (after, head] is a hole in its
   * buffer (`X-Meteorzx-Holes-To`). Absent otherwise, and from agents that predate the header.
   */
  holesTo?: number;
}

/** The agent answered 410: the range (or the whole epoch) is no longer held. */
export class RangeGone extends Error {
  constructor(
    message: string,
    readonly oldest: number,
    readonly epoch: string,
    readonly head: number,
  ) {
    super(message);
    this.name = 'RangeGone';
  }
}

export interface AgentClientOptions {
  url: string;
  token?: string | undefined;
  /** PEM of a private CA for https. */
  ca?: string | Buffer | undefined;
  /** PEM client certificate and key, for an agent whose pull listener requires one (mutual TLS). */
  clientCert?: { cert: Buffer; key: Buffer };
  limits: Limits;
  /** ms the agent may stay silent (connecting, before its headers, between body chunks). Default 60 s. */
  timeoutMs?: number;
  /** ms one request may take, whole answer included: a trickling agent cannot hold a run. Default 2 min. */
  deadlineMs?: number;
}

/** Most bytes a /v1/status answer (or an error body) may have. */
const SMALL_ANSWER_BYTES = 1 << 20;

type Answer = { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer };

/** The agent answered 503 or 429 with a Retry-After (e.g. METEORZX_PULL_BUSY): up, and asking to be asked again after `retryAfterMs`. */
export class AgentBusy extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message);
    this.name = 'AgentBusy';
  }
}

export class AgentClient {
  private readonly dispatcher: Dispatcher;
  private readonly inFlight = new Set<AbortController>();

  constructor(private readonly options: AgentClientOptions) {
    const timeout = options.timeoutMs ?? 60_000;
    this.dispatcher = new Dispatcher({
      headersTimeout: timeout,
      bodyTimeout: timeout,
      connect: { timeout: Math.min(timeout, 10_000), ...(options.ca === undefined ? {} : { ca: options.ca }), ...options.clientCert },
    });
  }

  async status(): Promise<AgentStatus> {
    const res = await this.get('/v1/status', SMALL_ANSWER_BYTES);
    return JSON.parse(res.body.toString('utf8')) as AgentStatus;
  }

  /**
   * One page of events with seq > after (and, when `epoch` is given, only
   * from that epoch): at most `limit` events and, when `maxBytes` is given,
   * about that many bytes (an agent that predates the parameter ignores it).
   */
  async page(after: number, limit: number, epoch?: string, maxBytes?: number): Promise<AgentPage> {
    const q = new URLSearchParams({
      after: String(after),
      limit: String(limit),
      ...(epoch === undefined ? {} : { epoch }),
      ...(maxBytes === undefined ? {} : { maxBytes: String(maxBytes) }),
    });
    // An honest page is at most `limit` stored lines (an agent that ignores maxBytes included); anything longer is refused.
    const cap = limit * (this.options.limits.maxEventBytes + CHAIN_ALLOWANCE_BYTES + 1) + SMALL_ANSWER_BYTES;
    const res = await this.get(`/v1/events?${q.toString()}`, cap, true);
    const pageEpoch = header(res.headers, 'x-meteorzx-epoch') ?? '';
    const head = Number(header(res.headers, 'x-meteorzx-head') ?? 0);
    const oldest = Number(header(res.headers, 'x-meteorzx-oldest') ?? 0);
    if (res.status === 410) {
      const body = safeJson(res.body.toString('utf8')) as { error?: string; oldest?: number; epoch?: string; head?: number } | undefined;
      throw new RangeGone(body?.error ?? 'range gone', body?.oldest ?? oldest, body?.epoch ?? pageEpoch, body?.head ?? head);
    }
    const page: AgentPage = { epoch: pageEpoch, head, oldest, ...decodePage(res.body, after, this.options.limits) };
    const holesTo = Number(header(res.headers, 'x-meteorzx-holes-to'));
    if (page.items.length === 0 && Number.isSafeInteger(holesTo) && holesTo > after) page.holesTo = holesTo;
    return page;
  }

  /** Ends every request in flight at once (a closing connector does not wait for an agent that trickles). */
  abort(): void {
    for (const controller of this.inFlight) controller.abort();
  }

  async close(): Promise<void> {
    this.abort();
    await this.dispatcher.close();
  }

  /**
   * One GET, its answer read whole but bounded: at most `maxBytes` (a body
   * larger is cut off with an error, not buffered until the heap gives
   * out) and within the deadline (undici's timeouts measure silence only:
   * one byte every few seconds would never trip them).
   */
  private async get(path: string, maxBytes: number, allowGone = false): Promise<Answer> {
    const target = `${this.options.url.replace(/\/+$/, '')}${path}`;
    const where = `${this.options.url}${path.split('?')[0] ?? ''}`;
    const deadline = this.options.deadlineMs ?? 120_000;
    // One controller per request, for the deadline and for abort(): not AbortSignal.any, which on Node 20
    // leaves an entry on a long-lived signal for every request.
    const controller = new AbortController();
    const signal = controller.signal;
    const timer = setTimeout(() => controller.abort(), deadline);
    this.inFlight.add(controller);
    let answer: Answer;
    try {
      const res = await request(target, {
        dispatcher: this.dispatcher,
        signal,
        headers: this.options.token === undefined ? {} : { authorization: `Bearer ${this.options.token}` },
      });
      const chunks: Buffer[] = [];
      let bytes = 0;
      for await (const chunk of res.body) {
        bytes += (chunk as Buffer).length;
        if (bytes > maxBytes) {
          res.body.destroy();
          throw new Error(`${where}: the answer is over ${maxBytes} bytes; refused`);
        }
        chunks.push(chunk as Buffer);
      }
      answer = { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks, bytes) };
    } catch (err) {
      if (signal.aborted) throw new Error(`${where}: no complete answer within ${deadline} ms, or the connector closed`, { cause: err });
      const tls = tlsCertificateError(err);
      if (tls?.untrusted === true) throw new Error(`${where}: ${tls.text}; trust its CA with pullFrom[].ca, or "ca" in POST /v1/pull (meteorzx pull --ca)`, { cause: err });
      if (tls !== undefined) throw new Error(`${where}: ${tls.text}`, { cause: err });
      throw err;
    } finally {
      clearTimeout(timer);
      this.inFlight.delete(controller);
    }
    if (answer.status === 200 || (allowGone && answer.status === 410)) return answer;
    const text = answer.body.subarray(0, SMALL_ANSWER_BYTES).toString('utf8');
    const detail = (safeJson(text) as { error?: string } | undefined)?.error ?? text.slice(0, 200);
    const message = `${where}: HTTP ${answer.status}: ${detail}`;
    const retryAfterMs = answer.status === 503 || answer.status === 429 ? parseRetryAfter(answer.headers['retry-after']) : undefined;
    if (retryAfterMs !== undefined) throw new AgentBusy(message, retryAfterMs);
    throw new Error(message);
  }
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
