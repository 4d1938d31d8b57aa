import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LevelBuffer } from '../../agent/buffer/level-buffer.js';
import { servePull } from '../../agent/pull/pull-handler.js';
import type { Alert } from '../../gateway/alerts/alert.js';
import { Backfill, LossIndex, subtract } from '../../gateway/pull/backfill.js';
import { PullConnector } from '../../gateway/pull/connector.js';
import { PullStore } from '../../gateway/pull/pull-store.js';
import { PullScheduler, staggerOffset, type Timers } from '../../gateway/pull/scheduler.js';
import { GatewayMetrics } from '../../gateway/metrics.js';
import { parsePullRequest } from '../../gateway/http/routes/pull.js';
import type { IngestContext, Ingestor } from '../../gateway/pipeline/ingestor.js';
import { DEFAULT_LIMITS, type BatchItem, type IngestResponse, type EpochStatus } from '../../protocols/index.js';

/** Gateway side of issue 5: connector lock, checkpoints, retries, schedule, backfill ranges. */

const logger = pino({ level: 'silent' });

/** A fake agent pull API that is slow on purpose and records whether two requests ever overlap. */
class FakeAgent {
  server: Server;
  epoch = 'E1';
  head = 250;
  down = false;
  /** Answer /v1/status with a 503 instead (an agent that is up but failing), as it stands when the request arrives. */
  failStatus = false;
  /** Answer this many more requests with 503 + Retry-After (the agent's METEORZX_PULL_BUSY). */
  busyAnswers = 0;
  retryAfter = '1';
  /** ms before each answer. */
  delayMs = 5;
  inflight = 0;
  maxInflight = 0;
  requests: string[] = [];
  url = '';

  constructor() {
    this.server = createServer((req, res) => {
      if (this.down) {
        req.socket.destroy();
        return;
      }
      this.inflight += 1;
      this.maxInflight = Math.max(this.maxInflight, this.inflight);
      this.requests.push(req.url ?? '');
      const fail = this.failStatus;
      const busy = this.busyAnswers > 0;
      if (busy) this.busyAnswers -= 1;
      setTimeout(() => {
        this.inflight -= 1;
        if (busy) {
          res.writeHead(503, { 'content-type': 'application/json', 'retry-after': this.retryAfter }).end(JSON.stringify({ error: 'pulls in progress hold 9 answer bytes; retry shortly', code: 'METEORZX_PULL_BUSY' }));
          return;
        }
        const url = new URL(req.url ?? '/', 'http://a');
        const headers = { 'x-meteorzx-epoch': this.epoch, 'x-meteorzx-head': String(this.head), 'x-meteorzx-oldest': '1' };
        if (url.pathname === '/v1/status') {
          if (fail) res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'agent failing' }));
          else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'agent-x', epoch: this.epoch, head: this.head, oldest: 1 }));
          return;
        }
        const after = Number(url.searchParams.get('after'));
        const limit = Number(url.searchParams.get('limit'));
        let body = '';
        for (let s = after + 1; s <= Math.min(this.head, after + limit); s += 1) body += `${JSON.stringify({ id: `${this.epoch}-${s}`, type: 't', agent: 'agent-x', epoch: this.epoch, seq: s })}\n`;
        res.writeHead(200, { 'content-type': 'application/x-ndjson', ...headers }).end(body);
      }, this.delayMs);
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

class RecordingIngestor implements Ingestor {
  seqs: number[] = [];
  contexts: IngestContext[] = [];
  async ingest(items: readonly BatchItem[], ctx: IngestContext): Promise<IngestResponse> {
    this.contexts.push(ctx);
    for (const item of items) this.seqs.push((item.value as { seq: number }).seq);
    return { accepted: items.length, duplicates: 0, rejected: [] };
  }
}

let dir: string;
let agent: FakeAgent;
let store: PullStore;
let ingestor: RecordingIngestor;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meteorzx-pull-unit-'));
  agent = new FakeAgent();
  await agent.start();
  store = new PullStore(dir);
  await store.open();
  ingestor = new RecordingIngestor();
});

afterEach(async () => {
  await agent.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function connector(extra: Partial<ConstructorParameters<typeof PullConnector>[0]> = {}): PullConnector {
  return new PullConnector({ url: agent.url, retries: { tries: 2, delay: 1 }, limits: DEFAULT_LIMITS, ingestor, store, pageEvents: 100, logger, ...extra });
}

describe('PullConnector', () => {
  it('never runs two operations at once, coalesces queued runs, and pages with a checkpoint per page', async () => {
    const c = connector();
    const first = c.run();
    // Once it is running, four more requests queue as one follow-up run.
    while (agent.requests.length === 0) await new Promise((r) => setTimeout(r, 1));
    const runs = [first, ...Array.from({ length: 4 }, () => c.run())];
    expect(runs[1]).not.toBe(first);
    const ranges = [c.pullRange({ after: 0, until: 30 }), c.pullRange({ after: 100, until: 120 })];
    const results = await Promise.all([...runs, ...ranges]);
    expect(agent.maxInflight).toBe(1);
    expect(c.maxConcurrent).toBe(1);
    // The first run started at once; the four asked while it ran became one more run (which found nothing new).
    expect(new Set(runs.slice(1)).size).toBe(1);
    expect(results[0]?.pulled).toBe(250);
    expect(results[1]?.pulled).toBe(0);
    expect(ingestor.contexts.every((ctx) => ctx.method === 'pull' && ctx.peer === agent.url)).toBe(true);
    const pages = agent.requests.filter((r) => r.startsWith('/v1/events')).map((r) => new URL(r, 'http://a').searchParams);
    expect(pages.every((q) => Number(q.get('limit')) <= 100 && q.get('maxBytes') === String(DEFAULT_LIMITS.maxBodyBytes))).toBe(true);
    expect(await store.checkpoint(agent.url)).toEqual({ epoch: 'E1', seq: 250, agent: 'agent-x' });
    await c.close();
  });

  it('resumes from the checkpoint, and starts from 0 of a new epoch', async () => {
    await store.saveCheckpoint(agent.url, { epoch: 'E1', seq: 200 });
    const c = connector();
    expect((await c.run())?.pulled).toBe(50);
    expect(ingestor.seqs[0]).toBe(201);
    agent.epoch = 'E2';
    agent.head = 40;
    ingestor.seqs = [];
    expect((await c.run())?.pulled).toBe(40);
    expect(ingestor.seqs[0]).toBe(1);
    expect(await store.checkpoint(agent.url)).toMatchObject({ epoch: 'E2', seq: 40 });
    await c.close();
  });

  it('a range whose until lies past the agent head stops at the head: seqs not written yet are not gone', async () => {
    const c = connector();
    // meteorzx pull --into GW --after 240 --limit 60 against an agent whose head is 250.
    const result = await c.pullRange({ after: 240, until: 300 });
    // Before the fix: gone [{from: 251, to: 300, reason: the agent answered without seqs 251..300}], a loss that never was.
    expect({ pulled: result.pulled, lastSeq: result.lastSeq, gone: result.gone, seqs: ingestor.seqs }).toEqual({
      pulled: 10,
      lastSeq: 250,
      gone: [],
      seqs: [241, 242, 243, 244, 245, 246, 247, 248, 249, 250],
    });
    await c.close();
  });

  it('retries per policy, then shows failed with the error and raises an alert; recovers on a later run', async () => {
    agent.down = true;
    const sleeps: number[] = [];
    const raised: string[] = [];
    const alerter = { raise: (a: Alert) => void raised.push(a.kind) };
    const c = connector({ retries: { tries: 3, delay: 42 }, sleep: async (ms) => void sleeps.push(ms), alerter });
    expect(await c.run()).toBeUndefined();
    expect(sleeps).toEqual([42, 42, 42]);
    expect(c.status().state).toBe('failed');
    expect(c.status().lastError).toBeTruthy();
    expect(raised).toEqual(['pull-failed']);
    agent.down = false;
    expect((await c.run())?.pulled).toBe(250);
    expect(c.status()).toMatchObject({ state: 'ok', lastError: null });
    await c.close();
  });
});

describe('an agent that answers busy (503 + Retry-After)', () => {
  function failedRuns(metrics: GatewayMetrics): Promise<number> {
    return metrics.pullRuns.get().then((m) => m.values.filter((v) => v.labels.result === 'failed').reduce((n, v) => n + v.value, 0));
  }

  it('is asked again after its Retry-After, not retries.delay, and the run is not failed', async () => {
    agent.busyAnswers = 2;
    const sleeps: number[] = [];
    const metrics = new GatewayMetrics();
    const c = connector({ retries: { tries: 3, delay: 300_000 }, sleep: async (ms) => void sleeps.push(ms), metrics });
    const result = await c.run();
    // Before: [300000, 300000], a scheduled pull five minutes late for each 503 METEORZX_PULL_BUSY of a one-second wait.
    expect(sleeps).toEqual([1000, 1000]);
    expect(result?.pulled).toBe(250);
    expect(c.status()).toMatchObject({ state: 'ok', lastError: null });
    expect(await failedRuns(metrics)).toBe(0);
    await c.close();
  });

  it('counts as a failed attempt once its waits add up to retries.delay; a Retry-After of 0 waits a second', async () => {
    agent.busyAnswers = 1_000;
    agent.retryAfter = '0';
    const sleeps: number[] = [];
    const raised: string[] = [];
    const c = connector({ retries: { tries: 1, delay: 3000 }, sleep: async (ms) => void sleeps.push(ms), alerter: { raise: (a: Alert) => void raised.push(a.kind) } });
    expect(await c.run()).toBeUndefined();
    expect(sleeps).toEqual([1000, 1000, 1000, 3000, 1000, 1000, 1000]);
    expect(c.status().state).toBe('failed');
    expect(c.status().lastError).toContain('HTTP 503');
    expect(raised).toEqual(['pull-failed']);
    await c.close();
  });

  it('a manual run (one attempt) answers the busy error at once', async () => {
    agent.busyAnswers = 1;
    const sleeps: number[] = [];
    const c = connector({ retries: { tries: 3, delay: 300_000 }, sleep: async (ms) => void sleeps.push(ms) });
    expect(await c.run({ manual: true })).toBeUndefined();
    expect(sleeps).toEqual([]);
    expect(c.status().lastError).toContain('retry shortly');
    await c.close();
  });
});

describe('a manual run and a scheduled run waiting out its retry delay', () => {
  // retries.delay is a minute here: a test that waited it out would time out, so each of these fails without the fix.
  const DELAY = 60_000;

  async function retrying(c: PullConnector): Promise<void> {
    while (c.status().state !== 'retrying' || c.status().lastError === null) await new Promise((r) => setTimeout(r, 5));
  }

  function failedRuns(metrics: GatewayMetrics): Promise<number> {
    return metrics.pullRuns.get().then((m) => m.values.filter((v) => v.labels.result === 'failed').reduce((n, v) => n + v.value, 0));
  }

  it('cuts the wait short: the manual run answers at once with its own result, the waiting run ends neither failed nor alerted', async () => {
    agent.down = true;
    const raised: Alert[] = [];
    const metrics = new GatewayMetrics();
    const c = connector({ retries: { tries: 3, delay: DELAY }, alerter: { raise: (a) => void raised.push(a) }, metrics });
    const scheduled = c.run();
    await retrying(c);
    agent.down = false;
    const t0 = Date.now();
    const manual = await c.run({ manual: true });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(manual?.pulled).toBe(250);
    expect(await scheduled).toBeUndefined();
    expect(c.status()).toMatchObject({ state: 'ok', lastError: null });
    expect(raised).toEqual([]);
    expect(await failedRuns(metrics)).toBe(0);
    expect(await store.checkpoint(agent.url)).toMatchObject({ seq: 250 });
    expect(c.maxConcurrent).toBe(1);
    await c.close();
  }, 15_000);

  it('a manual run that fails answers at once with its own failure: one alert, for its one attempt', async () => {
    agent.down = true;
    const raised: Alert[] = [];
    const c = connector({ retries: { tries: 3, delay: DELAY }, alerter: { raise: (a) => void raised.push(a) } });
    const scheduled = c.run();
    await retrying(c);
    const t0 = Date.now();
    expect(await c.run({ manual: true })).toBeUndefined();
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(await scheduled).toBeUndefined();
    expect(c.status().state).toBe('failed');
    expect(raised.map((a) => [a.kind, a.detail])).toEqual([['pull-failed', expect.stringContaining('after 1 attempt(s)') as unknown]]);
    await c.close();
  }, 15_000);

  it('a manual run asked for during a failing attempt starts right after it: the scheduled run does not enter its wait', async () => {
    agent.failStatus = true;
    agent.delayMs = 300;
    const c = connector({ retries: { tries: 3, delay: DELAY } });
    const scheduled = c.run();
    while (agent.requests.length === 0) await new Promise((r) => setTimeout(r, 1));
    const t0 = Date.now();
    const manual = c.run({ manual: true });
    expect(manual).not.toBe(scheduled);
    agent.failStatus = false;
    agent.delayMs = 5;
    expect((await manual)?.pulled).toBe(250);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(await scheduled).toBeUndefined();
    expect(c.status()).toMatchObject({ state: 'ok', lastError: null });
    expect(c.maxConcurrent).toBe(1);
    await c.close();
  }, 15_000);

  it('a manual run that joins a queued scheduled run makes it one attempt', async () => {
    agent.failStatus = true;
    agent.delayMs = 200;
    const c = connector({ retries: { tries: 3, delay: DELAY } });
    // A range holds the lock, so the scheduled run waits for it, and the manual run joins that one.
    const range = c.pullRange({ after: 0, until: 5, epoch: 'E1' });
    const scheduled = c.run();
    const manual = c.run({ manual: true });
    expect(manual).toBe(scheduled);
    const t0 = Date.now();
    expect((await range).pulled).toBe(5);
    expect(await manual).toBeUndefined();
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(c.status()).toMatchObject({ state: 'failed', lastError: expect.stringMatching(/503/) as unknown });
    await c.close();
  }, 15_000);

  it('a range (backfill, a ranged POST /v1/pull) goes ahead during the wait, which it does not cut short', async () => {
    agent.down = true;
    const raised: Alert[] = [];
    const c = connector({ retries: { tries: 3, delay: DELAY }, alerter: { raise: (a) => void raised.push(a) } });
    let settled = false;
    const scheduled = c.run().finally(() => (settled = true));
    await retrying(c);
    agent.down = false;
    const t0 = Date.now();
    expect((await c.pullRange({ after: 0, until: 30 })).pulled).toBe(30);
    expect(Date.now() - t0).toBeLessThan(5000);
    // The range moves no checkpoint: the scheduled run still owes its retries.
    await new Promise((r) => setTimeout(r, 50));
    expect({ settled, state: c.status().state }).toEqual({ settled: false, state: 'retrying' });
    expect(c.maxConcurrent).toBe(1);
    await c.close();
    expect(await scheduled).toBeUndefined();
    expect(raised).toEqual([]);
  }, 15_000);
});

describe('PullScheduler', () => {
  it('staggers first runs by a stable hashed offset inside the interval, then runs every interval after the previous run', async () => {
    const every = 60_000;
    const a = staggerOffset('http://a:7402', every);
    expect(a).toBe(staggerOffset('http://a:7402', every));
    expect(a).toBeGreaterThanOrEqual(0);
    expect(a).toBeLessThan(every);
    const offsets = new Set(['http://a:7402', 'http://b:7402', 'http://c:7402', 'http://d:7402'].map((u) => staggerOffset(u, every)));
    expect(offsets.size).toBe(4);

    const armed: { ms: number; fn: () => void }[] = [];
    const timers: Timers = { setTimeout: (fn, ms) => armed.push({ fn, ms }), clearTimeout: () => undefined };
    let ran = 0;
    const scheduler = new PullScheduler([{ connector: { url: 'http://a:7402', run: async () => void (ran += 1) }, every }], timers);
    scheduler.start();
    expect(armed[0]?.ms).toBe(a);
    armed[0]?.fn();
    await new Promise((r) => setImmediate(r));
    expect(ran).toBe(1);
    expect(armed[1]?.ms).toBe(every);
    scheduler.close();
  });
});

describe('backfill ranges and POST /v1/pull bodies', () => {
  it('subtracts lost ranges from a hole', () => {
    expect(subtract([10, 20], [])).toEqual([[10, 20]]);
    expect(subtract([10, 20], [{ from: 12, to: 14 }])).toEqual([
      [10, 11],
      [15, 20],
    ]);
    expect(subtract([10, 20], [{ from: 1, to: 30 }])).toEqual([]);
    expect(subtract([10, 20], [{ from: 10, to: 10 }, { from: 20, to: 25 }])).toEqual([[11, 19]]);
  });

  it('subtracts any lost ranges, unsorted and overlapping, exactly; LossIndex keeps each agent and epoch apart', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 500; round += 1) {
      const lost = Array.from({ length: rnd(8) }, () => {
        const from = 1 + rnd(60);
        return { from, to: from + rnd(12) };
      });
      const from = 1 + rnd(50);
      const range: [number, number] = [from, from + rnd(30)];
      const expected: [number, number][] = [];
      for (let seq = range[0]; seq <= range[1]; seq += 1) {
        if (lost.some((l) => l.from <= seq && seq <= l.to)) continue;
        const last = expected[expected.length - 1];
        if (last !== undefined && last[1] === seq - 1) last[1] = seq;
        else expected.push([seq, seq]);
      }
      expect(subtract(range, lost)).toEqual(expected);
      const index = new LossIndex([...lost.map((l) => ({ ...l, agent: 'a', epoch: 'E1' })), { agent: 'a', epoch: 'E2', from: 1, to: 100 }, { agent: 'b', epoch: 'E1', from: 1, to: 100 }]);
      expect(index.subtract('a', 'E1', range)).toEqual(expected);
      expect(index.subtract('c', 'E1', range)).toEqual([range]);
    }
  });

  it('validates POST /v1/pull', () => {
    expect(parsePullRequest(Buffer.from('{"url":"http://a:7402","after":5,"until":9}'))).toEqual({ url: 'http://a:7402', after: 5, until: 9 });
    expect(() => parsePullRequest(Buffer.from('{"url":"ftp://x"}'))).toThrow(/url/);
    expect(() => parsePullRequest(Buffer.from('{"url":"http://a","after":5,"until":5}'))).toThrow(/until/);
    expect(() => parsePullRequest(Buffer.from('nope'))).toThrow(/JSON/);
  });

  it('answers 400 for a url that does not parse or a token no HTTP header can carry, not a 502 from the pull', () => {
    // Before the fix these passed validation, and the pull failed with 502 METEORZX_PULL_FAILED ("Invalid URL", "invalid authorization header").
    for (const url of ['http://[::1', 'http://a b', 'http://127.0.0.1:99999']) {
      expect(() => parsePullRequest({ url }), url).toThrow(expect.objectContaining({ code: 'METEORZX_BAD_REQUEST', status: 400, message: expect.stringMatching(/is not a valid URL/) }));
    }
    for (const token of ['a\nb', 'a\u0001b', 'euro-\u20ac']) {
      expect(() => parsePullRequest({ url: 'http://a:7402', token }), JSON.stringify(token)).toThrow(
        expect.objectContaining({ code: 'METEORZX_BAD_REQUEST', message: expect.stringMatching(/^token must be text an HTTP header can carry/) }),
      );
    }
    expect(parsePullRequest({ url: 'http://a:7402', token: 'tab\there-caf\u00e9' })).toEqual({ url: 'http://a:7402', token: 'tab\there-caf\u00e9' });
  });
});

describe('PullStore lost ranges', () => {
  it('reads one agent range only, and not an agent whose id the asked one prefixes', async () => {
    const range = (agent: string, from: number) => ({ agent, epoch: 'E', from, to: from, reason: 'r', at: '2026-01-01T00:00:00.000Z' });
    for (const r of [range('a', 1), range('a!b', 2), range('a', 3), range('ab', 4), range('b', 5)]) await store.addLost(r);
    expect({
      a: (await store.lost('a')).map((l) => l.from),
      aB: (await store.lost('a!b')).map((l) => l.from),
      none: await store.lost('c'),
      all: (await store.lost()).map((l) => l.from).sort(),
    }).toEqual({ a: [1, 3], aB: [2], none: [], all: [1, 2, 3, 4, 5] });
  });
});

describe('pull over an agent buffer with a recorded hole', () => {
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (closers.length > 0) await closers.pop()?.();
  });

  /** A LevelBuffer of 30 events whose seqs 11..20 are a recorded hole (what recoverUnreadable persists), served by servePull. */
  async function agentWithHole(hole: [number, number] = [11, 20], ...more: [number, number][]): Promise<{ base: string; buffer: LevelBuffer }> {
    const opts = { dataDir: dir, id: 'agent-h', commitIntervalMs: 1 };
    const first = new LevelBuffer(opts);
    await first.open();
    for (let b = 0; b < 3; b++) await first.append(Array.from({ length: 10 }, (_, i) => ({ type: `t.${b}.${i}` })));
    await first.close();
    const db = new Level<string, string>(join(dir, 'buffer'), { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    await db.open();
    await db.put('m!holes', JSON.stringify([hole, ...more]));
    await db.close();
    const buffer = new LevelBuffer(opts);
    await buffer.open();
    closers.push(() => buffer.close());
    const server = createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://a');
      if (u.pathname === '/v1/status') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(buffer.state()));
      else void servePull(u, req.method ?? 'GET', res, { buffer });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    closers.push(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, buffer };
  }

  it('a scheduled run steps over the hole: events after it pulled, checkpoint at the head, the hole in holes (not gone) once', async () => {
    const { base, buffer } = await agentWithHole();
    expect((await buffer.readLines(10, 100)).map((l) => l.seq)).toEqual([21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
    const res = await fetch(`${base}/v1/events?after=10&limit=100`);
    const page = (await res.text()).split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { seq: number }).seq);
    expect({ page, lastSeq: res.headers.get('x-last-seq') }).toEqual({ page: [21, 22, 23, 24, 25, 26, 27, 28, 29, 30], lastSeq: '30' });

    await store.saveCheckpoint(base, { epoch: buffer.state().epoch, seq: 10 });
    const c = new PullConnector({ url: base, retries: { tries: 0, delay: 1 }, limits: DEFAULT_LIMITS, ingestor, store, logger });
    closers.push(() => c.close());
    await c.init();
    const r1 = await c.run();
    const r2 = await c.run();
    // Before the fix: an empty page, gone [11..30] on every run, the checkpoint stuck at 10.
    expect({
      run1Gone: r1?.gone,
      run1Holes: r1?.holes.map((h) => [h.from, h.to]),
      run2Gone: r2?.gone,
      run2Holes: r2?.holes,
      checkpoint: c.status().checkpoint?.seq,
      pulledSeqs: ingestor.seqs,
    }).toEqual({ run1Gone: [], run1Holes: [[11, 20]], run2Gone: [], run2Holes: [], checkpoint: 30, pulledSeqs: [21, 22, 23, 24, 25, 26, 27, 28, 29, 30] });
  });

  /**
   * A Backfill of agent-h's registry gaps `gaps` (open long enough; change them between scans, as arriving
   * events would) through connector `c`, asking at most `tries` times; each scan returns the kinds of the alerts it raised.
   */
  function backfillOf(c: PullConnector, epoch: string, gaps: { from: number; to: number; reportedByAgent?: boolean }[]): () => Promise<string[]> {
    const raised: string[] = [];
    const alerter = { raise: (a: Alert) => void raised.push(a.kind) };
    const since = new Date(0).toISOString();
    const backfill = new Backfill({
      epochs: async () => [{ agent: 'agent-h', epoch, gaps: gaps.map((g) => ({ ...g, since })) }] as unknown as EpochStatus[],
      store,
      ingestor,
      connectors: () => [c],
      graceMs: 0,
      tries: 1,
      alerter,
      logger,
    });
    return async () => {
      raised.length = 0;
      await backfill.scan();
      return [...raised];
    };
  }

  /** A connector to `agent` whose checkpoint is at seq 30, as after a scheduled run to the head. */
  async function pulledToHead({ base, buffer }: { base: string; buffer: LevelBuffer }): Promise<{ epoch: string; c: PullConnector }> {
    const { epoch } = buffer.state();
    await store.saveCheckpoint(base, { epoch, seq: 30 });
    const c = new PullConnector({ url: base, retries: { tries: 0, delay: 1 }, limits: DEFAULT_LIMITS, ingestor, store, logger });
    closers.push(() => c.close());
    await c.init();
    return { epoch, c };
  }

  it('backfill of the hole waits for the agent gap event: once it has arrived, no loss is recorded a second time', async () => {
    const { epoch, c } = await pulledToHead(await agentWithHole());
    const gaps: { from: number; to: number; reportedByAgent?: boolean }[] = [{ from: 5, to: 25 }];
    const scan = backfillOf(c, epoch, gaps);
    const raised = await scan();
    expect({ pulled: ingestor.seqs, lost: await store.lost(), raised }).toEqual({ pulled: [5, 6, 7, 8, 9, 10, 21, 22, 23, 24, 25], lost: [], raised: [] });
    // The agent gap event arrives: the registry marks 11..20 reported; the pulled seqs closed the rest.
    gaps.splice(0, 1, { from: 11, to: 20, reportedByAgent: true });
    ingestor.seqs = [];
    expect({ raised: await scan(), again: await scan(), ingested: ingestor.seqs, lost: await store.lost() }).toEqual({ raised: [], again: [], ingested: [], lost: [] });
  });

  it('a buffer hole no gap event of the agent names (delivered, then lost at both ends) is recorded as lost after tries', async () => {
    const { epoch, c } = await pulledToHead(await agentWithHole());
    const gaps = [{ from: 11, to: 20 }];
    const scan = backfillOf(c, epoch, gaps);
    const first = await scan();
    const firstLost = await store.lost();
    // Before the fix: marked lost at the first look, with no gap event anywhere and no alert.
    const second = await scan();
    const lost = (await store.lost()).map((l) => ({ from: l.from, to: l.to, reason: l.reason }));
    expect({ first, firstLost, second, ingested: ingestor.seqs, lost }).toEqual({
      first: [],
      firstLost: [],
      second: ['gap-lost'],
      ingested: [undefined],
      lost: [{ from: 11, to: 20, reason: expect.stringMatching(/no meteorzx.gap of the agent.s named in 1 look/) as unknown }],
    });
    expect(ingestor.contexts.at(-1)).toEqual({ method: 'pull', peer: 'backfill' });
  });

  it('a pull-only agent: each look at a hole pulls its log, so its own gap event arrives before the looks run out and the loss is recorded once', async () => {
    const agent = await agentWithHole();
    const { epoch, c } = await pulledToHead(agent);
    // The agent's own record of the hole, after the last run (checkpoint 30) of a schedule that is not due again.
    await agent.buffer.append([{ type: 'meteorzx.gap', data: { epoch, from: 11, to: 20, reason: 'unreadable' } }]);
    // The registry, as the real one: a gap event of the agent, once stored, marks the hole reportedByAgent.
    const gaps: { from: number; to: number; reportedByAgent?: boolean }[] = [{ from: 11, to: 20 }];
    const scan = backfillOf(c, epoch, gaps);
    const first = await scan();
    if (ingestor.seqs.includes(31)) gaps.splice(0, 1, { from: 11, to: 20, reportedByAgent: true });
    // Before the fix: the hole looked at once (tries 1) without a run, recorded lost at the second scan.
    expect({ first, second: await scan(), pulled: ingestor.seqs, lost: await store.lost(), checkpoint: c.status().checkpoint?.seq }).toEqual({
      first: [],
      second: [],
      pulled: [31],
      lost: [],
      checkpoint: 31,
    });
  });

  it('a scan that looks at several holes of one agent pulls its log once', async () => {
    const { epoch, c } = await pulledToHead(await agentWithHole([11, 13], [15, 17], [19, 20]));
    let runs = 0;
    const run = c.run.bind(c);
    c.run = (options) => {
      runs += 1;
      return run(options);
    };
    const scan = backfillOf(c, epoch, [{ from: 11, to: 20 }]);
    expect({ raised: await scan(), runs, pulled: ingestor.seqs }).toEqual({ raised: [], runs: 1, pulled: [14, 18] });
    // The next scan (grace 0): each hole, looked at tries (1) times, is recorded lost; no pull for that.
    expect({ raised: await scan(), runs, lost: (await store.lost()).map((l) => [l.from, l.to]) }).toEqual({
      raised: ['gap-lost', 'gap-lost', 'gap-lost'],
      runs: 1,
      lost: [
        [11, 13],
        [15, 17],
        [19, 20],
      ],
    });
  });

  it('a hole reaching the head is a hole, not gone: a run moves its checkpoint past it, backfill records no second gap', async () => {
    const { base, buffer } = await agentWithHole([21, 30]);
    const { epoch } = buffer.state();
    expect(buffer.state().head).toBe(30);

    await store.saveCheckpoint(base, { epoch, seq: 10 });
    const c = new PullConnector({ url: base, retries: { tries: 0, delay: 1 }, limits: DEFAULT_LIMITS, ingestor, store, logger });
    closers.push(() => c.close());
    await c.init();
    const run = await c.run();
    // Before the fix: gone [21..30] (the agent answered an empty page), the checkpoint left at 20.
    expect({ gone: run?.gone, holes: run?.holes.map((h) => [h.from, h.to]), checkpoint: c.status().checkpoint?.seq, pulled: ingestor.seqs }).toEqual({
      gone: [],
      holes: [[21, 30]],
      checkpoint: 30,
      pulled: [11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
    });

    ingestor.seqs = [];
    const gaps: { from: number; to: number; reportedByAgent?: boolean }[] = [{ from: 18, to: 30 }];
    const scan = backfillOf(c, epoch, gaps);
    const raised = await scan();
    // Before the fix: gone, so a gateway meteorzx.gap for 21..30 went to the pipeline (no seq: the ingestor saw undefined) and a gap-lost alert.
    expect({ ingested: ingestor.seqs, lost: await store.lost(), raised }).toEqual({ ingested: [18, 19, 20], lost: [], raised: [] });
    // The agent gap event for 21..30 arrives: nothing is recorded a second time.
    gaps.splice(0, 1, { from: 21, to: 30, reportedByAgent: true });
    expect({ raised: await scan(), lost: await store.lost() }).toEqual({ raised: [], lost: [] });

    // What the agent said: an empty answer, every seq up to its head a recorded hole.
    const res = await fetch(`${base}/v1/events?after=20&limit=100`);
    expect({ body: await res.text(), holesTo: res.headers.get('x-meteorzx-holes-to'), lastSeq: res.headers.get('x-last-seq') }).toEqual({ body: '', holesTo: '30', lastSeq: null });
  });
});

describe('PullConnector against agents with large events, slow pages, or a close mid-run', () => {
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (closers.length > 0) await closers.pop()?.();
  });

  /** Counts ingest calls and rejections (the pipeline's rejection of an item that did not decode). */
  class CountingIngestor implements Ingestor {
    calls = 0;
    seqs: number[] = [];
    rejected = 0;
    async ingest(items: readonly BatchItem[]): Promise<IngestResponse> {
      this.calls += 1;
      const rejected: { index: number; error: string }[] = [];
      for (const item of items) {
        if (item.error !== undefined) rejected.push({ index: item.index, error: item.error });
        else this.seqs.push((item.value as { seq: number }).seq);
      }
      this.rejected += rejected.length;
      return { accepted: items.length - rejected.length, duplicates: 0, rejected };
    }
  }

  /** An agent whose pages are `lines(after, limit)`, answered after `delayMs`. */
  async function fakeAgent(head: number, lines: (after: number, limit: number) => string, delayMs = 0): Promise<string> {
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://a');
      if (url.pathname === '/v1/status') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'ag', epoch: 'E1', head, oldest: 1 }));
        return;
      }
      setTimeout(() => {
        const after = Number(url.searchParams.get('after'));
        const limit = Number(url.searchParams.get('limit'));
        const headers = { 'content-type': 'application/x-ndjson', 'x-meteorzx-epoch': 'E1', 'x-meteorzx-head': String(head), 'x-meteorzx-oldest': '1' };
        res.writeHead(200, headers).end(lines(after, limit));
      }, delayMs);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    closers.push(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  const line = (seq: number, pad = 0) => `${JSON.stringify({ id: `e${seq}`, type: 't', agent: 'ag', epoch: 'E1', seq, ...(pad > 0 ? { data: { pad: 'x'.repeat(pad) } } : {}) })}\n`;
  const range = (head: number, pad: (s: number) => number) => (after: number, limit: number) => {
    let out = '';
    for (let s = after + 1; s <= Math.min(head, after + limit); s++) out += line(s, pad(s));
    return out;
  };

  async function runFor(c: PullConnector, ms: number): Promise<boolean> {
    let settled = false;
    const run = c.run().finally(() => (settled = true));
    await Promise.race([run, new Promise((r) => setTimeout(r, ms))]);
    await c.close();
    await run;
    return settled;
  }

  it('a stored line over maxEventBytes at the tail of a run: one pass, one rejection, the run ends (it looped for ever)', async () => {
    // 70,000 B of padding: over maxEventBytes even with the chain fields' allowance, so it does not decode; its seq is read from its text.
    const url = await fakeAgent(3, range(3, (s) => (s === 3 ? 70_000 : 0)));
    const ingestor = new CountingIngestor();
    const c = new PullConnector({ url, retries: { tries: 0, delay: 1 }, limits: DEFAULT_LIMITS, ingestor, logger });
    const settled = await runFor(c, 1500);
    expect({ settled, calls: ingestor.calls, rejected: ingestor.rejected, seqs: ingestor.seqs, checkpoint: c.status().checkpoint?.seq }).toEqual({
      settled: true,
      calls: 1,
      rejected: 1,
      seqs: [1, 2],
      checkpoint: 3,
    });
  });

  it('a line just over maxEventBytes by the chain fields the agent added decodes (the pipeline judges it)', async () => {
    const url = await fakeAgent(3, range(3, (s) => (s === 3 ? 65_600 : 0)));
    const ingestor = new CountingIngestor();
    const c = new PullConnector({ url, retries: { tries: 0, delay: 1 }, limits: DEFAULT_LIMITS, ingestor, logger });
    const settled = await runFor(c, 1500);
    expect({ settled, calls: ingestor.calls, rejected: ingestor.rejected, seqs: ingestor.seqs }).toEqual({ settled: true, calls: 1, rejected: 0, seqs: [1, 2, 3] });
  });

  it('a 1,000-event page of ~9 KB events (9 MB, over maxBodyBytes) is pulled, from an agent that ignores maxBytes too', async () => {
    const url = await fakeAgent(1000, range(1000, () => 9_000));
    const ingestor = new CountingIngestor();
    const c = new PullConnector({ url, retries: { tries: 0, delay: 1 }, limits: DEFAULT_LIMITS, ingestor, logger });
    closers.push(() => c.close());
    const result = await c.run();
    // Before: the page was decoded as one body against maxBodyBytes (8 MiB) and failed every time.
    expect(c.status().lastError).toBeNull();
    expect(result?.pulled).toBe(1000);
    expect(ingestor.seqs).toHaveLength(1000);
  });

  /** An agent whose page answer is whatever `write(res)` does after the headers. */
  async function rawAgent(write: (res: ServerResponse) => void): Promise<string> {
    const server = createServer((req, res) => {
      if (new URL(req.url ?? '/', 'http://a').pathname === '/v1/status') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'ag', epoch: 'E1', head: 10, oldest: 1 }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'x-meteorzx-epoch': 'E1', 'x-meteorzx-head': '10', 'x-meteorzx-oldest': '1' });
      write(res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    closers.push(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it('a page answer longer than limit × (maxEventBytes + chain fields) is cut off with an error, not buffered', async () => {
    const chunk = 'x'.repeat(64 * 1024);
    let sent = 0;
    const url = await rawAgent((res) => {
      // An endless body (before: buffered whole — RSS 99 MB → 1 GB for 600 MiB, then "Cannot create a string longer than…").
      const pump = () => {
        while (!res.destroyed && sent < 256 << 20 && res.write(chunk)) sent += chunk.length;
        if (!res.destroyed && sent < 256 << 20) res.once('drain', pump);
      };
      pump();
    });
    const c = new PullConnector({ url, retries: { tries: 0, delay: 1 }, limits: DEFAULT_LIMITS, ingestor: new CountingIngestor(), pageEvents: 10, logger });
    closers.push(() => c.close());
    expect(await c.run()).toBeUndefined();
    expect(c.status().lastError).toMatch(/over \d+ bytes; refused/);
    expect(sent).toBeLessThan(32 << 20);
  });

  it('a page trickling one byte at a time fails at the request deadline (pullFrom[].timeout)', async () => {
    const url = await rawAgent((res) => {
      const timer = setInterval(() => res.write('{'), 100);
      res.on('close', () => clearInterval(timer));
    });
    const c = new PullConnector({ url, retries: { tries: 0, delay: 1 }, limits: DEFAULT_LIMITS, ingestor: new CountingIngestor(), requestTimeoutMs: 700, logger });
    closers.push(() => c.close());
    const t0 = Date.now();
    expect(await c.run()).toBeUndefined();
    // Before: bodyTimeout (60 s of silence) never tripped; POST /v1/pull stayed open for as long as the agent trickled.
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(c.status().lastError).toMatch(/no complete answer within 700 ms/);
  });

  it('close() ends a request in flight at once: an agent that trickles its answer does not hold the stop of the gateway', async () => {
    const url = await rawAgent((res) => {
      const timer = setInterval(() => res.write('{'), 100);
      res.on('close', () => clearInterval(timer));
    });
    // The default request deadline: two minutes, longer than systemd gives a stop.
    const c = new PullConnector({ url, retries: { tries: 3, delay: 4000 }, limits: DEFAULT_LIMITS, ingestor: new CountingIngestor(), logger });
    const run = c.run();
    await new Promise((r) => setTimeout(r, 400));
    const t0 = Date.now();
    await c.close();
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(await run).toBeUndefined();
    expect(c.status().state).toBe('idle');
  }, 15_000);

  it('close() during a run ends it at once: no retry wait, no failure, no alert', async () => {
    const url = await fakeAgent(3000, range(3000, () => 0), 300);
    const raised: string[] = [];
    const alerter = { raise: (a: Alert) => void raised.push(a.kind) };
    const c = new PullConnector({ url, retries: { tries: 3, delay: 4000 }, limits: DEFAULT_LIMITS, ingestor: new CountingIngestor(), alerter, logger });
    const run = c.run();
    await new Promise((r) => setTimeout(r, 450));
    const t0 = Date.now();
    await c.close();
    const took = Date.now() - t0;
    expect(await run).toBeUndefined();
    // Before: the attempt threw "pull connector closed" and the retry wait (4 s here, 5 min by default) ran in full.
    expect(took).toBeLessThan(1500);
    expect({ raised, state: c.status().state, lastError: c.status().lastError }).toEqual({ raised: [], state: 'idle', lastError: null });
  }, 15_000);

  it('a page that makes no progress ends the run with an error', async () => {
    const url = await fakeAgent(5, () => line(1));
    const c = new PullConnector({ url, retries: { tries: 0, delay: 1 }, limits: DEFAULT_LIMITS, ingestor: new CountingIngestor(), logger });
    closers.push(() => c.close());
    expect(await c.run()).toBeUndefined();
    expect(c.status()).toMatchObject({ state: 'failed', lastError: expect.stringMatching(/no progress/) as unknown });
  });
});

describe('backfill with an agent that accepts and never answers', () => {
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (closers.length > 0) await closers.pop()?.();
  });

  /** A pull listener that takes connections and never answers; counts the requests it was sent. */
  async function hungAgent(): Promise<{ url: string; requests: () => number }> {
    let requests = 0;
    const sockets = new Set<Socket>();
    const server = createNetServer((socket) => {
      sockets.add(socket);
      socket.on('data', (d: Buffer) => (requests += d.toString('latin1').split('GET ').length - 1));
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    closers.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    });
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => requests };
  }

  function backfill(c: PullConnector, epochs: { agent: string; gaps: [number, number][] }[]): Backfill {
    const since = new Date(0).toISOString();
    return new Backfill({
      epochs: async () => epochs.map((e) => ({ agent: e.agent, epoch: 'E', gaps: e.gaps.map(([from, to]) => ({ from, to, since })) })) as unknown as EpochStatus[],
      store,
      ingestor,
      connectors: () => [c],
      graceMs: 0,
      tries: 5,
      alerter: { raise: () => undefined },
      logger,
    });
  }

  it('asks a connector of an unknown agent for its id once per scan, not once per hole of every other agent', async () => {
    const hung = await hungAgent();
    const c = new PullConnector({ url: hung.url, retries: { tries: 0, delay: 1 }, limits: DEFAULT_LIMITS, ingestor, store, requestTimeoutMs: 150, logger });
    closers.push(() => c.close());
    // Four holes of a device no connector serves: each asked which connector serves it.
    await backfill(c, [{ agent: 'dev-1', gaps: [[2, 2], [4, 4], [6, 6], [8, 8]] }]).scan();
    // Before the fix: 4 (a request timeout per hole: 60 s each with the defaults, so minutes per scan).
    expect({ requests: hung.requests(), agent: c.agentId }).toEqual({ requests: 1, agent: null });
  });

  it('an agent whose repair failed is not asked again for its other holes in the same scan', async () => {
    const hung = await hungAgent();
    await store.saveCheckpoint(hung.url, { epoch: 'E', seq: 10, agent: 'agent-z' });
    const c = new PullConnector({ url: hung.url, retries: { tries: 0, delay: 1 }, limits: DEFAULT_LIMITS, ingestor, store, requestTimeoutMs: 150, logger });
    closers.push(() => c.close());
    await c.init();
    await backfill(c, [{ agent: 'agent-z', gaps: [[2, 2], [4, 4], [6, 6]] }]).scan();
    // Before the fix: 3, one request timeout per hole, with every other agent's holes waiting behind them.
    expect({ requests: hung.requests(), lost: await store.lost() }).toEqual({ requests: 1, lost: [] });
  });
});
