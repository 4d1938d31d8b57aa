import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Level } from 'level';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CustodyOutcome, StoredEvent } from '../../protocols/index.js';
import { LevelStorage } from '../../gateway/storage/level/index.js';
import { commitHex, encodePointer, idKey } from '../../gateway/storage/level/keys.js';

/**
 * `verify` checks the keys that lead from an id or a source to the ledger
 * and to stored events — the dedup pointer `id!`, the custody indexes
 * `ci!` and `cs!` — both ways: every key the ledger calls for is there and
 * right, and every stored key is one the ledger calls for. One store,
 * written by the real storage, copied for each tampering.
 */
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 2, 10, 10, 0, 0);
const NOW = T0 + 30 * DAY;
const iso = (ms: number): string => new Date(ms).toISOString();

let root: string;
let pristine: string;

type Attempt = [outcome: CustodyOutcome, id: string, source: string];

/** One commit as the pipeline makes it: an event per accepted attempt, received at `at`. */
function commitAt(storage: LevelStorage, at: number, attempts: Attempt[]): Promise<unknown> {
  const receivedAt = iso(at);
  const events: StoredEvent[] = attempts
    .filter(([outcome]) => outcome === 'accepted')
    .map(([, id, source]) => ({ id, source, time: receivedAt, type: 'auth.login', ingest: { method: 'http', peer: 'p', receivedAt, gateway: 'gw', integrity: 'unchained' } }));
  const custody = attempts.map(([outcome, id, source]) => ({
    at: receivedAt,
    outcome,
    method: 'http' as const,
    peer: 'p',
    id,
    source,
    ...(outcome === 'rejected' ? { reason: 'type: required' } : {}),
  }));
  return storage.commit({ events, custody, seqs: [] });
}

/**
 * Ledger records, by commit:
 *   1 (due)   1 accepted old-a host-1, 2 accepted old-b host-2
 *   2 (due)   3 accepted again host-1                  — accepted again by commit 6
 *   3 (due)   4 accepted gone host-2                   — accepted again by commit 4
 *   4 (due)   5 accepted gone host-2
 *   5         6 accepted a host-1, 7 accepted b host-2, 8 accepted twice host-1,
 *             9 duplicate a host-1, 10 rejected bad host-2   — twice accepted again by commit 7
 *   6        11 accepted again host-1
 *   7        12 accepted twice host-1
 *   8        13 retained 1…4
 */
async function writeStore(dataDir: string, retain: boolean): Promise<void> {
  const storage = new LevelStorage({ dataDir, clock: () => NOW });
  await storage.open();
  try {
    await commitAt(storage, T0, [['accepted', 'old-a', 'host-1'], ['accepted', 'old-b', 'host-2']]);
    await commitAt(storage, T0 + 1000, [['accepted', 'again', 'host-1']]);
    await commitAt(storage, T0 + 2000, [['accepted', 'gone', 'host-2']]);
    // The pipeline asks dedup about every id it is about to accept; past its window, the id is stored again.
    expect(await storage.seen(['gone'], 7 * DAY)).toEqual(new Set());
    await commitAt(storage, T0 + DAY, [['accepted', 'gone', 'host-2']]);
    await commitAt(storage, NOW - 3000, [
      ['accepted', 'a', 'host-1'],
      ['accepted', 'b', 'host-2'],
      ['accepted', 'twice', 'host-1'],
      ['duplicate', 'a', 'host-1'],
      ['rejected', 'bad', 'host-2'],
    ]);
    expect(await storage.seen(['again'], 7 * DAY)).toEqual(new Set());
    await commitAt(storage, NOW - 2000, [['accepted', 'again', 'host-1']]);
    expect(await storage.seen(['twice'], 1000)).toEqual(new Set());
    await commitAt(storage, NOW - 1000, [['accepted', 'twice', 'host-1']]);
    if (retain) expect(await storage.applyRetention(NOW - 7 * DAY)).toBe(5);
  } finally {
    await storage.close();
  }
}

async function withDb<T>(dataDir: string, fn: (db: Level<string, Buffer>) => Promise<T>): Promise<T> {
  const db = new Level<string, Buffer>(path.join(dataDir, 'store'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

async function verify(dataDir: string, source?: string): Promise<Awaited<ReturnType<LevelStorage['verify']>>> {
  const storage = new LevelStorage({ dataDir, readOnly: true });
  await storage.open();
  try {
    return await storage.verify(source === undefined ? {} : { source });
  } finally {
    await storage.close();
  }
}

type Op = { type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string };
const del = (key: string): Op => ({ type: 'del', key });
const put = (key: string, value: string): Op => ({ type: 'put', key, value: Buffer.from(value) });
const pointer = (commit: number, index: number, receivedMs: number): string => encodePointer({ commit, index, receivedMs });
const ci = (id: string, commit: number): string => `ci!${id}!${commitHex(commit)}`;
const cs = (source: string, commit: number): string => `cs!${source}!${commitHex(commit)}`;

let copies = 0;
/** The problems verify finds in a copy of the store changed by `ops`, as [where, detail]. */
async function tampered(ops: Op[], source?: string): Promise<Array<[string, string]>> {
  copies += 1;
  const dataDir = path.join(root, `copy-${copies}`);
  await cp(pristine, dataDir, { recursive: true });
  await withDb(dataDir, (db) => db.batch(ops));
  return (await verify(dataDir, source)).problems.map((p) => [p.where, p.detail]);
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'meteorzx-verify-keys-'));
  pristine = path.join(root, 'pristine');
  await writeStore(pristine, true);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('an untampered store verifies, its keys and all', () => {
  it('holds every kind of key the checks are about, and verifies with and without retention run', async () => {
    const keys = await withDb(pristine, async (db) => {
      const out: string[] = [];
      for (const prefix of ['id!', 'ci!', 'cs!']) for await (const k of db.keys({ gt: prefix, lt: `${prefix.slice(0, -1)}"` })) out.push(k);
      return out;
    });
    expect(keys).toEqual([
      'id!a',
      'id!again',
      'id!b',
      'id!twice',
      ci('a', 5),
      ci('again', 2), // its commit retained: the pointer went with it, the custody index stays
      ci('bad', 5),
      ci('gone', 3), // both copies retained
      ci('gone', 4), // retention deleted the pointer and left a custody index in its place
      ci('old-a', 1),
      ci('old-b', 1),
      ci('twice', 5),
      cs('host-1', 1),
      cs('host-1', 2),
      cs('host-1', 5),
      cs('host-1', 6),
      cs('host-1', 7),
      cs('host-2', 1),
      cs('host-2', 3),
      cs('host-2', 4),
      cs('host-2', 5),
    ]);
    expect(await verify(pristine)).toMatchObject({ ok: true, ledgerRecords: 13, events: 5, problems: [] });
    expect(await verify(pristine, 'host-2')).toMatchObject({ ok: true, problems: [] });

    const unretained = path.join(root, 'unretained');
    await writeStore(unretained, false);
    expect(await verify(unretained)).toMatchObject({ ok: true, ledgerRecords: 12, events: 10, problems: [] });
  });
});

describe('verify names a dedup pointer (id!) that is missing or wrong', () => {
  const dedupMiss = 'dedup would store a repeat of it, and custody by id misses the record';

  it('a deleted pointer, also one whose id a later commit accepted again', async () => {
    expect(await tampered([del(idKey('a'))])).toEqual([['index id!a', `missing, yet ledger record 6 accepted this event (commit 5, index 0): ${dedupMiss}`]]);
    // Named once, at the copy that holds the pointer, not at the earlier one its ci! key stands for.
    expect(await tampered([del(idKey('twice')), del(idKey('again'))])).toEqual([
      ['index id!again', `missing, yet ledger record 11 accepted this event (commit 6, index 0): ${dedupMiss}`],
      ['index id!twice', `missing, yet ledger record 12 accepted this event (commit 7, index 0): ${dedupMiss}`],
    ]);
  });

  it('a deleted pointer hidden behind a forged ci! key that claims a later accept', async () => {
    expect(await tampered([del(idKey('b')), put(ci('b', 5), '')])).toEqual([
      ['index id!b', `missing, yet ledger record 7 accepted this event (commit 5, index 1): ${dedupMiss}; its ci! key says a later commit accepted the id again, but none did`],
    ]);
  });

  it('a pointer altered to another event, past the events of its block, to a retained block, or to nothing', async () => {
    expect(await tampered([put(idKey('a'), pointer(5, 1, NOW - 3000))])).toEqual([['index id!a', 'points at commit 5, index 1, where ledger record 7 accepted event b']]);
    expect(await tampered([put(idKey('a'), pointer(5, 7, NOW - 3000))])).toEqual([['index id!a', 'points at index 7 of commit 5, whose ledger records accept 3 events']]);
    expect(await tampered([put(idKey('a'), pointer(1, 0, T0))])).toEqual([['index id!a', 'points at commit 1, which holds no event block the ledger accepted']]);
    expect(await tampered([put(idKey('a'), 'garbage')])).toEqual([['index id!a', 'holds "garbage", not a dedup pointer']]);
  });

  it('a pointer led back to the earlier copy of an id accepted again', async () => {
    expect(await tampered([put(idKey('twice'), pointer(5, 2, NOW - 3000))])).toEqual([
      ['index id!twice', 'points at an earlier copy (commit 5, index 2), not at the one ledger record 12 accepted after it (commit 7, index 0)'],
    ]);
  });

  it('a pointer whose receive time was changed, which moves the dedup window', async () => {
    expect(await tampered([put(idKey('a'), pointer(5, 0, T0))])).toEqual([
      ['index id!a', `says the event was received at ${iso(T0)}, ledger record 6 says ${iso(NOW - 3000)}: dedup measures its window from the wrong time`],
    ]);
  });

  it('forged pointers: for an id never stored, and one retention should have deleted', async () => {
    expect(await tampered([put(idKey('ghost'), pointer(5, 0, NOW - 3000)), put(idKey('old-a'), pointer(1, 0, T0))])).toEqual([
      // A key that points nowhere is named as the keys are scanned; one that points at the wrong event, once the counts show it.
      ['index id!old-a', 'points at commit 1, which holds no event block the ledger accepted'],
      ['index id!ghost', 'points at commit 5, index 0, where ledger record 6 accepted event a'],
    ]);
  });
});

describe('verify names a custody index key (ci!, cs!) that is missing or forged', () => {
  it('a deleted ci! key of a duplicate, of a rejection, and of an accepted record whose pointer a later accept took', async () => {
    expect(await tampered([del(ci('a', 5)), del(ci('bad', 5)), del(ci('twice', 5))])).toEqual([
      [`index ${ci('a', 5)}`, 'missing, yet ledger record 9 (commit 5, duplicate) is of this id: custody by id misses it'],
      [`index ${ci('bad', 5)}`, 'missing, yet ledger record 10 (commit 5, rejected) is of this id: custody by id misses it'],
      [`index ${ci('twice', 5)}`, 'missing, yet ledger record 8 (commit 5) accepted this id before commit 7 accepted it again: custody by id misses the first'],
    ]);
  });

  it('a deleted cs! key, also of a commit whose events retention deleted', async () => {
    expect(await tampered([del(cs('host-2', 5)), del(cs('host-2', 3))])).toEqual([
      [`index ${cs('host-2', 3)}`, 'missing, yet ledger record 4 (commit 3) is of this source: custody by source misses the commit'],
      [`index ${cs('host-2', 5)}`, 'missing, yet ledger record 7 (commit 5) is of this source: custody by source misses the commit'],
    ]);
  });

  it('forged ci! keys: an id the commit holds no record of, an accepted id no later commit took, a commit not in the ledger', async () => {
    expect(await tampered([put(ci('ghost', 5), ''), put(ci('b', 5), ''), put(ci('a', 9), '')])).toEqual([
      [`index ${ci('a', 9)}`, 'points at commit 9, which has no custody block in the ledger'],
      [`index ${ci('b', 5)}`, 'points at commit 5, whose ledger record 7 accepted this id, and no later commit accepted it again'],
      [`index ${ci('ghost', 5)}`, 'points at commit 5, whose custody records hold none of this id'],
    ]);
  });

  it('forged cs! keys: a source the commit holds no record of, a commit not in the ledger, and a key that names no commit', async () => {
    expect(await tampered([put(cs('host-1', 3), ''), put(cs('host-3', 99), ''), put('cs!host-1!5', '')])).toEqual([
      ['index cs!host-1!5', 'index key names no commit'],
      [`index ${cs('host-3', 99)}`, 'points at commit 99, which has no custody block in the ledger'],
      [`index ${cs('host-1', 3)}`, 'points at commit 3, whose custody records hold none of this source'],
    ]);
  });
});

describe('a store whose keys are read in several batches', () => {
  it('is judged as one: an id accepted in the first batch and again in the last, and problems in each', async () => {
    const dataDir = path.join(root, 'batches');
    const storage = new LevelStorage({ dataDir, clock: () => NOW });
    await storage.open();
    try {
      // 30 commits of 300 events: over 9,000 keys, read a few thousand at a time while the ledger is walked.
      for (let c = 1; c <= 30; c += 1) await commitAt(storage, NOW - (40 - c) * 1000, Array.from({ length: 300 }, (_, i): Attempt => ['accepted', `e-${c}-${i}`, 'host-1']));
      expect(await storage.seen(['e-1-0'], 1000)).toEqual(new Set());
      await commitAt(storage, NOW, [['accepted', 'e-1-0', 'host-1']]);
    } finally {
      await storage.close();
    }
    expect(await verify(dataDir)).toMatchObject({ ok: true, ledgerRecords: 9001, events: 9001 });
    await withDb(dataDir, (db) => db.batch([del(idKey('e-1-0')), del(idKey('e-1-5')), put(ci('ghost', 15), ''), del(cs('host-1', 20))]));
    const dedupMiss = 'dedup would store a repeat of it, and custody by id misses the record';
    expect((await verify(dataDir)).problems.map((p) => [p.where, p.detail])).toEqual([
      ['index id!e-1-5', `missing, yet ledger record 6 accepted this event (commit 1, index 5): ${dedupMiss}`],
      [`index ${cs('host-1', 20)}`, 'missing, yet ledger record 5701 (commit 20) is of this source: custody by source misses the commit'],
      ['index id!e-1-0', `missing, yet ledger record 9001 accepted this event (commit 31, index 0): ${dedupMiss}`],
      [`index ${ci('ghost', 15)}`, 'points at commit 15, whose custody records hold none of this id'],
    ]);
  });
});

describe('verify --source names the key problems of that source, and those it cannot tell the source of', () => {
  it('splits them by the records they concern', async () => {
    const ops = [del(idKey('a')), del(cs('host-2', 5)), put(idKey('old-b'), pointer(1, 1, T0)), put(ci('ghost', 5), '')];
    const where = async (source?: string): Promise<string[]> => (await tampered(ops, source)).map(([w]) => w);
    expect(await where()).toEqual([`index ${cs('host-2', 5)}`, 'index id!a', 'index id!old-b', `index ${ci('ghost', 5)}`]);
    expect(await where('host-1')).toEqual(['index id!a', `index ${ci('ghost', 5)}`]);
    expect(await where('host-2')).toEqual([`index ${cs('host-2', 5)}`, 'index id!old-b', `index ${ci('ghost', 5)}`]);
  });
});
