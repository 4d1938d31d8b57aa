import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { BufferState, StoredLine } from '../../agent/buffer/types.js';
import { CommandRunner, MAX_PENDING_COMMANDS } from '../../agent/push/commands.js';
import type { PushTransport, SendOutcome } from '../../agent/push/types.js';
import { pageExtent, servePull } from '../../agent/pull/pull-handler.js';
import type { ChainedEvent } from '../../protocols/index.js';
import { FakeBuffer } from './agent-fake-buffer.js';

/** The agent's side of issue 5: the pull API handler and the command runner. */

class RetainingBuffer extends FakeBuffer {
  reads: { after: number; limit: number }[] = [];
  override async read(after: number, limit: number): Promise<ChainedEvent[]> {
    this.reads.push({ after, limit });
    return super.read(after, limit);
  }
  override state(): BufferState {
    return { ...super.state(), oldest: this.droppedUpTo + 1 };
  }
}

let server: Server | undefined;

async function serve(buffer: RetainingBuffer, maxLimit = 10_000): Promise<string> {
  server = createServer((req, res) => {
    void servePull(new URL(req.url ?? '/', 'http://agent'), req.method ?? 'GET', res, { buffer, maxLimit, chunkEvents: 100 });
  });
  await new Promise<void>((r) => (server as Server).listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${((server as Server).address() as AddressInfo).port}`;
}

afterEach(async () => {
  const s = server;
  server = undefined;
  if (s === undefined) return;
  s.closeAllConnections();
  await new Promise((r) => s.close(r));
});

function seqs(text: string): number[] {
  return text
    .trim()
    .split('\n')
    .filter((l) => l)
    .map((l) => (JSON.parse(l) as { seq: number }).seq);
}

describe('agent pull API (GET /v1/events)', () => {
  it('streams seq > after in order, in bounded chunks, with epoch and head headers', async () => {
    const buffer = new RetainingBuffer();
    await buffer.fill(1000);
    await buffer.ack(1000); // delivered-but-retained events are served too
    const url = await serve(buffer);
    const res = await fetch(`${url}/v1/events?after=10&limit=950`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-meteorzx-epoch')).toBe(buffer.state().epoch);
    expect(res.headers.get('x-meteorzx-head')).toBe('1000');
    expect(res.headers.get('x-last-seq')).toBe('960');
    expect(seqs(await res.text())).toEqual(Array.from({ length: 950 }, (_, i) => 11 + i));
    // Never one read for the whole page: chunks of at most chunkEvents.
    expect(Math.max(...buffer.reads.map((r) => r.limit))).toBeLessThanOrEqual(100);
    expect(buffer.reads.length).toBeGreaterThanOrEqual(10);
  });

  it('caps limit', async () => {
    const buffer = new RetainingBuffer();
    await buffer.fill(50);
    const url = await serve(buffer, 20);
    expect(seqs(await (await fetch(`${url}/v1/events?after=0&limit=1000`)).text())).toHaveLength(20);
  });

  it('answers 410 naming the oldest seq held when the range was deleted, and for another epoch', async () => {
    const buffer = new RetainingBuffer();
    await buffer.fill(30);
    buffer.droppedUpTo = 10;
    const url = await serve(buffer);
    const gone = await fetch(`${url}/v1/events?after=5`);
    expect(gone.status).toBe(410);
    expect(await gone.json()).toMatchObject({ code: 'METEORZX_PULL_GONE', oldest: 11, head: 30 });
    // after = oldest - 1 is fine: nothing before it is asked for.
    expect(seqs(await (await fetch(`${url}/v1/events?after=10&limit=5`)).text())).toEqual([11, 12, 13, 14, 15]);
    expect((await fetch(`${url}/v1/events?after=10&epoch=other`)).status).toBe(410);
    expect((await fetch(`${url}/v1/events?after=x`)).status).toBe(400);
  });

  it('steps over recorded holes: the page holds limit events, X-Last-Seq is the last one sent', async () => {
    const buffer = new RetainingBuffer();
    await buffer.fill(60);
    buffer.holes = [
      [11, 20],
      [35, 36],
    ];
    const url = await serve(buffer);
    // A cursor just before a hole: the page starts after it (before the fix: an empty 200 claiming X-Last-Seq 30).
    const page = await fetch(`${url}/v1/events?after=10&limit=10`);
    expect(page.headers.get('x-last-seq')).toBe('30');
    expect(seqs(await page.text())).toEqual([21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
    // A hole inside the page, crossed between chunks (chunkEvents 100 here, so also inside one).
    const across = await fetch(`${url}/v1/events?after=30&limit=8`);
    expect(across.headers.get('x-last-seq')).toBe('40');
    expect(seqs(await across.text())).toEqual([31, 32, 33, 34, 37, 38, 39, 40]);
    const all = await fetch(`${url}/v1/events?after=0&limit=1000`);
    expect(all.headers.get('x-last-seq')).toBe('60');
    expect(seqs(await all.text())).toHaveLength(48);
    // Ending on a hole: HEAD is enough to see the extent.
    const head = await fetch(`${url}/v1/events?after=0&limit=10`, { method: 'HEAD' });
    expect(head.headers.get('x-last-seq')).toBe('10');
  });

  it('caps a page at about maxBytes (a larger line goes alone), X-Last-Seq naming its real last seq', async () => {
    const buffer = new RetainingBuffer();
    await buffer.fill(300);
    buffer.holes = [[5, 6]];
    const url = await serve(buffer);
    const cap = 30_000;
    const capped = await fetch(`${url}/v1/events?after=0&limit=1000&maxBytes=${cap}`);
    const text = await capped.text();
    const got = seqs(text);
    // As many whole lines as fit: the next one (a few hundred bytes) would not have.
    expect(text.length).toBeLessThanOrEqual(cap);
    expect(text.length).toBeGreaterThan(cap - 1000);
    expect(got.length).toBeLessThan(298);
    expect(got.slice(0, 5)).toEqual([1, 2, 3, 4, 7]);
    expect(capped.headers.get('x-last-seq')).toBe(String(got.at(-1)));
    const one = await fetch(`${url}/v1/events?after=10&limit=5&maxBytes=1`);
    expect({ seqs: seqs(await one.text()), lastSeq: one.headers.get('x-last-seq') }).toEqual({ seqs: [11], lastSeq: '11' });
    expect((await fetch(`${url}/v1/events?after=0&maxBytes=0`)).status).toBe(400);
    // HEAD gives the same extent.
    expect((await fetch(`${url}/v1/events?after=10&limit=5&maxBytes=1`, { method: 'HEAD' })).headers.get('x-last-seq')).toBe('11');
  });

  it('caps a page of multi-byte lines at maxBytes UTF-8 bytes, also when the page spans several reads', async () => {
    const buffer = new RetainingBuffer();
    // 'é' is 2 bytes, '€' 3, '😀' 4 (two UTF-16 units): a mix, one line per event.
    await buffer.append(Array.from({ length: 40 }, (_, i) => ({ id: `u-${i}`, type: 't', data: { text: ['é', '€', '😀'][i % 3]?.repeat(200) } })));
    server = createServer((req, res) => void servePull(new URL(req.url ?? '/', 'http://agent'), req.method ?? 'GET', res, { buffer, chunkEvents: 2 }));
    await new Promise<void>((r) => (server as Server).listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${((server as Server).address() as AddressInfo).port}`;
    const sizes = (await buffer.readLines(0, 100)).map((l) => Buffer.byteLength(l.line) + 1);
    for (const cap of [5_000, 9_999, 20_000]) {
      let fit = 0;
      let total = 0;
      while (fit < sizes.length && total + (sizes[fit] as number) <= cap) total += sizes[fit++] as number;
      const res = await fetch(`${url}/v1/events?after=0&limit=100&maxBytes=${cap}`);
      const body = Buffer.from(await res.arrayBuffer());
      expect({ cap, bytes: body.length, lastSeq: res.headers.get('x-last-seq') }).toEqual({ cap, bytes: total, lastSeq: String(fit) });
    }
  });

  it('page extent: the first limit seqs outside the holes', () => {
    const holes: [number, number][] = [
      [3, 4],
      [8, 12],
    ];
    expect(pageExtent(0, 5, 20, holes)).toEqual({ count: 5, last: 7 });
    expect(pageExtent(2, 4, 20, holes)).toEqual({ count: 4, last: 13 });
    expect(pageExtent(7, 100, 12, holes)).toEqual({ count: 0, last: 7 });
    expect(pageExtent(7, 100, 10, holes)).toEqual({ count: 0, last: 7 });
    expect(pageExtent(0, 100, 14, holes)).toEqual({ count: 7, last: 14 });
    expect(pageExtent(0, 100, 14, [])).toEqual({ count: 14, last: 14 });
    expect(pageExtent(14, 100, 14, holes)).toEqual({ count: 0, last: 14 });
  });

  it('cuts off an answer that drop-oldest overtakes while it streams, rather than end it short of its X-Last-Seq', async () => {
    const buffer = new RetainingBuffer();
    await buffer.fill(1000);
    const readLines = buffer.readLines.bind(buffer);
    let reads = 0;
    buffer.readLines = async (after, limit, maxBytes) => {
      reads += 1;
      // After the first chunk went out, drop-oldest deletes the seqs the answer was about to read.
      if (reads === 2) buffer.droppedUpTo = 250;
      return readLines(after, limit, maxBytes);
    };
    const url = await serve(buffer);
    const res = await fetch(`${url}/v1/events?after=0&limit=500`);
    const body = await res.text().then(
      (text) => ({ complete: true, last: seqs(text).at(-1) }),
      () => ({ complete: false }),
    );
    // Before the fix: a complete answer of seqs 1..100 under X-Last-Seq 500; a client paging by the header skipped 101..250 unaware.
    expect({ lastSeqHeader: res.headers.get('x-last-seq'), body }).toEqual({ lastSeqHeader: '500', body: { complete: false } });
  });

  it('answers an empty 200 past the head', async () => {
    const buffer = new RetainingBuffer();
    await buffer.fill(3);
    const url = await serve(buffer);
    const res = await fetch(`${url}/v1/events?after=3`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');
  });
});

class RecordingTransport implements PushTransport {
  readonly name = 'fake';
  readonly maxInFlight = 1;
  sent: number[][] = [];
  failNext = 0;
  listener: ((payload: Buffer) => void) | undefined;
  async start(): Promise<void> {}
  async send(events: readonly StoredLine[]): Promise<SendOutcome> {
    if (this.failNext > 0) {
      this.failNext -= 1;
      return { kind: 'retry', error: 'down' };
    }
    this.sent.push(events.map((e) => e.seq));
    return { kind: 'acked', rejected: [] };
  }
  onCommand(listener: (payload: Buffer) => void): void {
    this.listener = listener;
  }
  async close(): Promise<void> {}
}

describe('agent command channel (audit/<id>/cmd)', () => {
  it('re-pushes exactly the asked range through the transport, leaving the delivered cursor alone', async () => {
    const buffer = new RetainingBuffer();
    await buffer.fill(100);
    await buffer.ack(100);
    const transport = new RecordingTransport();
    transport.failNext = 1;
    const runner = new CommandRunner({ buffer, transport, batchEvents: 10, batchBytes: 1 << 20, retryDelayMs: 1 });
    runner.attach();
    transport.listener?.(Buffer.from(JSON.stringify({ op: 'pull', after: 20, until: 45, epoch: buffer.state().epoch })));
    await runner.idle();
    expect(transport.sent.flat()).toEqual(Array.from({ length: 25 }, (_, i) => 21 + i));
    expect(Math.max(...transport.sent.map((b) => b.length))).toBeLessThanOrEqual(10);
    expect(buffer.state().delivered).toBe(100);
  });

  it('a flood of commands queues at most MAX_PENDING_COMMANDS re-pushes, a repeat of a waiting one none', async () => {
    const buffer = new RetainingBuffer();
    await buffer.fill(100);
    const transport = new RecordingTransport();
    const runner = new CommandRunner({ buffer, transport, batchEvents: 1000, batchBytes: 1 << 20 });
    for (let i = 0; i < 1000; i++) runner.receive(JSON.stringify({ op: 'pull', after: 0 }));
    for (let i = 0; i < 1000; i++) runner.receive(JSON.stringify({ op: 'pull', after: i % 50, until: 60 }));
    await runner.idle();
    // One after:0 (its 999 repeats wait as it does), then 15 of the 50 distinct ranges: one batch each.
    expect(transport.sent.length).toBe(MAX_PENDING_COMMANDS);
    expect(transport.sent.slice(0, 2).map((b) => [b[0], b.at(-1)])).toEqual([
      [1, 100],
      [1, 60],
    ]);
    // Once run, a command may be asked for again.
    runner.receive(JSON.stringify({ op: 'pull', after: 0 }));
    await runner.idle();
    expect(transport.sent.length).toBe(MAX_PENDING_COMMANDS + 1);
  });

  it('ignores invalid commands and pulls for another epoch', async () => {
    const buffer = new RetainingBuffer();
    await buffer.fill(10);
    const transport = new RecordingTransport();
    const runner = new CommandRunner({ buffer, transport, batchEvents: 10, batchBytes: 1 << 20 });
    runner.receive('not json');
    runner.receive(JSON.stringify({ op: 'pull', after: 0, epoch: 'old-epoch' }));
    await runner.idle();
    expect(transport.sent).toEqual([]);
  });
});

describe('pull API over TLS with a token (agent StatusServer + gateway AgentClient)', () => {
  it('serves HTTPS when pull.tls is set, and the gateway side pulls through it with its CA and token', async () => {
    const { execFileSync } = await import('node:child_process');
    const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { StatusServer } = await import('../../agent/status/server.js');
    const { AgentMetrics } = await import('../../agent/metrics.js');
    const { AgentClient } = await import('../../gateway/pull/agent-client.js');
    const { DEFAULT_LIMITS } = await import('../../protocols/index.js');
    const dir = mkdtempSync(join(tmpdir(), 'meteorzx-pull-tls-'));
    try {
      const key = join(dir, 'key.pem');
      const cert = join(dir, 'cert.pem');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], {
        stdio: 'ignore',
      });
      const buffer = new RetainingBuffer();
      await buffer.fill(12);
      const status = new StatusServer({
        listen: { host: '127.0.0.1', port: 0 },
        token: 'pull-secret',
        tls: { cert: readFileSync(cert), key: readFileSync(key) },
        status: () => ({ ...buffer.state(), push: { state: 'disabled', lastError: null } }),
        metrics: new AgentMetrics({ buffer: () => buffer.state(), push: () => 'disabled' }),
        buffer,
      });
      await status.start();
      const url = `https://127.0.0.1:${status.address().port}`;
      try {
        const client = new AgentClient({ url, token: 'pull-secret', ca: readFileSync(cert), limits: DEFAULT_LIMITS });
        const page = await client.page(2, 5);
        expect(page.items.map((i) => (i.value as { seq: number }).seq)).toEqual([3, 4, 5, 6, 7]);
        expect(page.head).toBe(12);
        await client.close();
        const wrong = new AgentClient({ url, token: 'nope', ca: readFileSync(cert), limits: DEFAULT_LIMITS });
        await expect(wrong.page(0, 1)).rejects.toThrow(/401/);
        await wrong.close();
      } finally {
        await status.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
