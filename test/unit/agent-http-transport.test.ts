import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { chainEvent, type ChainedEvent } from '../../protocols/index.js';
import { HttpTransport } from '../../agent/push/http-transport.js';
import { redactUrl } from '../../common/url-credentials.js';
import type { StoredLine } from '../../agent/buffer/types.js';
import { Sender } from '../../agent/push/sender.js';
import { FakeBuffer, storedLine } from './agent-fake-buffer.js';

function events(n: number, agent = 'unit-agent', pad = 0): StoredLine[] {
  let prev: string | undefined;
  return Array.from({ length: n }, (_, i) => {
    const e = chainEvent(
      { id: `${agent}-${i + 1}`, type: 't', source: agent, time: '2026-01-01T00:00:00Z', agent, epoch: 'E1', seq: i + 1, data: { pad: 'x'.repeat(pad) } },
      prev,
    ) as ChainedEvent;
    prev = e.hash;
    return storedLine(e);
  });
}

interface Seen {
  headers: IncomingMessage['headers'];
  body: string;
}

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function gateway(answer: (seen: Seen) => { status: number; body?: unknown; headers?: Record<string, string> }) {
  const seen: Seen[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const body = (req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString();
      const s = { headers: req.headers, body };
      seen.push(s);
      const a = answer(s);
      res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
      res.end(JSON.stringify(a.body ?? {}));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/events`, seen };
}

function transport(url: string, extra: Partial<ConstructorParameters<typeof HttpTransport>[0]> = {}) {
  const t = new HttpTransport({ url, token: 'tok', gzipAboveBytes: 1024, ...extra });
  cleanup.push(() => t.close());
  return t;
}

describe('HTTP push transport', () => {
  it('sends the credentials of the push URL as Basic auth, and never shows the password in an error', async () => {
    const gw = await gateway(() => ({ status: 200, body: { accepted: 1 } }));
    const withCredentials = gw.url.replace('http://', 'http://relay:s%40cret@');
    const t = new HttpTransport({ url: withCredentials });
    cleanup.push(() => t.close());
    // Before, undici's Pool took the origin only: no Authorization header, a 401 from a proxy for ever.
    expect(await t.send(events(1))).toMatchObject({ kind: 'acked' });
    expect(gw.seen[0]?.headers.authorization).toBe(`Basic ${Buffer.from('relay:s@cret').toString('base64')}`);
    // A token wins: it is the gateway's own auth.
    const withToken = new HttpTransport({ url: withCredentials, token: 'tok' });
    cleanup.push(() => withToken.close());
    await withToken.send(events(1));
    expect(gw.seen[1]?.headers.authorization).toBe('Bearer tok');
    // Before, a connection error put the URL, password and all, into lastError (/v1/status) and the log.
    const down = new HttpTransport({ url: 'http://relay:s%40cret@127.0.0.1:1/v1/events' });
    cleanup.push(() => down.close());
    const outcome = await down.send(events(1));
    expect(outcome.kind).toBe('retry');
    expect(JSON.stringify(outcome)).not.toContain('cret');
    expect(JSON.stringify(outcome)).toContain('relay:***@127.0.0.1:1');
    // The MQTT transport's errors show its URL the same way.
    expect(redactUrl('mqtts://edge-7:secret@gw:8883')).toBe('mqtts://edge-7:***@gw:8883');
    expect(redactUrl('mqtt://gw:1883')).toBe('mqtt://gw:1883');
  });

  it('a receiver that answers 415 to a gzipped body gets it again uncompressed, and no more gzip after that', async () => {
    const gw = await gateway((seen) => (seen.headers['content-encoding'] === 'gzip' ? { status: 415, body: { error: 'unsupported content-encoding' } } : { status: 200, body: { accepted: 1 } }));
    const t = transport(gw.url);
    // Before, the 415 was a permanent refusal: the sender split the batch and skipped, with a gap event,
    // every event whose own line was over gzipAboveBytes, though the receiver took it uncompressed.
    expect(await t.send(events(3, 'a', 2000))).toMatchObject({ kind: 'acked' });
    expect(await t.send(events(2, 'b', 2000))).toMatchObject({ kind: 'acked' });
    expect(gw.seen.map((x) => x.headers['content-encoding'] ?? 'none')).toEqual(['gzip', 'none', 'none']);
    expect(gw.seen[1]?.body.split('\n').filter(Boolean)).toHaveLength(3);
  });

  it('POSTs NDJSON with the bearer token, gzips above the threshold, and a 2xx is an ack listing rejections', async () => {
    const gw = await gateway(() => ({ status: 200, body: { accepted: 2, duplicates: 0, rejected: [{ index: 1, error: 'bad' }] } }));
    const t = transport(gw.url);
    const small = events(2);
    expect(await t.send(small)).toEqual({ kind: 'acked', rejected: [{ index: 1, error: 'bad' }] });
    const big = events(20, 'unit-agent', 200);
    await t.send(big);
    expect(gw.seen[0]?.headers.authorization).toBe('Bearer tok');
    expect(gw.seen[0]?.headers['content-type']).toBe('application/x-ndjson');
    expect(gw.seen[0]?.headers['content-encoding']).toBeUndefined();
    expect(gw.seen[1]?.headers['content-encoding']).toBe('gzip');
    expect(gw.seen[1]?.body.trim().split('\n').map((l) => (JSON.parse(l) as ChainedEvent).seq)).toEqual(big.map((e) => e.seq));
  });

  it('classifies answers: 429/503 retry with Retry-After, 5xx/401 retry, 400/413 permanent, refused connection retry', async () => {
    const plan = [
      { status: 503, headers: { 'retry-after': '2' } },
      { status: 429, headers: { 'retry-after': '1' } },
      { status: 500 },
      { status: 401, body: { error: 'no token', code: 'METEORZX_UNAUTHORIZED' } },
      { status: 413, body: { error: 'too big', code: 'METEORZX_BODY_TOO_LARGE' } },
      { status: 400 },
    ];
    let n = 0;
    const gw = await gateway(() => plan[n++] ?? { status: 200 });
    const t = transport(gw.url);
    const outcomes = [];
    for (let i = 0; i < plan.length; i += 1) outcomes.push(await t.send(events(1)));
    expect(outcomes.map((o) => o.kind)).toEqual(['retry', 'retry', 'retry', 'retry', 'permanent', 'permanent']);
    expect(outcomes[0]).toMatchObject({ retryAfterMs: 2000 });
    expect(outcomes[1]).toMatchObject({ retryAfterMs: 1000 });
    expect(outcomes[3]).toMatchObject({ error: 'gateway answered 401: no token' });
    const dead = transport('http://127.0.0.1:9/v1/events', { timeoutMs: 2000 });
    const refused = await dead.send(events(1));
    expect(refused.kind).toBe('retry');
    expect(refused.kind === 'retry' && refused.error).toMatch(/ECONNREFUSED/);
  });

  /** A peer that answers the status at once, then writes its body with `write` and says whether the agent hung up before it ended. */
  async function streamingPeer(status: number, write: (res: ServerResponse, done: () => void) => void) {
    let hungUp!: (early: boolean) => void;
    const outcome = new Promise<boolean>((r) => (hungUp = r));
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(status, { 'content-type': 'application/json' });
        let ended = false;
        res.on('close', () => hungUp(!ended));
        write(res, () => {
          ended = true;
          res.end();
        });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(() => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    });
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/events`, hungUpEarly: outcome };
  }

  it('reads at most MAX_ANSWER_BYTES (4 MiB) of an answer: a 2xx with a 64 MiB body is an ack, the rest is not read into memory', async () => {
    const total = 64 * 1024 * 1024;
    const peer = await streamingPeer(200, (res, done) => {
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      let sent = 0;
      const pump = () => {
        while (sent < total) {
          sent += chunk.byteLength;
          if (!res.write(chunk)) return;
        }
        done();
      };
      res.on('drain', pump);
      pump();
    });
    const t = transport(peer.url);
    expect(await t.send(events(1))).toEqual({ kind: 'acked', rejected: [] });
    expect(await peer.hungUpEarly).toBe(true);
  });

  it('an answer sent a byte at a time gets timeoutMs in all, not timeoutMs between bytes', async () => {
    // 200 bytes 20 ms apart (4 s), each well within the 300 ms timeout of the one before.
    const peer = await streamingPeer(503, (res, done) => {
      let n = 0;
      const timer = setInterval(() => {
        res.write(' ');
        if ((n += 1) === 200) {
          clearInterval(timer);
          done();
        }
      }, 20);
      res.on('close', () => clearInterval(timer));
    });
    const t = transport(peer.url, { timeoutMs: 300 });
    const outcome = await t.send(events(1));
    expect(outcome.kind).toBe('retry');
    expect(await peer.hungUpEarly).toBe(true);
  });

  it('a batch a slow link cannot upload within timeoutMs is halved until it can, and every event is delivered once', async () => {
    // A gateway behind a slow link: it takes the request body at about 320 KB/s (16 KiB every 50 ms), then answers 200.
    const bodies: string[] = [];
    const sockets = new Set<Socket>();
    const server = createTcpServer((socket) => {
      sockets.add(socket);
      socket.pause();
      let data = Buffer.alloc(0);
      const timer = setInterval(() => {
        const chunk = socket.read() as Buffer | null;
        if (chunk === null) return;
        data = Buffer.concat([data, chunk.subarray(0, 16 * 1024)]);
        if (chunk.byteLength > 16 * 1024) socket.unshift(chunk.subarray(16 * 1024));
        const end = data.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/content-length: (\d+)/i.exec(data.subarray(0, end).toString())?.[1] ?? 0);
        if (data.byteLength < end + 4 + length) return;
        bodies.push(data.subarray(end + 4, end + 4 + length).toString());
        data = data.subarray(end + 4 + length);
        socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}');
      }, 50);
      socket.on('close', () => {
        clearInterval(timer);
        sockets.delete(socket);
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/events`;
    // 100 events of 4 KB: a 400 KB body, over a second on this link; the timeout is 400 ms.
    const buffer = new FakeBuffer();
    await buffer.append(Array.from({ length: 100 }, (_, i) => ({ type: 't', data: { i, pad: 'x'.repeat(4000) } })));
    const t = transport(url, { timeoutMs: 400, gzipAboveBytes: 1 << 30, maxInFlight: 1 });
    const sender = new Sender(buffer, t, { maxEvents: 100, maxWaitMs: 0, backoff: { initialMs: 1, maxMs: 10 }, breaker: { threshold: 100, cooldownMs: 1 } });
    cleanup.push(() => sender.close());
    await sender.start();
    await vi.waitUntil(() => buffer.delivered === 100, { timeout: 30_000, interval: 20 });
    // Bodies the link carried whole after the agent gave up on them are here too (the gateway's dedup drops those repeats).
    const sent = bodies.map((b) => b.trim().split('\n').map((l) => (JSON.parse(l) as ChainedEvent).seq));
    expect([...new Set(sent.flat())].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(Math.min(...sent.map((b) => b.length))).toBeLessThan(100);
  });
});
