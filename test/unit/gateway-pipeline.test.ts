import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chainEvent, decodeBatch, fastCanonicalJson, sha256Hex, type AuditEvent, type BatchItem, type StoredEvent } from '../../protocols/index.js';
import { GatewayMetrics } from '../../gateway/metrics.js';
import { createPipeline, type Pipeline, type PipelineAlert, type PipelineConfig } from '../../gateway/pipeline/index.js';
import type { IngestContext } from '../../gateway/pipeline/ingestor.js';
import { LevelStorage } from '../../gateway/storage/level/index.js';
import type { CommitBatch, Storage } from '../../gateway/storage/types.js';

const WEEK = 7 * 86_400_000;

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setTimeout(r, 1));
}
const http: IngestContext = { method: 'http', peer: '127.0.0.1:4000' };
const items = (...values: unknown[]): BatchItem[] => values.map((value, index) => ({ index, value, bytes: JSON.stringify(value).length }));

function config(over: Partial<PipelineConfig['pipeline']> = {}, commit = { maxEvents: 1000, maxWaitMs: 5 }): PipelineConfig {
  return { pipeline: { dedup: { window: WEEK, cacheSize: 1000 }, transforms: [], rules: [], ...over }, commit };
}

/** LevelStorage that counts commits and can be told to fail or stall. */
class CountingStorage extends LevelStorage {
  commits: CommitBatch[] = [];
  calls = 0;
  failNext = false;
  stall: Promise<void> | undefined;
  override async commit(batch: CommitBatch) {
    this.calls += 1;
    if (this.stall !== undefined) await this.stall;
    if (this.failNext) {
      this.failNext = false;
      throw new Error('disk full');
    }
    this.commits.push(batch);
    return super.commit(batch);
  }
}

describe('pipeline', () => {
  let dir: string;
  let storage: CountingStorage;
  let pipeline: Pipeline | undefined;
  let alerts: PipelineAlert[];
  let metrics: GatewayMetrics;

  async function open(cfg: PipelineConfig = config(), extra: { maxQueuedEvents?: number } = {}): Promise<Pipeline> {
    storage = new CountingStorage({ dataDir: dir });
    await storage.open();
    metrics = new GatewayMetrics();
    alerts = [];
    pipeline = createPipeline({ storage, config: cfg, gatewayName: 'gw-1', metrics, onAlert: (a) => alerts.push(a), ...extra });
    await pipeline.start();
    return pipeline;
  }
  async function closeAll(): Promise<void> {
    await pipeline?.close();
    await storage?.close();
    pipeline = undefined;
  }
  const stored = async (s: Storage = storage): Promise<StoredEvent[]> => (await s.query({ limit: 10_000 })).events;
  const counter = async (c: { get(): Promise<{ values: Array<{ value: number; labels: object }> }> }) =>
    (await c.get()).values.reduce((n, v) => n + v.value, 0);

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'meteorzx-pipe-'));
  });
  afterEach(async () => {
    await closeAll();
    await rm(dir, { recursive: true, force: true });
  });

  it('an id accepted again after its dedup window: both accepted records are found by id in custody', async () => {
    let now = Date.UTC(2026, 10, 1, 12, 0, 0);
    const clock = () => now;
    storage = new CountingStorage({ dataDir: dir, clock });
    await storage.open();
    pipeline = createPipeline({ storage, config: config(), gatewayName: 'gw-1', clock });
    await pipeline.start();
    const event = { id: 'again-1', source: 'host-1', type: 'auth.login' };
    expect(await pipeline.ingest(items(event), http)).toMatchObject({ accepted: 1 });
    now += WEEK / 2;
    expect(await pipeline.ingest(items(event), http)).toMatchObject({ accepted: 0, duplicates: 1 });
    now += WEEK; // past the window: accepted again
    expect(await pipeline.ingest(items(event), http)).toMatchObject({ accepted: 1 });
    const records = await storage.custody({ id: 'again-1' });
    expect(records.map((r) => r.outcome)).toEqual(['accepted', 'duplicate', 'accepted']);
    expect(new Set(records.map((r) => r.at)).size).toBe(3);
    // A neighbour's lookup is unaffected, and the newest pointer answers a query by id.
    expect((await storage.query({ limit: 10 })).events.filter((e) => e.id === 'again-1')).toHaveLength(2);
  });

  it('pages every event once when the clock steps back across midnight between pages: receive times never go back', async () => {
    let now = Date.UTC(2026, 10, 1, 23, 59, 59, 900);
    const clock = () => now;
    storage = new CountingStorage({ dataDir: dir, clock });
    await storage.open();
    pipeline = createPipeline({ storage, config: config(), gatewayName: 'gw-1', clock });
    await pipeline.start();
    const ev = (id: string) => ({ id, source: 'host-1', type: 't' });
    await pipeline.ingest(items(ev('m1')), http);
    now += 200; // 00:00:00.100, the next day
    await pipeline.ingest(items(ev('m2')), http);
    now += 100;
    await pipeline.ingest(items(ev('m3')), http);
    const first = await storage.query({ limit: 2 });
    expect(first.events.map((e) => e.id)).toEqual(['m1', 'm2']);
    // NTP steps the clock back before midnight; an event arrives; the reader asks for the next page.
    now -= 250;
    await pipeline.ingest(items(ev('m4')), http);
    const next = await storage.query({ limit: 10, cursor: first.nextCursor as string });
    expect(next.events.map((e) => e.id)).toEqual(['m3', 'm4']);
    const all = (await storage.query({ limit: 10 })).events;
    expect(all.map((e) => e.id)).toEqual(['m1', 'm2', 'm3', 'm4']);
    // Received at the latest receive time before it, not earlier.
    expect(all[3]?.ingest.receivedAt).toBe(all[2]?.ingest.receivedAt);
  });

  it('group-commits many concurrent callers into one write and answers each exactly', async () => {
    const p = await open();
    const calls = Array.from({ length: 200 }, (_, c) =>
      p.ingest(items(...[0, 1, 2].map((i) => ({ id: `c${c}-${i}`, source: `host-${c % 5}`, type: 'auth.login' }))), { ...http, peer: `peer-${c}` }),
    );
    // Queued, not yet committed: the depth gauge reads what waits when it is collected.
    expect((await metrics.queueDepth.get()).values[0]?.value).toBe(600);
    const answers = await Promise.all(calls);
    expect((await metrics.queueDepth.get()).values[0]?.value).toBe(0);
    expect(answers.every((a) => a.accepted === 3 && a.duplicates === 0 && a.rejected.length === 0)).toBe(true);
    expect(storage.commits).toHaveLength(1); // all 200 calls queued before the 5 ms timer fired
    const events = await stored();
    expect(events).toHaveLength(600);
    expect(events[0]).toMatchObject({ id: 'c0-0', ingest: { method: 'http', peer: 'peer-0', gateway: 'gw-1', integrity: 'unchained' } });
    expect(Date.parse(events[0]?.ingest.receivedAt as string)).not.toBeNaN();
    expect(await storage.custody({ limit: 10_000 })).toHaveLength(600);
    expect(await counter(metrics.accepted)).toBe(600);
    expect(await counter(metrics.received)).toBe(600);
    expect((await metrics.commitBatchSize.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value).toBe(1);
  });

  it('drops duplicates within a call, within a commit, across commits and across a restart', async () => {
    let p = await open();
    const [one, two] = await Promise.all([
      p.ingest(items({ id: 'a', source: 's', type: 't' }, { id: 'a', source: 's', type: 't' }, { id: 'b', source: 's', type: 't' }), http),
      p.ingest(items({ id: 'b', source: 's', type: 't' }, { id: 'c', source: 's', type: 't' }), http),
    ]);
    expect(one).toEqual({ accepted: 2, duplicates: 1, rejected: [] });
    expect(two).toEqual({ accepted: 1, duplicates: 1, rejected: [] });
    expect(await p.ingest(items({ id: 'c', source: 's', type: 't' }), http)).toEqual({ accepted: 0, duplicates: 1, rejected: [] });
    expect(await counter(metrics.dedupCacheHits)).toBe(1);
    await closeAll();
    p = await open();
    expect(await p.ingest(items({ id: 'a', source: 's', type: 't' }, { id: 'd', source: 's', type: 't' }), http)).toEqual({
      accepted: 1,
      duplicates: 1,
      rejected: [],
    });
    expect((await stored()).map((e) => e.id)).toEqual(['a', 'b', 'c', 'd']);
    expect((await storage.custody({ id: 'a' })).map((r) => r.outcome)).toEqual(['accepted', 'duplicate', 'duplicate']);
    expect((await storage.sources()).sources).toEqual([expect.objectContaining({ source: 's', accepted: 4, duplicates: 4, rejected: 0 })]);
  });

  it('records every rejection with its reason and index, and keeps the rest of the batch', async () => {
    const p = await open();
    const batch: BatchItem[] = [
      { index: 0, value: { id: 'ok1', source: 's', type: 't' }, bytes: 10 },
      { index: 1, bytes: 5, error: 'malformed JSON: Unexpected token' },
      { index: 2, value: { id: 'bad1', source: 's' }, bytes: 10 },
      { index: 3, value: { id: 'ok2', source: 's', type: 't' }, bytes: 10 },
    ];
    expect(await p.ingest(batch, http)).toEqual({
      accepted: 2,
      duplicates: 0,
      rejected: [
        { index: 1, error: 'malformed JSON: Unexpected token' },
        { index: 2, error: 'type: required' },
      ],
    });
    const custody = await storage.custody({});
    expect(custody.map((r) => [r.outcome, r.id, r.reason])).toEqual([
      ['accepted', 'ok1', undefined],
      ['rejected', undefined, 'malformed JSON: Unexpected token'],
      ['rejected', 'bad1', 'type: required'],
      ['accepted', 'ok2', undefined],
    ]);
    expect(await storage.custody({ id: 'bad1' })).toHaveLength(1);
    expect(await metrics.rejected.get()).toMatchObject({
      values: expect.arrayContaining([
        { value: 1, labels: { method: 'http', stage: 'decode' } },
        { value: 1, labels: { method: 'http', stage: 'validate' } },
      ]),
    });
  });

  it('stores and flags a broken chain event, alerts on it, and tracks seqs and gaps', async () => {
    const p = await open();
    const chain: Array<AuditEvent & { hash: string }> = [];
    for (let seq = 1; seq <= 5; seq += 1) {
      chain.push(chainEvent({ id: `e${seq}`, type: 't', source: 'ag', agent: 'ag', epoch: 'ep1', seq, time: '2026-01-01T00:00:00Z' }, chain.at(-1)?.hash));
    }
    const altered = { ...chain[1], type: 'edited' };
    const first = await p.ingest(items(chain[0], altered, chain[2]), http);
    expect(first).toEqual({ accepted: 3, duplicates: 0, rejected: [] });
    // seq 5 arrives before 4 (a gap, then filled), and seq 3 is retried (a duplicate, still counted as received).
    await p.ingest(items(chain[4], chain[2]), http);
    await p.ingest(items(chain[3]), http);
    const byId = new Map((await stored()).map((e) => [e.id, e]));
    expect([1, 2, 3, 4, 5].map((n) => byId.get(`e${n}`)?.ingest.integrity)).toEqual(['verified', 'broken', 'verified', 'verified', 'verified']);
    expect(byId.get('e2')?.type).toBe('edited');
    expect(alerts).toEqual([expect.objectContaining({ kind: 'chain-break', detail: expect.stringContaining('seq 2'), event: byId.get('e2') })]);
    expect(await counter(metrics.chainBreaks)).toBe(1);
    const epoch = (await storage.sources()).epochs[0];
    expect(epoch).toMatchObject({ agent: 'ag', epoch: 'ep1', lastSeq: 5, received: 6, gaps: [] });

    // After a restart the chain head comes from storage: seq 6 still links.
    await closeAll();
    const p2 = await open();
    const six = chainEvent({ id: 'e6', type: 't', source: 'ag', agent: 'ag', epoch: 'ep1', seq: 6, time: '2026-01-01T00:00:00Z' }, chain[4]?.hash);
    await p2.ingest(items(six), http);
    expect((await stored()).find((e) => e.id === 'e6')?.ingest.integrity).toBe('verified');
  });

  it('counts the seq of a chained event that validation rejects as received: it arrived, so it is no hole (DESIGN §4)', async () => {
    // It was left a gap ("missing since …"): a seq-gap alert, and backfill pulling the same rejected events again at every scan.
    const p = await open();
    const chain: Array<AuditEvent & { hash: string }> = [];
    for (let seq = 1; seq <= 5; seq += 1) {
      chain.push(chainEvent({ id: `v${seq}`, type: 't', source: 'ag', agent: 'ag', epoch: 'ep', seq, time: '2026-01-01T00:00:00Z' }, chain.at(-1)?.hash));
    }
    // seq 2: a field this gateway does not know (a newer agent, say); seq 3: an outcome out of the vocabulary.
    const answer = await p.ingest(items(chain[0], { ...chain[1], extra: 1 }, { ...chain[2], outcome: 'maybe' }, chain[3]), http);
    expect(answer).toMatchObject({ accepted: 2, rejected: [{ index: 1 }, { index: 2 }] });
    expect((await storage.sources()).epochs).toEqual([expect.objectContaining({ agent: 'ag', epoch: 'ep', lastSeq: 4, received: 4, gaps: [] })]);
    // The next seq after a rejected one still verifies, and links on.
    await p.ingest(items(chain[4]), http);
    expect((await stored()).map((e) => [e.id, e.ingest.integrity])).toEqual([['v1', 'verified'], ['v4', 'verified'], ['v5', 'verified']]);

    // A client that may not write this agent's chain fills no hole of it, valid event or not.
    const device: IngestContext = { method: 'mqtt', peer: 'dev-1', defaultSource: 'dev-1', mayUseSource: (s) => s === 'dev-1' };
    const far = chainEvent({ id: 'v9', type: 't', source: 'ag', agent: 'ag', epoch: 'ep', seq: 9, time: '2026-01-01T00:00:00Z' }, undefined);
    await p.ingest(items(far), http);
    await p.ingest(items({ ...chain[0], seq: 7, outcome: 'maybe' }, { ...chain[0], seq: 8 }), device);
    expect((await storage.sources()).epochs[0]?.gaps.map((g) => [g.from, g.to])).toEqual([[6, 8]]);
  });

  it('reads an agent line as text: the verdicts and stored lines the generic path gives, without serialising the event', async () => {
    // Lines as an agent sends them (canonical JSON without hash, then hash), and the same texts altered.
    const agentLine = (e: AuditEvent & { hash: string }): string => {
      const { hash, ...rest } = e;
      return `${fastCanonicalJson(rest).slice(0, -1)},"hash":"${hash}"}`;
    };
    const chain: Array<AuditEvent & { hash: string }> = [];
    for (let seq = 1; seq <= 6; seq += 1) {
      // seq 4: escapes and non-ASCII in a string; seq 5: a fraction, outside the subset the text path reads.
      const data = seq === 4 ? { note: 'tab\there "quoted" \\ é 😀', n: -12 } : seq === 5 ? { n: 1.5 } : { n: seq };
      chain.push(chainEvent({ id: `t${seq}`, type: 't', source: 'ag', agent: 'ag', epoch: 'ep', seq, time: '2026-01-01T00:00:00Z', data }, chain.at(-1)?.hash));
    }
    const texts = chain.map(agentLine);
    // seq 2: content changed, hash kept. seq 6: re-hashed over a non-canonical text (a blank): the generic
    // path hashes the canonical form and finds a mismatch, so must the text path.
    texts[1] = (texts[1] as string).replace('"type":"t"', '"type":"x"');
    const spaced = (texts[5] as string).replace(/,"hash":.*$/, '}').replace('"type":"t"', '"type": "t"');
    texts[5] = `${spaced.slice(0, -1)},"hash":"${sha256Hex(spaced)}"}`;
    const body = Buffer.from(texts.join('\n'));

    const run = async (keepText: boolean) => {
      const p = await open(config({ rules: [{ name: 'four', if: 'seq == 4', tag: 'marked' }] }));
      expect(await p.ingest(decodeBatch(body, 'ndjson', undefined, { keepText }), http)).toEqual({ accepted: 6, duplicates: 0, rejected: [] });
      const batch = storage.commits.flatMap((b) => b.events.map((event, i) => ({ event, line: b.lines?.[i] })));
      const verdicts = (await stored()).map((e) => [e.id, e.ingest.integrity]);
      await closeAll();
      await rm(dir, { recursive: true, force: true });
      return { batch, verdicts };
    };
    const generic = await run(false);
    const text = await run(true);
    expect(text.verdicts).toEqual(generic.verdicts);
    expect(text.verdicts).toEqual([['t1', 'verified'], ['t2', 'broken'], ['t3', 'verified'], ['t4', 'verified'], ['t5', 'verified'], ['t6', 'broken']]);
    expect(generic.batch.every((b) => b.line === undefined)).toBe(true);
    // Read from the text wherever the event arrived canonical; each is the canonical JSON of the stored event, tags included.
    expect(text.batch.map((b) => b.line !== undefined)).toEqual([true, true, true, true, false, false]);
    for (const b of text.batch) if (b.line !== undefined) expect(b.line).toBe(fastCanonicalJson(b.event));
    expect(text.batch[3]?.event.tags).toEqual(['marked']);
  });

  it('counts and logs (once a minute per rule) a rule condition that fails on an event; the event is stored as not matched', async () => {
    storage = new CountingStorage({ dataDir: dir });
    await storage.open();
    metrics = new GatewayMetrics();
    const warnings: unknown[] = [];
    const logger = { warn: (obj: unknown) => void warnings.push(obj), error: () => undefined };
    const cfg = config({ rules: [{ name: 'big', if: 'data.n > 5', drop: true }] });
    pipeline = createPipeline({ storage, config: cfg, gatewayName: 'gw-1', metrics, logger });
    await pipeline.start();
    // `data.n > 5` on a string has no overload: the drop rule cannot match, so these are stored.
    const answer = await pipeline.ingest(items({ id: 'r1', source: 's', type: 't', data: { n: 'x' } }, { id: 'r2', source: 's', type: 't', data: { n: 'y' } }, { id: 'r3', source: 's', type: 't', data: { n: 9 } }), http);
    expect(answer).toEqual({ accepted: 2, duplicates: 0, rejected: [{ index: 2, error: 'dropped by rule big' }] });
    expect((await metrics.ruleErrors.get()).values.map((v) => [v.labels.rule, v.value])).toEqual([['big', 2]]);
    expect(warnings).toEqual([{ rule: 'big', error: expect.stringMatching(/overload/) }]);
  });

  it('applies transforms after the integrity check and rules after transforms', async () => {
    const p = await open(
      config({
        transforms: [{ mask: ['data.card'] }, { rename: { 'data.user': 'actor' } }],
        rules: [
          { name: 'root-fail', if: 'type == "auth.login" && outcome == "failure" && actor == "root"', tag: 'security', alert: true },
          { name: 'noisy', if: 'type == "heartbeat"', drop: true },
          { name: 'bad-actor', if: 'true', tag: 'checked' },
        ],
      }),
    );
    const signed = chainEvent({ id: 'x1', type: 'auth.login', source: 'ag', agent: 'ag', epoch: 'e', seq: 1, outcome: 'failure', data: { card: '4111', user: 'root' } }, undefined);
    const answer = await p.ingest(items(signed, { id: 'hb', source: 'ag', type: 'heartbeat' }, { id: 'y', source: 'ag', type: 'x', data: { user: 42 } }), http);
    expect(answer).toEqual({
      accepted: 1,
      duplicates: 0,
      rejected: [
        { index: 1, error: 'dropped by rule noisy' },
        { index: 2, error: expect.stringMatching(/^after transforms: actor/) },
      ],
    });
    const [event] = await stored();
    expect(event).toMatchObject({ id: 'x1', actor: 'root', data: { card: '***' }, tags: ['security', 'checked'], ingest: { integrity: 'verified' } });
    // The stored event is handed to storage with its keys in canonical order (its line is then written without a copy).
    const committed = storage.commits.flatMap((b) => b.events);
    expect(committed).toHaveLength(1);
    const keys = Object.keys(committed[0] as object);
    expect(keys).toEqual([...keys].sort());
    expect(keys).toEqual(['actor', 'agent', 'data', 'epoch', 'hash', 'id', 'ingest', 'outcome', 'seq', 'source', 'tags', 'time', 'type']);
    expect(alerts).toEqual([expect.objectContaining({ kind: 'rule', rule: 'root-fail', event })]);
    expect((await storage.custody({ id: 'hb' }))[0]).toMatchObject({ outcome: 'rejected', reason: 'dropped by rule noisy' });
    expect((await storage.sources()).epochs[0]).toMatchObject({ lastSeq: 1, received: 1 });
  });

  it('raises a rule alert once per stored event: a retry that dedup drops raises none, a copy altered in transit still breaks the chain', async () => {
    const p = await open(config({ rules: [{ name: 'root-fail', if: 'outcome == "failure"', alert: true }] }));
    const e1 = chainEvent({ id: 'r1', type: 'auth.login', source: 'ag', agent: 'ag', epoch: 'e', seq: 1, outcome: 'failure' }, undefined);
    const e2 = chainEvent({ id: 'r2', type: 'auth.login', source: 'ag', agent: 'ag', epoch: 'e', seq: 2, outcome: 'failure' }, e1.hash);
    expect(await p.ingest(items(e1, e2), http)).toEqual({ accepted: 2, duplicates: 0, rejected: [] });
    // The agent sends both again (its cursor did not advance), one in the same batch twice; then a third copy, altered.
    expect(await p.ingest(items(e1, e2, e2), http)).toEqual({ accepted: 0, duplicates: 3, rejected: [] });
    expect(await p.ingest(items({ ...e2, actor: 'mallory' }), http)).toEqual({ accepted: 0, duplicates: 1, rejected: [] });
    expect(alerts.map((a) => [a.kind, a.event.id])).toEqual([
      ['rule', 'r1'],
      ['rule', 'r2'],
      ['chain-break', 'r2'],
    ]);
    expect(await counter(metrics.duplicates)).toBe(4);
  });

  it('gives rules the whole ingest the event is stored with: receivedAt and gateway too', async () => {
    const p = await open(config({ rules: [{ name: 'ingest', if: 'ingest.gateway == "gw-1" && ingest.receivedAt.startsWith("20") && ingest.method == "http"', tag: 'seen' }] }));
    expect(await p.ingest(items({ id: 'ig-1', source: 's', type: 't' }), http)).toMatchObject({ accepted: 1 });
    const [event] = await stored();
    expect(event).toMatchObject({ id: 'ig-1', tags: ['seen'] });
    expect(await counter(metrics.ruleErrors)).toBe(0);
  });

  it('refuses a bad rule at creation, naming it', async () => {
    storage = new CountingStorage({ dataDir: dir });
    expect(() => createPipeline({ storage, config: config({ rules: [{ name: 'oops', if: 'type ==', tag: 'x' }] }), gatewayName: 'g' })).toThrow(/rule "oops"/);
  });

  it('answers overloaded when the queue is full, and fails a batch whose commit fails without acknowledging it', async () => {
    const p = await open(config({}, { maxEvents: 2, maxWaitMs: 1 }), { maxQueuedEvents: 2 });
    let release!: () => void;
    storage.stall = new Promise((r) => (release = r));
    const ev = (id: string) => ({ id, source: 's', type: 't' });
    // Commit 1 is written (stalled) while commit 2 is prepared on top of it; both are under way.
    const first = p.ingest(items(ev('a'), ev('b')), http);
    await until(() => storage.calls === 1);
    const second = p.ingest(items(ev('c'), ev('d'), ev('e')), http);
    await until(() => storage.calls === 2);
    const queued = p.ingest(items(ev('h')), http); // waits for a slot
    await expect(p.ingest(items(ev('f'), ev('g')), http)).rejects.toMatchObject({ code: 'METEORZX_GATEWAY_OVERLOADED', status: 503 });
    storage.failNext = true;
    release();
    storage.stall = undefined;
    await expect(first).rejects.toThrow('disk full');
    // Commit 2 was prepared on top of the failed one (this storage still wrote it): never acknowledged.
    await expect(second).rejects.toMatchObject({ code: 'METEORZX_STORAGE_FAILED' });
    await expect(queued).resolves.toEqual({ accepted: 1, duplicates: 0, rejected: [] });
    // The failed batch was never acknowledged, so its retry is stored, not called a duplicate.
    await expect(p.ingest(items(ev('a')), http)).resolves.toEqual({ accepted: 1, duplicates: 0, rejected: [] });
    await expect(p.ingest(items(ev('c'), ev('d'), ev('e')), http)).resolves.toEqual({ accepted: 0, duplicates: 3, rejected: [] });
    expect((await stored()).map((e) => e.id)).toEqual(['c', 'd', 'e', 'h', 'a']);
    // One write failed (an error without a code); commit 2's write did not fail, its answer did.
    const failures = await metrics.registry.getSingleMetric('meteorzx_gateway_store_commit_failures_total')?.get();
    expect(failures?.values.map((v) => [v.labels.code, v.value])).toEqual([['unknown', 1]]);
    // Every event received is accounted for: stored, duplicate, rejected, or refused (answered with an error, to be
    // retried). The 7 refused were counted as received and nowhere else: they looked lost.
    const refused = await metrics.registry.getSingleMetric('meteorzx_gateway_events_refused_total')?.get();
    expect(refused?.values.map((v) => [v.labels.code, v.value])).toEqual([
      ['METEORZX_GATEWAY_OVERLOADED', 2],
      ['unknown', 2],
      ['METEORZX_STORAGE_FAILED', 3],
    ]);
    const received = await counter(metrics.received);
    expect(received).toBe(12);
    expect((await counter(metrics.accepted)) + (await counter(metrics.duplicates)) + (await counter(metrics.rejected)) + (await counter(metrics.refused))).toBe(received);
  });

  it('drains on close and refuses afterwards', async () => {
    const p = await open(config({}, { maxEvents: 1000, maxWaitMs: 60_000 }));
    const pending = p.ingest(items({ id: 'a', source: 's', type: 't' }), http);
    await p.close();
    await expect(pending).resolves.toEqual({ accepted: 1, duplicates: 0, rejected: [] });
    await expect(p.ingest(items({ id: 'b', source: 's', type: 't' }), http)).rejects.toMatchObject({ code: 'METEORZX_PIPELINE_CLOSED' });
  });
});
