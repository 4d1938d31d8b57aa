import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { StoredEvent } from '../../protocols/index.js';
import { blockKey, custodyKey, encodePointer, idKey } from '../../gateway/storage/level/keys.js';
import { LevelStorage } from '../../gateway/storage/level/index.js';
import { MAX_DAMAGED_PER_PAGE } from '../../gateway/storage/level/level-query.js';
import type { EventQuery } from '../../gateway/storage/types.js';

/**
 * A block that no longer decodes (a flipped byte on disk) costs its own
 * events, not the page around them: reads skip it and name it.
 */
const T0 = Date.UTC(2026, 2, 10, 10, 0, 0);

let dir: string;
let storage: LevelStorage;

const open = async (): Promise<void> => {
  storage = new LevelStorage({ dataDir: dir, clock: () => T0 });
  await storage.open();
};

/** Flips a byte in the middle of each key's value (or writes the value given), with the store closed (as damage on disk comes). */
async function damage(keys: string[], values: Record<string, string> = {}): Promise<void> {
  await storage.close();
  const db = new Level<string, Buffer>(storage.location, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  for (const key of keys) {
    const value = (await db.get(key)) as Buffer;
    value.writeUInt8((value[value.length >> 1] as number) ^ 0xff, value.length >> 1);
    await db.put(key, value);
  }
  for (const [key, value] of Object.entries(values)) await db.put(key, Buffer.from(value));
  await db.close();
  await open();
}

const event = (id: string, at: number): StoredEvent => ({
  id,
  source: 'host-1',
  time: new Date(at).toISOString(),
  type: 'auth.login',
  ingest: { method: 'http', peer: 'p', receivedAt: new Date(at).toISOString(), gateway: 'gw', integrity: 'unchained' },
});

/** Commits `blocks` blocks of `per` events each, one second apart; commit k (1-based) holds ids `k-0`…. */
async function fill(blocks: number, per: number): Promise<void> {
  for (let b = 1; b <= blocks; b += 1) {
    const events = Array.from({ length: per }, (_, i) => event(`${b}-${i}`, T0 + b * 1000));
    await storage.commit({
      events,
      custody: events.map((e) => ({ at: e.ingest.receivedAt, outcome: 'accepted' as const, method: 'http' as const, peer: 'p', id: e.id, source: e.source })),
      seqs: [],
    });
  }
}

/** Every page of a query: the ids served and the blocks named damaged, in order. */
async function allPages(q: Omit<EventQuery, 'cursor'>): Promise<{ ids: string[]; damaged: number[]; pages: number }> {
  const ids: string[] = [];
  const damaged: number[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await storage.query({ ...q, ...(cursor === undefined ? {} : { cursor }) });
    pages += 1;
    ids.push(...page.events.map((e) => e.id));
    damaged.push(...(page.damaged ?? []).map((d) => d.block ?? NaN));
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return { ids, damaged, pages };
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'meteorzx-damaged-'));
  await open();
});
afterEach(async () => {
  await storage.close();
  await rm(dir, { recursive: true, force: true });
});

describe('reading a store with a damaged event block', () => {
  it('serves the neighbours of a damaged block and names it, with its receive times and the reason', async () => {
    await fill(3, 3);
    await damage([blockKey(2)]);
    const page = await storage.query({ limit: 100 });
    expect(page.events.map((e) => e.id)).toEqual(['1-0', '1-1', '1-2', '3-0', '3-1', '3-2']);
    expect(page.nextCursor).toBeUndefined();
    const at = new Date(T0 + 2000).toISOString();
    expect(page.damaged).toEqual([
      { kind: 'event', block: 2, receivedFrom: at, receivedTo: at, events: 3, error: expect.stringMatching(/^event block 2 cannot be decoded: /) as unknown },
    ]);
    // Through the per-source and per-type indexes too.
    expect((await storage.query({ limit: 100, source: 'host-1' })).damaged?.map((d) => d.block)).toEqual([2]);
    expect((await storage.query({ limit: 100, type: 'auth.login' })).events).toHaveLength(6);
  });

  it('pages go on past a damaged block, and each page names it once', async () => {
    await fill(5, 2);
    await damage([blockKey(2), blockKey(4)]);
    for (const limit of [1, 2, 3, 4, 100]) {
      const got = await allPages({ limit });
      expect(got.ids, `limit ${limit}`).toEqual(['1-0', '1-1', '3-0', '3-1', '5-0', '5-1']);
      expect(got.damaged, `limit ${limit}`).toEqual([2, 4]);
    }
  });

  it('a page names at most MAX_DAMAGED_PER_PAGE damaged blocks, and its cursor goes on past them', async () => {
    const blocks = MAX_DAMAGED_PER_PAGE + 5;
    await fill(blocks + 1, 1);
    await damage(Array.from({ length: blocks }, (_, i) => blockKey(i + 1)));
    const first = await storage.query({ limit: 100 });
    expect(first.events).toEqual([]);
    expect(first.damaged).toHaveLength(MAX_DAMAGED_PER_PAGE);
    expect(first.nextCursor).toBeDefined();
    const got = await allPages({ limit: 100 });
    expect(got.ids).toEqual([`${blocks + 1}-0`]);
    expect(got.damaged).toEqual(Array.from({ length: blocks }, (_, i) => i + 1));
    expect(got.pages).toBe(2);
  });

  it('an event read by its id from a damaged block is named, not a failure', async () => {
    await fill(2, 2);
    await damage([blockKey(1)]);
    const page = await storage.query({ limit: 10, id: '1-1' });
    expect(page.events).toEqual([]);
    expect(page.damaged).toMatchObject([{ kind: 'event', block: 1, receivedFrom: new Date(T0 + 1000).toISOString(), events: 2 }]);
    expect((await storage.query({ limit: 10, id: '2-1' })).events.map((e) => e.id)).toEqual(['2-1']);
  });

  it('an id whose dedup pointer is damaged is named, not answered as if it were never stored', async () => {
    await fill(2, 2);
    const at = T0 + 2000;
    await damage([idKey('2-0')], {
      [idKey('1-0')]: 'x', // not a pointer at all
      [idKey('2-1')]: encodePointer({ commit: 2, index: 0, receivedMs: at }), // another event's place
      [idKey('1-1')]: encodePointer({ commit: 2, index: 5, receivedMs: at }), // past the block's end
      [idKey('3-0')]: encodePointer({ commit: 9, index: 0, receivedMs: at }), // a block never stored
    });
    // Before: each answered no event and named nothing, as for an id never stored; only meteorzx verify found them.
    const notPointer = await storage.query({ limit: 10, id: '1-0' });
    expect(notPointer).toEqual({ events: [], damaged: [{ kind: 'pointer', key: 'id!1-0', error: 'dedup pointer id!1-0 holds "x", not a dedup pointer' }] });
    expect((await storage.query({ limit: 10, id: '2-1' })).damaged).toEqual([
      { kind: 'pointer', key: 'id!2-1', block: 2, error: 'dedup pointer id!2-1 points at commit 2, index 0, which holds event "2-0"' },
    ]);
    expect((await storage.query({ limit: 10, id: '1-1' })).damaged).toEqual([
      { kind: 'pointer', key: 'id!1-1', block: 2, error: 'dedup pointer id!1-1 points at commit 2, index 5, which holds 2 events' },
    ]);
    expect((await storage.query({ limit: 10, id: '3-0' })).damaged).toEqual([
      { kind: 'pointer', key: 'id!3-0', block: 9, error: 'dedup pointer id!3-0 points at commit 9, which has no event block' },
    ]);
    // A byte flipped in the receive time still leads to the event, which is this id's: served, as before.
    expect(await storage.query({ limit: 10, id: '2-0' })).toEqual({ events: [expect.objectContaining({ id: '2-0' })] });
    // A damaged pointer is named whatever the other filters; an id never stored, or one whose event they leave out, is not.
    expect(await storage.query({ limit: 10, id: '1-0', type: 'other' })).toMatchObject({ events: [], damaged: [{ key: 'id!1-0' }] });
    expect(await storage.query({ limit: 10, id: 'never' })).toEqual({ events: [] });
    expect(await storage.query({ limit: 10, id: '2-0', type: 'other' })).toEqual({ events: [] });
  });
});

describe('reading a store with a damaged custody block', () => {
  it('custody pages by source and by id skip it and name it, and paging goes on past it', async () => {
    await fill(3, 2);
    await damage([custodyKey(2)]);
    const page = await storage.custodyPage({ source: 'host-1' });
    expect(page.records.map((r) => r.id)).toEqual(['1-0', '1-1', '3-0', '3-1']);
    expect(page.damaged).toEqual([{ kind: 'custody', block: 2, error: expect.stringMatching(/^custody block 2 cannot be decoded: /) as unknown }]);
    expect(await storage.custodyPage({ id: '2-0' })).toMatchObject({ records: [], damaged: [{ block: 2 }] });
    const ids: string[] = [];
    const damaged: number[] = [];
    let cursor: string | undefined;
    do {
      const p = await storage.custodyPage({ source: 'host-1', limit: 1, ...(cursor === undefined ? {} : { cursor }) });
      ids.push(...p.records.map((r) => r.id as string));
      damaged.push(...(p.damaged ?? []).map((d) => d.block ?? NaN));
      cursor = p.nextCursor;
    } while (cursor !== undefined);
    expect(ids).toEqual(['1-0', '1-1', '3-0', '3-1']);
    expect(damaged).toEqual([2]);
    // The records-alone read cannot say what it left out: it fails.
    await expect(storage.custody({ source: 'host-1' })).rejects.toMatchObject({ code: 'METEORZX_STORAGE_CORRUPT' });
  });
});

describe('custody by id with a damaged dedup pointer', () => {
  it('names the pointer, as the event query does, instead of answering as if the id had no accepted record', async () => {
    await fill(2, 2);
    await damage([], {
      [idKey('1-0')]: 'x', // not a pointer at all
      [idKey('1-1')]: encodePointer({ commit: 2, index: 0, receivedMs: T0 + 2000 }), // another commit's place
    });
    // Before: both answered no records and named nothing, as for an id never ingested.
    expect(await storage.custodyPage({ id: '1-0' })).toEqual({
      records: [],
      damaged: [{ kind: 'pointer', key: 'id!1-0', error: 'dedup pointer id!1-0 holds "x", not a dedup pointer' }],
    });
    expect(await storage.custodyPage({ id: '1-1' })).toEqual({
      records: [],
      damaged: [{ kind: 'pointer', key: 'id!1-1', block: 2, error: 'dedup pointer id!1-1 points at commit 2, whose custody block holds no accepted record of this id' }],
    });
    // A sound pointer names nothing; an id never ingested neither.
    expect(await storage.custodyPage({ id: '2-1' })).toMatchObject({ records: [{ id: '2-1', outcome: 'accepted' }] });
    expect((await storage.custodyPage({ id: '2-1' })).damaged).toBeUndefined();
    expect(await storage.custodyPage({ id: 'never' })).toEqual({ records: [] });
  });
});

describe('a damaged dedup pointer', () => {
  it('takes its id as stored, so a repeat is not stored a second time', async () => {
    await fill(1, 3);
    // Not a pointer at all, one whose parts half-decode (to commit 33), and one that is just out of shape.
    await damage([], { [idKey('1-0')]: 'zz', [idKey('1-1')]: 'x,y,z', [idKey('1-2')]: '1,2,mxds2ud6,' });
    expect([...(await storage.seen(['1-0', '1-1', '1-2', 'new'], 7 * 86_400_000))].sort()).toEqual(['1-0', '1-1', '1-2']);
  });
});
