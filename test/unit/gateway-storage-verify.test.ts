import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { deflateSync, inflateSync } from 'node:zlib';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { StoredEvent } from '../../protocols/index.js';
import { blockKey, commitHex, custodyKey, encodePointer, idKey, LEGACY_RETENTION_KEY, retainedKey } from '../../gateway/storage/level/keys.js';
import { LevelStorage } from '../../gateway/storage/level/index.js';
import { custodyJson } from '../../gateway/storage/custody-json.js';
import { custodyHash } from '../../gateway/storage/ledger.js';

/**
 * `verify` on LevelDB accounts for every event block and index key, not
 * only those the ledger names, and accepts a missing block only where a
 * `retained` ledger record proves retention deleted it.
 */
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 2, 10, 10, 0, 0);
const NOW = T0 + 30 * DAY;

let dir: string;
let storage: LevelStorage;

const open = async (): Promise<LevelStorage> => {
  storage = new LevelStorage({ dataDir: dir, clock: () => NOW });
  await storage.open();
  return storage;
};

async function withRaw<T>(fn: (db: Level<string, Buffer>) => Promise<T>): Promise<T> {
  await storage.close();
  const db = new Level<string, Buffer>(storage.location, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  try {
    return await fn(db);
  } finally {
    await db.close();
    await open();
  }
}

const event = (id: string, at: number): StoredEvent => ({
  id,
  source: 'host-1',
  time: new Date(at).toISOString(),
  type: 'auth.login',
  ingest: { method: 'http', peer: 'p', receivedAt: new Date(at).toISOString(), gateway: 'gw', integrity: 'unchained' },
});
const commitOf = (events: StoredEvent[]) =>
  storage.commit({
    events,
    custody: events.map((e) => ({ at: e.ingest.receivedAt, outcome: 'accepted' as const, method: 'http' as const, peer: 'p', id: e.id, source: e.source })),
    seqs: [],
  });

const problems = async (): Promise<Array<[string, string]>> => (await storage.verify()).problems.map((p) => [p.where, p.detail]);

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'meteorzx-verify-'));
  await open();
});
afterEach(async () => {
  await storage.close();
  await rm(dir, { recursive: true, force: true });
});

describe('verify accounts for every event block and index key', () => {
  it('names an event block no custody block accounts for, and the index keys that lead queries to it', async () => {
    await commitOf([event('a', T0)]);
    await withRaw(async (db) => {
      const forged = JSON.stringify({ ...event('forged', T0), actor: 'mallory' });
      await db.batch([
        { type: 'put', key: blockKey(0), value: deflateSync(Buffer.from(forged)) },
        { type: 'put', key: `d!20260310!${commitHex(0)}`, value: Buffer.from(`${T0},${T0}`) },
        { type: 'put', key: `s!host-1!20260310!${commitHex(0)}`, value: Buffer.from(`${T0},${T0}`) },
      ]);
    });
    expect((await storage.query({ limit: 10 })).events.map((e) => e.id)).toEqual(['forged', 'a']); // what a query serves
    expect(await problems()).toEqual([
      ['block 0', 'event block with no custody block'],
      ['index d!20260310!0000000000000000', 'index key points at commit 0, which holds no event block the ledger accepted'],
      ['index s!host-1!20260310!0000000000000000', 'index key points at commit 0, which holds no event block the ledger accepted'],
    ]);
  });

  it('names an event block whose custody records accept no event, and one past the ledger head', async () => {
    await commitOf([event('a', T0)]);
    await storage.commit({ events: [], custody: [{ at: new Date(T0).toISOString(), outcome: 'duplicate', method: 'http', peer: 'p', id: 'a', source: 'host-1' }], seqs: [] });
    await withRaw(async (db) => {
      const block = (await db.get(blockKey(1))) as Buffer;
      await db.batch([
        { type: 'put', key: blockKey(2), value: block },
        { type: 'put', key: blockKey(3), value: block },
      ]);
    });
    expect(await problems()).toEqual([
      ['block 2', 'event block, but its custody records accept no event'],
      ['block 3', 'event block past the ledger head (commit 2)'],
    ]);
  });

  it('with a source, names a block the ledger does not account for only when it holds events of that source or cannot be decoded', async () => {
    await commitOf([event('a', T0)]);
    await storage.commit({ events: [], custody: [{ at: new Date(T0).toISOString(), outcome: 'duplicate', method: 'http', peer: 'p', id: 'a', source: 'host-1' }], seqs: [] });
    const block = (source: string): Buffer => deflateSync(Buffer.from(JSON.stringify({ ...event(`of-${source}`, T0), source })));
    await withRaw((db) =>
      db.batch([
        { type: 'put', key: blockKey(0), value: block('host-2') }, // no custody block
        { type: 'put', key: blockKey(2), value: block('host-1') }, // custody records that accept no event
        { type: 'put', key: blockKey(3), value: Buffer.from('not a deflated block') }, // past the head
        // Index keys that lead to block 0: the per-source one names its source, the per-day one none.
        { type: 'put', key: `d!20260310!${commitHex(0)}`, value: Buffer.from(`${T0},${T0}`) },
        { type: 'put', key: `s!host-2!20260310!${commitHex(0)}`, value: Buffer.from(`${T0},${T0}`) },
      ]),
    );
    const bySource = async (source: string): Promise<string[]> => (await storage.verify({ source })).problems.map((p) => p.where);
    const day = `index d!20260310!${commitHex(0)}`;
    const host2 = `index s!host-2!20260310!${commitHex(0)}`;
    expect(await bySource('host-1')).toEqual(['block 2', 'block 3', day]);
    expect(await bySource('host-2')).toEqual(['block 0', 'block 3', day, host2]);
    expect(await bySource('host-3')).toEqual(['block 3', day]);
    expect((await problems()).map(([where]) => where)).toEqual(['block 0', 'block 2', 'block 3', day, host2]);
  });

  it('names an index key that points at no event block', async () => {
    await commitOf([event('a', T0)]);
    await withRaw((db) => db.put(`y!auth.login!20260310!${commitHex(7)}`, Buffer.from(`${T0},${T0}`)));
    expect(await problems()).toEqual([['index y!auth.login!20260310!0000000000000007', 'index key points at commit 7, which holds no event block the ledger accepted']]);
  });
});

describe('verify on a changed custody block', () => {
  it('names a line that is valid JSON but not a record (null, a number, an array) instead of crashing on it', async () => {
    await commitOf([event('a', T0)]);
    await commitOf([event('b', T0), event('c', T0)]);
    await commitOf([event('d', T0)]);
    const original = await withRaw(async (db) => (await db.get(custodyKey(2))) as Buffer);
    for (const [line, kind] of [['null', 'null'], ['5', 'a number'], ['[]', 'an array'], ['"x"', 'a string']]) {
      await withRaw(async (db) => {
        const lines = inflateSync(original).toString().split('\n');
        lines[0] = line as string;
        await db.put(custodyKey(2), deflateSync(Buffer.from(lines.join('\n'))));
      });
      const report = await storage.verify();
      expect(report.ok).toBe(false);
      expect(report.problems[0], line).toEqual({ kind: 'ledger', where: 'after 1', detail: `custody block 2 holds ${kind} on line 1, not a JSON object` });
    }
  });

  it('says what differs when the last record was changed and its own hash made to match', async () => {
    await commitOf([event('a', T0)]);
    await commitOf([event('b', T0)]);
    const forged = await withRaw(async (db) => {
      const record = JSON.parse(inflateSync((await db.get(custodyKey(2))) as Buffer).toString()) as Record<string, unknown>;
      record.peer = 'elsewhere';
      delete record.hash;
      record.hash = custodyHash(record as never);
      await db.put(custodyKey(2), deflateSync(Buffer.from(custodyJson(record))));
      return record.hash as string;
    });
    const head = (await storage.custody({ limit: 10 }))[1];
    expect(head?.hash).toBe(forged);
    const report = await storage.verify();
    expect(report.problems).toHaveLength(1);
    expect(report.problems[0]?.where).toBe('2');
    expect(report.problems[0]?.detail).toMatch(new RegExp(`^ledger ends at record 2 with hash ${forged}, but its head \\(m!head\\) holds [0-9a-f]{64}$`));
  });
});

describe('verify checks the registry against the ledger', () => {
  const at = new Date(T0).toISOString();
  const attempts = async (p = ''): Promise<void> => {
    await commitOf([event(`${p}a`, T0), event(`${p}b`, T0)]);
    await storage.commit({
      events: [{ ...event(`${p}c`, T0), source: 'host-2' }],
      custody: [
        { at, outcome: 'accepted', method: 'http', peer: 'p', id: `${p}c`, source: 'host-2' },
        { at, outcome: 'duplicate', method: 'http', peer: 'p', id: `${p}a`, source: 'host-1' },
        { at, outcome: 'rejected', method: 'http', peer: 'p', reason: 'type: required', source: 'host-1' },
      ],
      seqs: [{ agent: 'host-2', epoch: 'e1', seq: 1, source: 'host-2', at }],
    });
  };
  const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

  it('passes as stored, also when the counts on disk are a checkpoint behind the ledger (a crash image)', async () => {
    await attempts();
    expect(await storage.verify()).toMatchObject({ ok: true });
    await storage.close();
    storage = new LevelStorage({ dataDir: dir, clock: () => NOW, registryCheckpointMs: 3_600_000 });
    await storage.open();
    await attempts('2-');
    // The files as a kill -9 leaves them (close() would write the checkpoint): rs! keys as of an earlier commit than the head.
    const crashed = path.join(dir, 'crashed');
    await cp(storage.location, path.join(crashed, 'store'), { recursive: true });
    const raw = new Level<string, Buffer>(path.join(crashed, 'store'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    await raw.open();
    const head = JSON.parse(((await raw.get('m!head')) as Buffer).toString()) as { commit: number; sourcesAt: number };
    await raw.close();
    expect(head).toMatchObject({ commit: 4, sourcesAt: 2 });
    const image = new LevelStorage({ dataDir: crashed, readOnly: true });
    await image.open();
    try {
      expect((await image.verify()).problems).toEqual([]);
    } finally {
      await image.close();
    }
  });

  it('names a damaged registry key, which fails every commit of that source or epoch', async () => {
    await attempts();
    await withRaw((db) => db.batch([
      { type: 'put', key: 'rs!host-1', value: Buffer.from('{x') },
      { type: 'put', key: 'ra!host-2!e1', value: Buffer.from('null') },
    ]));
    // What a damaged key does to the gateway: its commits fail (below); listings step over it and name it.
    expect((await storage.sources()).damaged).toEqual(['rs!host-1', 'ra!host-2!e1']);
    expect((await storage.verify()).problems).toEqual([
      { kind: 'registry', where: 'rs!host-1', detail: 'holds "{x", not a source\'s counts' },
      { kind: 'registry', where: 'ra!host-2!e1', detail: 'holds "null", not an epoch\'s state' },
    ]);
    expect((await storage.verify({ source: 'host-2' })).problems.map((p) => p.where)).toEqual(['ra!host-2!e1']);
  });

  it('listings step over a damaged registry key and name it; the commits that need it mend it', async () => {
    await attempts();
    await withRaw((db) => db.batch([
      { type: 'put', key: 'rs!host-1', value: Buffer.from('{x') },
      { type: 'put', key: 'ra!host-2!e1', value: Buffer.from('null') },
    ]));
    // Listings step over a damaged key and name it: one key failed the whole /v1/sources (meteorzx status showed
    // no source at all) and the backfill scan of every agent.
    const all = await storage.sources();
    expect(all.damaged).toEqual(['rs!host-1', 'ra!host-2!e1']);
    expect(all.sources.map((x) => x.source)).toEqual(['host-2']);
    expect(await storage.sources({ source: 'host-1' })).toEqual({ epochs: [], sources: [], damaged: ['rs!host-1'] });
    expect(await storage.sources({ source: 'host-2' })).toMatchObject({ sources: [{ source: 'host-2' }], epochs: [], damaged: ['ra!host-2!e1'] });
    expect(await storage.agentEpochs('host-2')).toEqual([]);
    expect(await storage.sources({ limit: 1 })).toMatchObject({ sources: [{ source: 'host-2' }], damaged: ['rs!host-1', 'ra!host-2!e1'] });
    // The commits that need them mend them (registry-repair.ts; gateway-storage-registry-repair.test.ts).
    await expect(commitOf([event('d', T0)])).resolves.toBeDefined();
    const seq = { events: [], custody: [], seqs: [{ agent: 'host-2', epoch: 'e1', seq: 2, source: 'host-2', at }] };
    await expect(storage.commit(seq)).resolves.toBeDefined();
    // The epoch's key is written by its commit; the source's at the next registry checkpoint (here: none yet),
    // meanwhile its mended counts come from memory.
    const after = await storage.sources();
    expect(after.damaged).toEqual(['rs!host-1']);
    expect(after.sources.find((x) => x.source === 'host-1')).toMatchObject({ accepted: 3, duplicates: 1, rejected: 1 });
    // Other sources are stored as before.
    await expect(storage.commit({ events: [{ ...event('e', T0), source: 'host-3' }], custody: [{ at, outcome: 'accepted', method: 'http', peer: 'p', id: 'e', source: 'host-3' }], seqs: [] })).resolves.toBeDefined();
  });

  it('names counts that are not the ledger\'s, a missing key and a key of a source the ledger never saw', async () => {
    await attempts();
    await withRaw(async (db) => {
      const host1 = JSON.parse(((await db.get('rs!host-1')) as Buffer).toString()) as Record<string, number>;
      await db.batch([
        { type: 'put', key: 'rs!host-1', value: json({ ...host1, rejected: 0 }) }, // a rejection hidden
        { type: 'del', key: 'rs!host-2' },
        { type: 'put', key: 'rs!ghost', value: json({ source: 'ghost', lastSeen: at, accepted: 5, duplicates: 0, rejected: 0 }) },
      ]);
    });
    expect((await storage.verify()).problems).toEqual([
      { kind: 'registry', where: 'rs!ghost', detail: 'counts 5 accepted, 0 duplicate, 0 rejected, the ledger 0 accepted, 0 duplicate, 0 rejected (up to commit 2)' },
      { kind: 'registry', where: 'rs!host-1', detail: 'counts 2 accepted, 1 duplicate, 0 rejected, the ledger 2 accepted, 1 duplicate, 1 rejected (up to commit 2)' },
      { kind: 'registry', where: 'rs!host-2', detail: 'missing, yet the ledger holds 1 accepted, 0 duplicate, 0 rejected of this source' },
    ]);
    expect((await storage.verify({ source: 'host-2' })).problems.map((p) => p.where)).toEqual(['rs!host-2']);
  });
});

describe('a damaged ledger head', () => {
  it('is named at open (gateway start, verify --data-dir), not answered with what parsing it threw', async () => {
    await commitOf([event('a', T0)]);
    await storage.close();
    const putHead = async (value: Buffer): Promise<Buffer> => {
      const db = new Level<string, Buffer>(storage.location, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
      await db.open();
      try {
        const before = (await db.get('m!head')) as Buffer;
        await db.put('m!head', value);
        return before;
      } finally {
        await db.close();
      }
    };
    let original: Buffer | undefined;
    for (const value of ['{nope', 'null', '{"commit":"x","n":1}']) {
      const before = await putHead(Buffer.from(value));
      original ??= before;
      const damaged = new LevelStorage({ dataDir: dir, readOnly: true });
      await expect(damaged.open(), value).rejects.toMatchObject({
        code: 'METEORZX_STORAGE_CORRUPT',
        message: `the ledger head (m!head) is damaged: it holds ${JSON.stringify(value)}`,
      });
    }
    // The failed opens let go of the database (or putHead could not open it): put back, the store opens and verifies.
    await putHead(original as Buffer);
    await open();
    expect((await storage.verify()).ok).toBe(true);
  });
});

describe('verify accepts a missing event block only where the ledger records its retention', () => {
  const dueDays = async (): Promise<void> => {
    await commitOf([event('old-1', T0), event('old-2', T0 + 1000)]);
    await commitOf([event('old-3', T0 + DAY)]);
    await commitOf([event('new-1', NOW - 1000)]);
  };

  it('retention deletes whole days, records each batch in the ledger, and the store verifies', async () => {
    await dueDays();
    expect(await storage.applyRetention(NOW - 7 * DAY)).toBe(3);
    const retained = (await storage.custody({})).filter((r) => r.outcome === 'retained');
    expect(retained).toEqual([
      expect.objectContaining({ n: 5, at: new Date(NOW).toISOString(), method: 'retention', from: 1, to: 2, before: new Date(Date.UTC(2026, 3, 2)).toISOString() }),
    ]);
    await withRaw(async (db) => {
      // Each marker names the commit holding that record (commit 4: the three commits, then retention's own).
      expect(((await db.get(retainedKey(1))) as Buffer).toString()).toBe(commitHex(4));
      expect(((await db.get(retainedKey(2))) as Buffer).toString()).toBe(commitHex(4));
      expect(await db.get(blockKey(3))).toBeDefined();
    });
    expect(await storage.verify()).toMatchObject({ ok: true, ledgerRecords: 5, events: 1 });
    // After a reopen too, and commits chain on after retention's record.
    await storage.close();
    await open();
    await commitOf([event('new-2', NOW)]);
    expect(await storage.verify()).toMatchObject({ ok: true, ledgerRecords: 6, events: 2 });
  });

  it('retention goes on past an event block it cannot read, and keeps that one for verify to name', async () => {
    await dueDays();
    await withRaw((db) => db.put(blockKey(1), Buffer.from('not a deflated block')));
    // Before: every pass failed at block 1 ("event block 1 cannot be decoded"), so no due day was ever deleted again.
    expect(await storage.applyRetention(NOW - 7 * DAY)).toBe(1);
    await withRaw(async (db) => {
      expect(await db.get(blockKey(1))).toBeDefined();
      expect(await db.get(blockKey(2))).toBeUndefined();
    });
    expect(await problems()).toEqual([
      ['old-1', expect.stringMatching(/^event block 1 cannot be decoded/)],
      ['old-2', expect.stringMatching(/^event block 1 cannot be decoded/)],
    ]);
  });

  it('retention takes the writer one batch at a time: a commit made meanwhile is not held for the whole pass', async () => {
    for (let i = 0; i < 600; i++) await commitOf([event(`old-${i}`, T0)]);
    const finished: string[] = [];
    const pass = storage.applyRetention(NOW - 7 * DAY).then((n) => (finished.push('retention'), n));
    await new Promise((r) => setTimeout(r, 5));
    const live = commitOf([event('live', NOW)]).then(() => finished.push('commit'));
    expect(await pass).toBe(600);
    await live;
    // 600 commits are three batches (256 per batch): the commit goes in between them, not after the last.
    expect(finished).toEqual(['commit', 'retention']);
    expect((await storage.custody({})).filter((r) => r.outcome === 'retained')).toHaveLength(3);
    expect(await storage.verify()).toMatchObject({ ok: true, events: 1 });
  });

  it('an id stored again between the read of its pointer by retention and the batch that deletes its old block keeps its new pointer', async () => {
    await commitOf([event('old-1', T0), event('old-2', T0 + 1000)]); // commit 1, due
    // The moment the pass has read the id! pointers of commit 1 (beside ingest, before its batch takes the
    // writer), an agent replays old-1 (long past the dedup window): commit 2 stores it again. The pipeline's dedup
    // asked about it first, as it does about every id.
    expect(await storage.seen(['old-1'], 7 * DAY)).toEqual(new Set());
    const db = (storage as unknown as { db: Level<string, Buffer> }).db;
    const getMany = db.getMany.bind(db) as (keys: string[]) => Promise<Array<Buffer | undefined>>;
    let replay: Promise<unknown> | undefined;
    db.getMany = (async (keys: string[]) => {
      const values = await getMany(keys);
      if (replay === undefined && keys.includes(idKey('old-1'))) replay = commitOf([event('old-1', NOW)]);
      return values;
    }) as typeof db.getMany;
    expect(await storage.applyRetention(NOW - 7 * DAY)).toBe(2);
    expect(replay).toBeDefined();
    await replay;
    await withRaw(async (db) => {
      expect((await db.get(idKey('old-1')))?.toString()).toBe(encodePointer({ commit: 2, index: 0, receivedMs: NOW }));
      expect(await db.get(idKey('old-2'))).toBeUndefined();
    });
    // Dedup finds it (a later repeat is a duplicate, not stored twice), and so does custody by id.
    expect(await storage.seen(['old-1', 'old-2'], 7 * DAY)).toEqual(new Set(['old-1']));
    expect((await storage.custody({ id: 'old-1' })).map((r) => [r.n, r.outcome])).toEqual([
      [1, 'accepted'],
      [3, 'accepted'],
    ]);
    expect(await storage.verify()).toMatchObject({ ok: true, events: 1 });
  });

  it('names a block deleted behind the gateway with a retention marker of its own making', async () => {
    await dueDays();
    await withRaw(async (db) => {
      await db.batch([
        { type: 'del', key: blockKey(3) },
        { type: 'put', key: retainedKey(3), value: Buffer.alloc(0) },
      ]);
    });
    const [first] = await problems();
    expect(first).toEqual(['new-1', expect.stringMatching(/^stored event is missing; its retention marker is from before retention was recorded in the ledger/)]);
  });

  it('names a block deleted behind the gateway whose marker points at a real retention record that did not cover it', async () => {
    await dueDays();
    await storage.applyRetention(NOW - 7 * DAY); // commit 4: retains 1 and 2
    await withRaw(async (db) => {
      await db.batch([
        { type: 'del', key: blockKey(3) },
        { type: 'put', key: retainedKey(3), value: Buffer.from(commitHex(4)) },
      ]);
    });
    expect((await problems())[0]).toEqual(['new-1', 'stored event is missing; its retention marker names no retention record in the ledger']);
  });

  it('names a block whose retention record covers its commit but not its receive time', async () => {
    await commitOf([event('old-1', T0)]);
    await commitOf([event('new-1', NOW - 1000)]);
    await commitOf([event('old-2', T0 + 1000)]); // received later than commit 2 by the ledger's order, earlier by the clock
    await storage.applyRetention(NOW - 7 * DAY); // deletes 1 and 3: its record covers 1…3
    expect((await storage.custody({})).filter((r) => r.outcome === 'retained')).toEqual([expect.objectContaining({ from: 1, to: 3 })]);
    expect((await storage.verify()).ok).toBe(true);
    await withRaw(async (db) => {
      await db.batch([
        { type: 'del', key: blockKey(2) },
        { type: 'put', key: retainedKey(2), value: Buffer.from(commitHex(4)) },
      ]);
    });
    expect((await problems())[0]).toEqual([
      'new-1',
      `stored event is missing; retention (ledger record 4) deleted only events received before ${new Date(Date.UTC(2026, 3, 2)).toISOString()}`,
    ]);
  });

  it('retention does not delete a block that an index key dates wrongly: the ledger says when it was received', async () => {
    await commitOf([event('new-1', NOW - 1000)]);
    await withRaw((db) => db.put(`d!20260310!${commitHex(1)}`, Buffer.from(`${T0},${T0}`)));
    expect(await storage.applyRetention(NOW - 7 * DAY)).toBe(0);
    expect((await storage.query({ source: 'host-1', limit: 10 })).events.map((e) => e.id)).toEqual(['new-1']);
  });

  it('adopts the markers of an older store whose events were due, and leaves the others named', async () => {
    await dueDays();
    // What retention wrote before it was recorded in the ledger: the block, its index keys and its dedup pointers gone, an empty marker.
    await withRaw(async (db) => {
      await db.batch([
        { type: 'del', key: blockKey(1) },
        { type: 'del', key: `d!20260310!${commitHex(1)}` },
        { type: 'del', key: `s!host-1!20260310!${commitHex(1)}` },
        { type: 'del', key: `y!auth.login!20260310!${commitHex(1)}` },
        { type: 'del', key: idKey('old-1') },
        { type: 'del', key: idKey('old-2') },
        { type: 'put', key: retainedKey(1), value: Buffer.alloc(0) },
        // A forged one, for events received a second ago.
        { type: 'del', key: blockKey(3) },
        { type: 'put', key: retainedKey(3), value: Buffer.alloc(0) },
      ]);
    });
    expect((await problems()).map(([where]) => where).slice(0, 3)).toEqual(['old-1', 'old-2', 'new-1']);
    expect(await storage.applyRetention(NOW - 7 * DAY)).toBe(1); // old-3; old-1 and old-2 were gone already
    expect((await storage.custody({})).filter((r) => r.outcome === 'retained')).toEqual([
      expect.objectContaining({ from: 1, to: 1 }), // the adoption
      expect.objectContaining({ from: 2, to: 2 }), // the deletion
    ]);
    expect((await problems()).map(([where]) => where)).toEqual([
      'new-1',
      'index d!20260409!0000000000000003',
      'index s!host-1!20260409!0000000000000003',
      'index y!auth.login!20260409!0000000000000003',
      'index id!new-1',
    ]);
    await withRaw(async (db) => {
      expect(await db.get(LEGACY_RETENTION_KEY)).toBeUndefined(); // one is left: the next run looks again
    });
  });

  it('on a running store, verify sees one moment: commits and retention landing meanwhile are no problem', async () => {
    for (let day = 0; day < 20; day += 1) await commitOf([event(`d${day}-a`, T0 + day * DAY), event(`d${day}-b`, T0 + day * DAY + 1)]);
    const writes = (async () => {
      for (let i = 0; i < 20; i += 1) await commitOf([event(`live-${i}`, NOW - 1000)]);
    })();
    const [report] = await Promise.all([storage.verify(), storage.applyRetention(NOW - 15 * DAY), writes, storage.verify()]);
    expect(report.problems).toEqual([]);
    expect(await storage.verify()).toMatchObject({ ok: true, problems: [] });
  });
});

describe('a retention write that fails', () => {
  const ioError = Object.assign(new Error('IO error: 000013.log: No space left on device'), { code: 'LEVEL_IO_ERROR' });

  /** Makes the store's next chained batch write fail with `ioError`, after calling `during` (while it is under way). Returns the database. */
  function failNextBatchWrite(during: () => void = () => undefined, error: Error = ioError): Level<string, Buffer> {
    const db = (storage as unknown as { db: Level<string, Buffer> }).db;
    const batch = db.batch.bind(db) as () => ReturnType<Level<string, Buffer>['batch']>;
    db.batch = (() => {
      db.batch = batch as typeof db.batch;
      const chained = batch();
      chained.write = async () => {
        during();
        await chained.close();
        throw error;
      };
      return chained;
    }) as typeof db.batch;
    return db;
  }

  it('fails with what happened, and so do the commits queued behind its batch', async () => {
    await commitOf([event('old-1', T0)]);
    // The next write (the retention batch) fails; a commit is called while it is under way, queued behind it.
    let queued: Promise<unknown> | undefined;
    const db = failNextBatchWrite(() => {
      queued = commitOf([event('live', NOW)]).then(
        () => 'stored',
        (err: unknown) => err,
      );
    });
    await expect(storage.applyRetention(NOW - 7 * DAY)).rejects.toMatchObject({
      code: 'METEORZX_STORAGE_FAILED',
      message: 'retention write failed: IO error: 000013.log: No space left on device',
    });
    expect(queued).toBeDefined();
    expect(await queued).toMatchObject({
      code: 'METEORZX_STORAGE_FAILED',
      message: 'the retention write before this commit failed (IO error: 000013.log: No space left on device); nothing of this commit was written',
      cause: ioError,
    });
    // Its cause is an I/O error: the store reopens its database (LevelDB refuses every write after one), then stores again.
    const reopening = (storage as unknown as { reopening?: Promise<void> }).reopening;
    expect(reopening).toBeDefined();
    await reopening;
    expect((storage as unknown as { db: Level<string, Buffer> }).db).not.toBe(db);
    await commitOf([event('after', NOW)]);
    expect((await storage.query({ source: 'host-1', limit: 10 })).events.map((e) => e.id)).toEqual(['old-1', 'after']);
    expect(await storage.verify()).toMatchObject({ ok: true, events: 2 });
  });

  it('fails with what happened when it is not an I/O error, and the commits queued behind it are stored', async () => {
    await commitOf([event('old-1', T0)]);
    const refused = Object.assign(new Error('Invalid argument: WriteBatch has wrong count'), { code: 'LEVEL_INVALID_VALUE' });
    let queued: Promise<unknown> | undefined;
    const db = failNextBatchWrite(() => {
      queued = commitOf([event('live', NOW)]).then(
        () => 'stored',
        (err: unknown) => err,
      );
    }, refused);
    await expect(storage.applyRetention(NOW - 7 * DAY)).rejects.toMatchObject({ code: 'METEORZX_STORAGE_FAILED', message: `retention write failed: ${refused.message}` });
    // Before the fix: failed too ("the retention write before this commit failed"), though nothing of it was built on that write.
    expect(await queued).toBe('stored');
    expect((storage as unknown as { reopening?: Promise<void>; db: unknown }).reopening).toBeUndefined();
    expect((storage as unknown as { db: unknown }).db).toBe(db);
    expect((await storage.query({ source: 'host-1', limit: 10 })).events.map((e) => e.id)).toEqual(['old-1', 'live']);
    expect(await storage.verify()).toMatchObject({ ok: true, events: 2 });
    // The next retention run deletes what the failed one did not.
    await storage.applyRetention(NOW - 7 * DAY);
    expect((await storage.query({ source: 'host-1', limit: 10 })).events.map((e) => e.id)).toEqual(['live']);
  });

  it('with no commit behind it, still reopens the database: the next commit is not the one to fail on the dead handle', async () => {
    await commitOf([event('old-1', T0)]);
    const db = failNextBatchWrite();
    await expect(storage.applyRetention(NOW - 7 * DAY)).rejects.toMatchObject({ code: 'METEORZX_STORAGE_FAILED' });
    const reopening = (storage as unknown as { reopening?: Promise<void> }).reopening;
    expect(reopening).toBeDefined();
    await reopening;
    expect((storage as unknown as { db: Level<string, Buffer> }).db).not.toBe(db);
    await commitOf([event('after', NOW)]);
    expect((await storage.query({ source: 'host-1', limit: 10 })).events.map((e) => e.id)).toEqual(['old-1', 'after']);
  });
});

describe('verify with an anchor (a record number and hash kept outside the gateway)', () => {
  it('reports the ledger head, and names an anchor whose custody block cannot be read', async () => {
    await commitOf([event('a', T0)]);
    await commitOf([event('b', T0)]);
    await commitOf([event('c', T0)]);
    const head = storage.ledgerHead();
    const report = await storage.verify();
    expect(report.ledgerHead).toEqual(head);
    expect(report.ledgerHead?.n).toBe(3);
    const second = (await storage.custody({ limit: 10 }))[1];
    expect(await storage.verify({ anchor: { n: 2, hash: second?.hash as string } })).toMatchObject({ ok: true });
    await withRaw(async (db) => db.put(custodyKey(2), Buffer.from('not deflate')));
    const damaged = await storage.verify({ anchor: { n: 2, hash: second?.hash as string } });
    expect(damaged.problems.map((p) => [p.where, p.detail.replace(/:.*/s, '')])).toContainEqual(['anchor 2', "the anchor's record 2 was not found (a custody block could not be read)"]);
  });
});
