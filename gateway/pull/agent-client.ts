import { Agent as Dispatcher, request } from 'undici';
import type { AgentStatus, BatchItem, Limits } from '../../protocols/index.js';
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
  limits: Limits;
  timeoutMs?: number;
}

export class AgentClient {
  private readonly dispatcher: Dispatcher;

  constructor(private readonly options: AgentClientOptions) {
    const timeout = options.timeoutMs ?? 60_000;
    this.dispatcher = new Dispatcher({
      headersTimeout: timeout,
      bodyTimeout: timeout,
      connect: { timeout: Math.min(timeout, 10_000), ...(options.ca === undefined ? {} : { ca: options.ca }) },
    });
  }

  async status(): Promise<AgentStatus> {
    const text = await this.get('/v1/status');
    return JSON.parse(text.body) as AgentStatus;
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
    const res = await this.get(`/v1/events?${q.toString()}`, true);
    const pageEpoch = header(res.headers, 'x-meteorzx-epoch') ?? '';
    const head = Number(header(res.headers, 'x-meteorzx-head') ?? 0);
    const oldest = Number(header(res.headers, 'x-meteorzx-oldest') ?? 0);
    if (res.status === 410) {
      const body = safeJson(res.body) as { error?: string; oldest?: number; epoch?: string; head?: number } | undefined;
      throw new RangeGone(body?.error ?? 'range gone', body?.oldest ?? oldest, body?.epoch ?? pageEpoch, body?.head ?? head);
    }
    return { epoch: pageEpoch, head, oldest, ...decodePage(Buffer.from(res.body, 'utf8'), after, this.options.limits) };
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private async get(path: string, allowGone = false): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
    const target = `${this.options.url.replace(/\/+$/, '')}${path}`;
    const res = await request(target, {
      dispatcher: this.dispatcher,
      headers: this.options.token === undefined ? {} : { authorization: `Bearer ${this.options.token}` },
    });
    const body = await res.body.text();
    if (res.statusCode === 200 || (allowGone && res.statusCode === 410)) return { status: res.statusCode, headers: res.headers, body };
    const detail = (safeJson(body) as { error?: string } | undefined)?.error ?? body.slice(0, 200);
    throw new Error(`${this.options.url}${path.split('?')[0] ?? ''}: HTTP ${res.statusCode}: ${detail}`);
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
