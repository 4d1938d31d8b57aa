import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { BatchItem, StoredEvent } from '../../protocols/index.js';
import { parseGatewayConfig } from '../../gateway/config.js';
import { createPipeline } from '../../gateway/pipeline/index.js';
import { LevelStorage, type LevelStorageOptions } from '../../gateway/storage/level/level-storage.js';
import { RegistryCache } from '../../gateway/storage/level/registry-cache.js';
import type { CommitBatch } from '../../gateway/storage/types.js';

/**
 * The registry held in memory (`ra!` epochs, `rs!` sources) is bounded, and
 * an entry it evicted reads back from the store exactly as it was: gaps,
 * counts, chain heads and GET /v1/sources (storage.sources()) are the same
 * as if it had never left.
 */

const AT = Date.UTC(2026, 2, 10, 10);

interface Seen {
  source: string;
  agent?: string;
  epoch?: string;
  seq?: number;
  hash?: string;
  outcome?: 'accepted' | 'duplicate';
}

let ids = 0;
function batchOf(seen: Seen[], ms = 0): CommitBatch {
  const receivedAt = new Date(AT + ms).toISOString();
  const events: StoredEvent[] = [];
  const custody: CommitBatch['custody'][number][] = [];
  const seqs: CommitBatch['seqs'][number][] = [];
  for (const s of seen) {
    const id = `e${(ids += 1)}`;
    const outcome = s.outcome ?? 'accepted';
    if (outcome === 'accepted') {
      events.push({
        id,
        source: s.source,
        time: receivedAt,
        type: 't',
        ...(s.agent !== undefined ? { agent: s.agent, epoch: s.epoch, seq: s.seq } : {}),
        ingest: { method: 'http', peer: 'p', receivedAt, gateway: 'gw', integrity: 'unchained' },
      });
    }
    custody.push({ at: receivedAt, outcome, method: 'http', peer: 'p', id, source: s.source });
    if (s.agent !== undefined && s.epoch !== undefined && s.seq !== undefined) {
      seqs.push({ agent: s.agent, epoch: s.epoch, seq: s.seq, source: s.source, at: receivedAt, ...(s.hash !== undefined ? { hash: s.hash } : {}) });
    }
  }
  return { events, custody, seqs };
}

/** `n` commits, each naming one new source and one new epoch: pushes everything else out of a small registry. */
async function flood(storage: LevelStorage, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i += 1) await storage.commit(batchOf([{ source: `${tag}-s${i}`, agent: 'flood', epoch: `${tag}-e${i}`, seq: 1 }]));
}

describe('bounded registry', () => {
  const dirs: string[] = [];
  const open: LevelStorage[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });
  async function store(options: Omit<LevelStorageOptions, 'dataDir'> = {}, dir?: string): Promise<LevelStorage> {
    const dataDir = dir ?? (await mkdtemp(path.join(os.tmpdir(), 'meteorzx-registry-')));
    if (dir === undefined) dirs.push(dataDir);
    const storage = new LevelStorage({ dataDir, ...options });
    await storage.open();
    open.push(storage);
    return storage;
  }
  const small = { registryMaxEpochs: 4, registryMaxSources: 4 };

  it('100,000 events, each with a new source and a new epoch, through the pipeline: memory holds the bound, not every entry', async () => {
    const storage = await store();
    const p = createPipeline({ storage, config: parseGatewayConfig({ dataDir: '/unused' }), gatewayName: 'g' });
    await p.start();
    try {
      const N = 100_000;
      for (let n = 0; n < N; ) {
        const items: BatchItem[] = [];
        for (let i = 0; i < 1000; i += 1, n += 1) {
          items.push({ index: i, value: { type: 't', source: `s${n}`, id: `i${n}`, agent: 'a', epoch: `e${n}`, seq: 3 }, bytes: 80 });
        }
        expect((await p.ingest(items, { method: 'http', peer: 'x' })).accepted).toBe(1000);
      }
      const held = storage.registryHeld();
      // The defaults (25,000 each), plus at most the commits in flight.
      expect(held.sources).toBeLessThanOrEqual(25_000 + 2_000);
      expect(held.epochs).toBeLessThanOrEqual(25_000 + 2_000);
      expect(held.gaps).toBe(held.epochs); // one gap (seqs 1–2) each
      const internals = storage as unknown as { sourceStates: { size: number }; epochs: { size: number } };
      expect(internals.sourceStates.size).toBeLessThan(N / 2);
      expect(internals.epochs.size).toBeLessThan(N / 2);
      // Evicted or not, every entry is listed.
      const listed = await storage.sources();
      expect(listed.sources).toHaveLength(N);
      expect(listed.epochs).toHaveLength(N);
    } finally {
      await p.close();
    }
  }, 120_000);

  it('a gap is found across an eviction: seqs 1–5, the epoch evicted, then 7 → gap 6, and the epoch is still listed', async () => {
    const storage = await store(small);
    await storage.commit(batchOf([1, 2, 3, 4, 5].map((seq) => ({ source: 'host-e', agent: 'ag', epoch: 'E', seq }))));
    await flood(storage, 20, 'x');
    expect(storage.registryHeld().epochs).toBeLessThanOrEqual(4);
    const mid = (await storage.sources()).epochs.find((e) => e.epoch === 'E');
    expect(mid).toMatchObject({ agent: 'ag', lastSeq: 5, received: 5, gaps: [] });

    await storage.commit(batchOf([{ source: 'host-e', agent: 'ag', epoch: 'E', seq: 7 }], 1000));
    const after = (await storage.sources()).epochs.find((e) => e.epoch === 'E');
    expect(after).toMatchObject({ lastSeq: 7, received: 6, gaps: [{ from: 6, to: 6 }] });

    // Evicted again, the gap closes when 6 arrives.
    await flood(storage, 20, 'y');
    await storage.commit(batchOf([{ source: 'host-e', agent: 'ag', epoch: 'E', seq: 6 }], 2000));
    expect((await storage.sources()).epochs.find((e) => e.epoch === 'E')).toMatchObject({ lastSeq: 7, received: 7, gaps: [] });
  });

  it('the same through the pipeline: the gap reported by GET /v1/sources after the epoch was pushed out', async () => {
    const storage = await store(small);
    const p = createPipeline({ storage, config: parseGatewayConfig({ dataDir: '/unused' }), gatewayName: 'g' });
    await p.start();
    try {
      const ev = (n: number, source: string, epoch: string, seq: number): BatchItem => ({
        index: 0,
        value: { type: 't', source, id: `p${source}-${epoch}-${seq}-${n}`, agent: 'ag', epoch, seq },
        bytes: 80,
      });
      for (let seq = 1; seq <= 5; seq += 1) await p.ingest([ev(0, 'host-e', 'E', seq)], { method: 'http', peer: 'x' });
      for (let i = 0; i < 20; i += 1) await p.ingest([ev(i, `other-${i}`, `O${i}`, 1)], { method: 'http', peer: 'x' });
      expect(storage.registryHeld().epochs).toBeLessThanOrEqual(4);
      await p.ingest([ev(0, 'host-e', 'E', 7)], { method: 'http', peer: 'x' });
      const listed = await storage.sources();
      expect(listed.epochs.find((e) => e.epoch === 'E')).toMatchObject({ lastSeq: 7, received: 6, gaps: [{ from: 6, to: 6 }] });
      expect(listed.sources.find((s) => s.source === 'host-e')).toMatchObject({ accepted: 6, duplicates: 0, rejected: 0 });
      expect(listed.epochs).toHaveLength(21);
    } finally {
      await p.close();
    }
  });

  it('an evicted source counts on: before its first checkpoint (held by the writer), after one (its rs! key), and after a reopen', async () => {
    let now = 0;
    const storage = await store({ ...small, clock: () => now, registryCheckpointMs: 1000 });
    const three = () => batchOf([{ source: 'host-c' }, { source: 'host-c', outcome: 'duplicate' }, { source: 'host-c' }]);
    await storage.commit(three());
    // No checkpoint yet: host-c has no rs! key; evicted, it is read back from the writer's durable states.
    await flood(storage, 20, 'x');
    expect(storage.registryHeld().sources).toBeLessThanOrEqual(4);
    await storage.commit(three());
    const count = async () => (await storage.sources()).sources.find((s) => s.source === 'host-c');
    expect(await count()).toMatchObject({ accepted: 4, duplicates: 2 });

    // A checkpoint (the first commit a second later) writes rs!; evicted again, it is read from there.
    now += 2000;
    await flood(storage, 20, 'y');
    await storage.commit(three());
    expect(await count()).toMatchObject({ accepted: 6, duplicates: 3 });

    const dir = path.dirname(storage.location);
    await storage.close();
    const reopened = await store(small, dir);
    expect((await reopened.sources()).sources.find((s) => s.source === 'host-c')).toMatchObject({ accepted: 6, duplicates: 3 });
    expect((await reopened.sources()).sources).toHaveLength(41);
  });

  it('an evicted epoch gives its chain head back (the integrity check after it was pushed out)', async () => {
    const storage = await store(small);
    await storage.commit(batchOf([{ source: 'h', agent: 'ag', epoch: 'E', seq: 1, hash: 'h1' }, { source: 'h', agent: 'ag', epoch: 'E', seq: 2, hash: 'h2' }]));
    await flood(storage, 20, 'x');
    expect(await storage.chainHead('ag', 'E')).toEqual({ seq: 2, hash: 'h2' });
    expect(await storage.chainHead('ag', 'never')).toBeUndefined();
  });

  it('entries of commits not yet written are not evicted: pipelined commits plan on their states, not on the disk behind them', async () => {
    const storage = await store({ registryMaxEpochs: 1, registryMaxSources: 1 });
    // Hold every write: all commits are planned, one on top of the other, before any is on disk.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const db = (storage as unknown as { db: { batch(): { write(o?: object): Promise<void> } } }).db;
    const original = db.batch.bind(db);
    db.batch = () => {
      const real = original();
      const write = real.write.bind(real);
      real.write = async (o?: object) => {
        await gate;
        return write(o);
      };
      return real;
    };
    const commits: Promise<unknown>[] = [];
    for (let i = 0; i < 12; i += 1) {
      const e = i % 3 === 0 ? 'A' : i % 3 === 1 ? 'B' : 'C';
      commits.push(storage.commit(batchOf([{ source: `src-${e}`, agent: 'ag', epoch: e, seq: Math.floor(i / 3) * 2 + 1 }], i)));
    }
    await new Promise((r) => setTimeout(r, 20));
    release();
    await Promise.all(commits);
    const listed = await storage.sources();
    for (const e of ['A', 'B', 'C']) {
      // seqs 1, 3, 5, 7: four received, and the holes between them.
      expect(listed.epochs.find((x) => x.epoch === e)).toMatchObject({
        lastSeq: 7,
        received: 4,
        gaps: [
          { from: 2, to: 2 },
          { from: 4, to: 4 },
          { from: 6, to: 6 },
        ],
      });
      expect(listed.sources.find((x) => x.source === `src-${e}`)).toMatchObject({ accepted: 4 });
    }
  });
});

describe('RegistryCache', () => {
  it('evicts the least recently set entries beyond its bound, by count and by weight', () => {
    const c = new RegistryCache<number[]>({ max: 3, maxWeight: 5, weigh: (v) => v.length });
    c.set('a', [1]);
    c.set('b', [1]);
    c.set('c', [1]);
    c.set('a', [1, 2]); // a is now the most recent
    c.set('d', []);
    c.trim(0);
    expect([c.has('a'), c.has('b'), c.has('c'), c.has('d')]).toEqual([true, false, true, true]);
    expect(c.weight).toBe(3);
    c.set('e', [1, 2, 3, 4]);
    c.trim(0);
    // Four entries of weight 7: c goes (three left, weight 6 still over 5), then a.
    expect([c.has('a'), c.has('c'), c.has('d'), c.has('e')]).toEqual([false, false, true, true]);
    expect(c.weight).toBe(4);
  });

  it('keeps an entry set by a commit beyond the durable one, and lets it go once that commit is durable', () => {
    const c = new RegistryCache<string>({ max: 1 });
    c.set('a', 'planned', 5);
    c.set('b', 'planned', 6);
    c.trim(4);
    expect(c.size).toBe(2);
    c.trim(5);
    expect([c.has('a'), c.has('b')]).toEqual([false, true]);
  });

  it('a value read from the store does not replace one a commit set meanwhile', () => {
    const c = new RegistryCache<string>({ max: 2 });
    c.set('a', 'planned', 3);
    c.setIfAbsent('a', 'stale');
    c.setIfAbsent('b', 'read');
    expect([c.get('a'), c.get('b')]).toEqual(['planned', 'read']);
  });
});
