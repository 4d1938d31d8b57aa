import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/** Small real servers the pull tests put around the agent and gateway. */

export interface Receiver {
  url: string;
  /** Every alert received, in order (each POST is a JSON array of them). */
  bodies: Record<string, unknown>[];
  /** Alerts per POST, in order; -1 for a body that was not a JSON array. */
  posts: number[];
  close(): Promise<void>;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function listen(server: Pick<Server, 'listen' | 'address'>): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function closeServer(server: Pick<Server, 'closeAllConnections' | 'close'>): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** PEM files of an https receiver: its certificate and key, and with `ca` the CA its clients' certificates must be signed by. */
export interface ReceiverTls {
  cert: string;
  key: string;
  ca?: string;
}

/** An alerts webhook: records every alert of the JSON arrays POSTed to it; over https with `tls`. */
export async function webhookReceiver(tls?: ReceiverTls): Promise<Receiver> {
  const bodies: Record<string, unknown>[] = [];
  const posts: number[] = [];
  const handle: RequestListener = (req, res) => {
    void readBody(req).then((body) => {
      const parsed = JSON.parse(body.toString('utf8')) as unknown;
      if (Array.isArray(parsed)) bodies.push(...(parsed as Record<string, unknown>[]));
      posts.push(Array.isArray(parsed) ? parsed.length : -1);
      res.writeHead(204).end();
    });
  };
  const server =
    tls === undefined
      ? createServer(handle)
      : createHttpsServer(
          {
            cert: readFileSync(tls.cert),
            key: readFileSync(tls.key),
            ...(tls.ca === undefined ? {} : { ca: readFileSync(tls.ca), requestCert: true, rejectUnauthorized: true }),
          },
          handle,
        );
  const port = await listen(server);
  return { url: `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}/alerts`, bodies, posts, close: () => closeServer(server) };
}

export interface DroppingProxy {
  url: string;
  /** POST bodies seen, in order (1-based index = position). */
  posts: number;
  dropped: number[];
  /** Events inside the swallowed bodies. */
  droppedEvents: number;
  /** Their seqs. */
  droppedSeqs: number[];
  /**
   * Points the proxy at a (re)started gateway. The gateway listens on port 0
   * and is known only once it runs: choosing a "free" port beforehand races
   * with every other test binding ports in parallel.
   */
  retarget(target: string): void;
  close(): Promise<void>;
}

/**
 * Sits between an agent's HTTP push and the gateway: forwards every POST,
 * except the chosen ones (1-based), which it swallows while answering the
 * agent 200 as if they were stored — events lost in transit.
 */
export async function droppingProxy(target: string | undefined, drop: ReadonlySet<number>): Promise<DroppingProxy> {
  let upstream = target;
  const state = { posts: 0, dropped: [] as number[], droppedEvents: 0, droppedSeqs: [] as number[] };
  const server = createServer((req, res) => {
    void readBody(req).then(async (body) => {
      state.posts += 1;
      const n = state.posts;
      if (req.method === 'POST' && drop.has(n)) {
        state.dropped.push(n);
        const text = (req.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body).toString('utf8');
        const lines = text.split('\n').filter((l) => l.trim() !== '');
        state.droppedEvents += lines.length;
        for (const line of lines) state.droppedSeqs.push((JSON.parse(line) as { seq: number }).seq);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ accepted: 0, duplicates: 0, rejected: [] }));
        return;
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'content-length') headers[k] = v;
      try {
        // No gateway yet: the same answer as a gateway that is down.
        if (upstream === undefined) throw new Error('no upstream yet');
        const answer = await fetch(`${upstream}${req.url ?? ''}`, { method: req.method ?? 'GET', headers, ...(req.method === 'POST' ? { body } : {}) });
        const text = Buffer.from(await answer.arrayBuffer());
        res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' }).end(text);
      } catch {
        res.writeHead(502).end();
      }
    });
  });
  const port = await listen(server);
  return {
    url: `http://127.0.0.1:${port}`,
    get posts() {
      return state.posts;
    },
    get dropped() {
      return state.dropped;
    },
    get droppedEvents() {
      return state.droppedEvents;
    },
    get droppedSeqs() {
      return state.droppedSeqs;
    },
    retarget(next: string) {
      upstream = next;
    },
    close: () => closeServer(server),
  };
}

export interface FakePullAgent {
  url: string;
  /** The `after` of every page asked for, in order. */
  asked: number[];
  close(): Promise<void>;
}

/**
 * An agent's pull API serving `chain` (seqs 1..n of one epoch) from `oldest`
 * on: GET /v1/status, and pages of the events after `after` (at most
 * `limit`), or a 410 naming `oldest` for seqs it no longer holds (`gone`:
 * the reason its answer gives, e.g. retention).
 */
export async function fakePullAgent(opts: { id: string; epoch: string; chain: readonly { seq?: number }[]; oldest: number; gone: string }): Promise<FakePullAgent> {
  const { id, epoch, chain, oldest, gone } = opts;
  const head = chain.length;
  const asked: number[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    if (url.pathname === '/v1/status') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id, epoch, head, delivered: head, oldest, bufferedEvents: 0, bufferedBytes: 0, push: { state: 'idle', lastError: null } }));
      return;
    }
    const after = Number(url.searchParams.get('after') ?? 0);
    const limit = Number(url.searchParams.get('limit') ?? 1000);
    asked.push(after);
    const headers = { 'x-meteorzx-epoch': epoch, 'x-meteorzx-head': String(head), 'x-meteorzx-oldest': String(oldest) };
    if (after + 1 < oldest) {
      res.writeHead(410, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify({ error: gone, code: 'METEORZX_PULL_GONE', oldest, epoch, head }));
      return;
    }
    const page = chain.filter((e) => (e.seq as number) > after).slice(0, limit);
    res.writeHead(200, { 'content-type': 'application/x-ndjson', ...headers });
    res.end(page.map((e) => `${JSON.stringify(e)}\n`).join(''));
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}`, asked, close: () => closeServer(server) };
}
