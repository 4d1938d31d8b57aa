import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Level } from 'level';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CustodyRecord, StoredEvent } from '../../protocols/index.js';
import { decodeLines, encodeLines } from '../../gateway/storage/level/block-codec.js';
import { blockKey, decodePointer, idKey } from '../../gateway/storage/level/keys.js';
import { LevelStorage } from '../../gateway/storage/level/index.js';
import { storageSuite, type StorageHarness } from '../conformance/storage-suite.js';

/** Changes one character of a JSON line without breaking it: the first letter of the named string field's value. */
function flipOneByte(line: string, field: string): string {
  const at = line.indexOf(`"${field}":"`) + field.length + 4;
  if (at < field.length + 4) throw new Error(`no ${field} in ${line}`);
  return line.slice(0, at) + (line[at] === 'a' ? 'b' : 'a') + line.slice(at + 1);
}

async function withRaw(location: string, fn: (db: Level<string, Buffer>) => Promise<void>): Promise<void> {
  const db = new Level<string, Buffer>(location, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  try {
    await fn(db);
  } finally {
    await db.close();
  }
}

type LevelHarness = StorageHarness & { dir: string; location: string; reopen(): Promise<LevelStorage> };

async function makeLevel(): Promise<LevelHarness> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'meteorzx-store-'));
  let storage = new LevelStorage({ dataDir: dir });
  await storage.open();
  const location = storage.location;
  return {
    dir,
    location,
    get storage() {
      return storage;
    },
    async reopen() {
      await storage.close();
      storage = new LevelStorage({ dataDir: dir });
      await storage.open();
      return storage;
    },
    async cleanup() {
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    },
    tamper: {
      event: (id) =>
        withRaw(location, async (db) => {
          const pointer = decodePointer(((await db.get(idKey(id))) as Buffer).toString());
          if (pointer === undefined) throw new Error(`no pointer for ${id}`);
          const lines = await decodeLines((await db.get(blockKey(pointer.commit))) as Buffer, 'test');
          lines[pointer.index] = flipOneByte(lines[pointer.index] as string, 'type');
          await db.put(blockKey(pointer.commit), await encodeLines(lines, 6));
        }),
      custody: (n) =>
        withRaw(location, async (db) => {
          for await (const [key, value] of db.iterator({ gt: 'k!', lt: 'k"' })) {
            const lines = await decodeLines(value, 'test');
            const i = lines.findIndex((l) => (JSON.parse(l) as CustodyRecord).n === n);
            if (i === -1) continue;
            lines[i] = flipOneByte(lines[i] as string, 'peer');
            await db.put(key, await encodeLines(lines, 6));
            return;
          }
          throw new Error(`no custody record ${n}`);
        }),
    },
  };
}

storageSuite('level', makeLevel);

describe('LevelStorage specifics', () => {
  let h: Awaited<ReturnType<typeof makeLevel>> | undefined;
  afterEach(async () => {
    await h?.cleanup();
    h = undefined;
  });

  const stored = (id: string): StoredEvent => ({
    id,
    source: 'host-1',
    time: '2026-03-10T10:00:00.000Z',
    type: 'auth.login',
    ingest: { method: 'http', peer: 'p', receivedAt: '2026-03-10T10:00:00.000Z', gateway: 'gw', integrity: 'unchained' },
  });
  const commitOf = (events: StoredEvent[], storage: Pick<LevelStorage, 'commit'> = h!.storage) =>
    storage.commit({
      events,
      custody: events.map((e) => ({ at: e.ingest.receivedAt, outcome: 'accepted' as const, method: 'http' as const, peer: 'p', id: e.id, source: e.source })),
      seqs: [],
    });

  /** The prototype of classic-level's chained batches, whose `write` is where the store writes (from a probe database in `dir`). */
  async function chainedBatchProto(dir: string): Promise<{ write: (...a: unknown[]) => Promise<void> }> {
    const probe = new Level<string, Buffer>(path.join(dir, 'probe'));
    await probe.open();
    const proto = Object.getPrototypeOf(probe.batch()) as { write: (...a: unknown[]) => Promise<void> };
    await probe.close();
    return proto;
  }
  const ioError = () => Object.assign(new Error('IO error: 000013.ldb: No space left on device'), { code: 'LEVEL_IO_ERROR' });

  it('a write failing with an I/O error (a full disk) reopens the database: later commits are stored again', async () => {
    h = await makeLevel();
    await commitOf([stored('before')]);
    // As LevelDB does: once a write fails, that handle refuses every later write, even once the disk has
    // room again; a newly opened handle writes.
    const proto = await chainedBatchProto(h.dir);
    const write = proto.write;
    const broken = new WeakSet<object>();
    let failNext = true;
    const spy = vi.spyOn(proto, 'write').mockImplementation(function (this: { db: object }, ...args: unknown[]) {
      if (failNext) {
        failNext = false;
        broken.add(this.db);
      }
      if (broken.has(this.db)) return Promise.reject(ioError());
      return write.apply(this, args);
    });
    try {
      await expect(commitOf([stored('failed')])).rejects.toMatchObject({ code: 'METEORZX_STORAGE_FAILED' });
      // While it reopens, commits get METEORZX_STORAGE_CLOSED (503); then they are stored.
      await vi.waitFor(() => expect(commitOf([stored('after')])).resolves.toBeDefined(), { timeout: 5000, interval: 20 });
      expect((h.storage as LevelStorage).writable()).toBe(true);
      const page = await h.storage.query({ source: 'host-1', limit: 10 });
      expect(page.events.map((e) => e.id)).toEqual(['before', 'after']);
    } finally {
      spy.mockRestore();
    }
  });

  it('close() does not wait out the pause between two reopen attempts (the disk still full)', async () => {
    h = await makeLevel();
    const proto = await chainedBatchProto(h.dir);
    const writes = vi.spyOn(proto, 'write').mockImplementation(() => Promise.reject(ioError()));
    const opens = vi.spyOn(Level.prototype, 'open').mockImplementation(() => Promise.reject(ioError()));
    try {
      expect((h.storage as LevelStorage).writable()).toBe(true);
      await expect(commitOf([stored('failed')])).rejects.toMatchObject({ code: 'METEORZX_STORAGE_FAILED' });
      await new Promise((r) => setTimeout(r, 50)); // the first reopen failed; the next is 1 s away
      expect((h.storage as LevelStorage).writable()).toBe(false); // what /readyz answers 503 on
      const started = Date.now();
      await h.storage.close();
      // A hang check, not a speed budget: without the wake-up, close() waits out the rest of that second.
      expect(Date.now() - started).toBeLessThan(500);
    } finally {
      writes.mockRestore();
      opens.mockRestore();
    }
  });

  it('reports a flipped byte in a compressed block against each event in it', async () => {
    h = await makeLevel();
    await commitOf([stored('a'), stored('b')]);
    await h.storage.close();
    await withRaw(h.location, async (db) => {
      const raw = (await db.get(blockKey(1))) as Buffer;
      raw[raw.length >> 1] = (raw[raw.length >> 1] as number) ^ 0x01;
      await db.put(blockKey(1), raw);
    });
    const report = await (await h.reopen()).verify();
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => [p.kind, p.where])).toEqual([
      ['event', 'a'],
      ['event', 'b'],
    ]);
  });

  it('reports a deleted event block and a truncated ledger', async () => {
    h = await makeLevel();
    await commitOf([stored('a')]);
    await commitOf([stored('b')]);
    await h.storage.close();
    await withRaw(h.location, async (db) => {
      await db.del(blockKey(1));
      await db.del('k!0000000000000002');
    });
    const report = await (await h.reopen()).verify();
    expect(report.problems.slice(0, 3)).toEqual([
      { kind: 'event', where: 'a', detail: 'stored event is missing' },
      { kind: 'event', where: 'block 2', detail: 'event block with no custody block' },
      expect.objectContaining({ kind: 'ledger', where: '1' }),
    ]);
    // And every index key of both: neither block is one the ledger accepts any more; nor is commit 2 in the ledger.
    expect(report.problems.slice(3).map((p) => p.where)).toEqual([
      'index d!20260310!0000000000000001',
      'index d!20260310!0000000000000002',
      'index s!host-1!20260310!0000000000000001',
      'index s!host-1!20260310!0000000000000002',
      'index y!auth.login!20260310!0000000000000001',
      'index y!auth.login!20260310!0000000000000002',
      'index id!a',
      'index id!b',
      'index cs!host-1!0000000000000002',
      // The source's counts include commit 2's record, which the ledger no longer holds.
      'rs!host-1',
    ]);
  });

  it('retention reads the day index a page at a time, not whole', async () => {
    // It collected every index key due before deleting any: 2,000,000 keys took 196 MB of heap at once, so a
    // retention cut from 90d to 7d on a busy store (tens of millions of commits) ran out of memory at every start.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'meteorzx-store-'));
    const storage = new LevelStorage({ dataDir: dir, retentionPageKeys: 40 });
    await storage.open();
    // Each d! index read, counted key by key (the store's database is a `level` Level).
    const levelProto = Level.prototype as unknown as { keys: (o: { gt?: string; lt?: string }) => AsyncIterable<string> };
    const keys = levelProto.keys;
    let most = 0;
    const spy = vi.spyOn(levelProto, 'keys').mockImplementation(function (this: unknown, o: { gt?: string; lt?: string }) {
      const inner = keys.call(this, o);
      if (!(o.lt ?? '').startsWith('d!')) return inner;
      return (async function* () {
        let n = 0;
        for await (const key of inner) {
          n += 1;
          most = Math.max(most, n);
          yield key;
        }
      })();
    });
    try {
      for (let i = 0; i < 100; i += 1) await commitOf([stored(`old-${i}`)], storage);
      expect(await storage.applyRetention(Date.UTC(2026, 2, 12))).toBe(100);
      expect(most).toBeGreaterThan(0);
      expect(most).toBeLessThanOrEqual(40);
      expect((await storage.query({ limit: 1000 })).events).toEqual([]);
      expect((await storage.verify()).problems).toEqual([]);
    } finally {
      spy.mockRestore();
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('custody by id reads the commits of an id as it pages, not all of them first', async () => {
    // Every attempt of an id has a ci! key: a device that resends one id for months has millions, and one page
    // of GET /v1/custody?id= read them all into memory (and sorted them) to answer its first 1,000 records.
    h = await makeLevel();
    await commitOf([stored('dupe')]);
    for (let i = 0; i < 150; i += 1) {
      await h.storage.commit({ events: [], custody: [{ at: '2026-03-10T10:00:00.000Z', outcome: 'duplicate', method: 'http', peer: 'p', id: 'dupe', source: 'host-1' }], seqs: [] });
    }
    const levelProto = Level.prototype as unknown as { keys: (o: { gt?: string; gte?: string; lt?: string }) => AsyncIterable<string> };
    const keys = levelProto.keys;
    let read = 0;
    const spy = vi.spyOn(levelProto, 'keys').mockImplementation(function (this: unknown, o: { gt?: string; gte?: string; lt?: string }) {
      const inner = keys.call(this, o);
      if (!(o.gte ?? o.gt ?? '').startsWith('ci!')) return inner;
      return (async function* () {
        for await (const key of inner) {
          read += 1;
          yield key;
        }
      })();
    });
    try {
      const first = await h.storage.custodyPage({ id: 'dupe', limit: 3 });
      expect(first.records.map((r) => [r.n, r.outcome])).toEqual([[1, 'accepted'], [2, 'duplicate'], [3, 'duplicate']]);
      expect(read).toBeLessThan(10);
      const next = await h.storage.custodyPage({ id: 'dupe', limit: 200, cursor: first.nextCursor as string });
      expect(next.records.map((r) => r.n)).toEqual(Array.from({ length: 148 }, (_, i) => i + 4));
      expect(next.nextCursor).toBeUndefined();
    } finally {
      spy.mockRestore();
    }
  });

  it('opens without scanning: the head is one key', async () => {
    h = await makeLevel();
    await commitOf([stored('a')]);
    await h.storage.close();
    await withRaw(h.location, async (db) => {
      expect(JSON.parse(((await db.get('m!head')) as Buffer).toString())).toMatchObject({ commit: 1, n: 1 });
    });
  });

  describe('per-source registry checkpoints', () => {
    const dirs: string[] = [];
    afterEach(async () => {
      await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
    });

    /** The store as a crash would leave it: a copy of the open database's files (every commit is synced), without close. */
    async function crashCopy(storage: LevelStorage): Promise<string> {
      const copy = await mkdtemp(path.join(os.tmpdir(), 'meteorzx-store-crash-'));
      dirs.push(copy);
      await cp(storage.location, path.join(copy, 'store'), { recursive: true });
      return copy;
    }
    /** The head and the `rs!` keys as they are on disk. */
    async function rawSources(dataDir: string): Promise<{ head: Record<string, unknown>; rs: Record<string, unknown> }> {
      const out = { head: {} as Record<string, unknown>, rs: {} as Record<string, unknown> };
      await withRaw(path.join(dataDir, 'store'), async (db) => {
        out.head = JSON.parse(((await db.get('m!head')) as Buffer).toString()) as Record<string, unknown>;
        for await (const [k, v] of db.iterator({ gt: 'rs!', lt: 'rs"' })) out.rs[k] = JSON.parse(v.toString());
      });
      return out;
    }
    const at = (id: string, source: string, ms: number): StoredEvent => {
      const e = stored(id);
      const when = new Date(Date.UTC(2026, 2, 10, 10) + ms).toISOString();
      return { ...e, source, ingest: { ...e.ingest, receivedAt: when } };
    };

    it('writes the rs! keys only at a checkpoint, and counts the commits after it again from the ledger after a crash', async () => {
      let now = 0;
      const dir = await mkdtemp(path.join(os.tmpdir(), 'meteorzx-store-'));
      dirs.push(dir);
      const storage = new LevelStorage({ dataDir: dir, clock: () => now, registryCheckpointMs: 1000 });
      await storage.open();
      try {
        await commitOf([at('a1', 'host-a', 0), at('b1', 'host-b', 1)], storage);
        await commitOf([at('a2', 'host-a', 2)], storage);
        // No checkpoint yet: the registry is served from memory, and a crash now leaves no rs! key at all.
        const early = await crashCopy(storage);
        expect((await rawSources(early)).rs).toEqual({});
        expect((await rawSources(early)).head).toMatchObject({ commit: 2, sourcesAt: 0 });

        now = 1000; // the next commit is a checkpoint: it writes every source changed since the last one
        await commitOf([at('c1', 'host-c', 3)], storage);
        await commitOf([at('a3', 'host-a', 4), at('c2', 'host-c', 5)], storage);
        const late = await crashCopy(storage);
        const raw = await rawSources(late);
        expect(raw.head).toMatchObject({ commit: 4, sourcesAt: 3 });
        expect(Object.keys(raw.rs).sort()).toEqual(['rs!host-a', 'rs!host-b', 'rs!host-c']);
        expect(raw.rs['rs!host-a']).toMatchObject({ accepted: 2 }); // as of the checkpoint: a3 came after it

        const state = (source: string, accepted: number, lastMs: number) => ({
          source,
          lastSeen: new Date(Date.UTC(2026, 2, 10, 10) + lastMs).toISOString(),
          accepted,
          duplicates: 0,
          rejected: 0,
        });
        const atEarly = [state('host-a', 2, 2), state('host-b', 1, 1)];
        const atLate = [state('host-a', 3, 4), state('host-b', 1, 1), state('host-c', 2, 5)];
        expect((await storage.sources()).sources).toEqual(atLate);
        for (const [crashed, want] of [[early, atEarly], [late, atLate]] as const) {
          const reopened = new LevelStorage({ dataDir: crashed, clock: () => now, registryCheckpointMs: 1000 });
          await reopened.open();
          try {
            expect((await reopened.sources()).sources).toEqual(want);
            // Counting goes on from the replayed state.
            await commitOf([at('a9', 'host-a', 9)], reopened);
            expect((await reopened.sources()).sources[0]).toEqual(state('host-a', (want[0]?.accepted ?? 0) + 1, 9));
          } finally {
            await reopened.close();
          }
          // A clean close checkpoints: nothing is left to replay.
          const closed = await rawSources(crashed);
          expect(closed.head.sourcesAt).toBe(closed.head.commit);
        }
      } finally {
        await storage.close();
      }
    });

    it('a custody block that cannot be read while counting after a crash is left out with a warning, not in silence', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'meteorzx-store-'));
      dirs.push(dir);
      const storage = new LevelStorage({ dataDir: dir, clock: () => 0, registryCheckpointMs: 1000 });
      await storage.open();
      let crashed: string;
      try {
        await commitOf([at('a1', 'host-a', 0)], storage);
        await commitOf([at('a2', 'host-a', 1)], storage);
        crashed = await crashCopy(storage);
      } finally {
        await storage.close();
      }
      await withRaw(path.join(crashed, 'store'), (db) => db.put('k!0000000000000002', Buffer.from('not a custody block')));
      const warnings: unknown[][] = [];
      const reopened = new LevelStorage({ dataDir: crashed, clock: () => 0, registryCheckpointMs: 1000, logger: { error: () => undefined, warn: (...a: unknown[]) => void warnings.push(a) } });
      await reopened.open();
      try {
        expect((await reopened.sources()).sources).toEqual([expect.objectContaining({ source: 'host-a', accepted: 1 })]);
        // Before: no word of it.
        expect(warnings).toEqual([[expect.objectContaining({ commit: 2 }), expect.stringContaining('cannot be read')]]);
      } finally {
        await reopened.close();
      }
    });

    it('a read-only open (verify --data-dir) of a crashed store verifies it, refuses writes and leaves it as it was', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'meteorzx-store-'));
      dirs.push(dir);
      const storage = new LevelStorage({ dataDir: dir, clock: () => 0, registryCheckpointMs: 1000 });
      await storage.open();
      let crashed: string;
      try {
        await commitOf([at('a1', 'host-a', 0), at('b1', 'host-b', 1)], storage);
        crashed = await crashCopy(storage);
      } finally {
        await storage.close();
      }
      const before = await rawSources(crashed);
      expect(before.head).toMatchObject({ commit: 1, sourcesAt: 0 });

      const reader = new LevelStorage({ dataDir: crashed, readOnly: true });
      await reader.open();
      try {
        expect((await reader.verify()).problems).toEqual([]);
        expect((await reader.sources()).sources.map((x) => [x.source, x.accepted])).toEqual([['host-a', 1], ['host-b', 1]]);
        await expect(commitOf([at('a2', 'host-a', 2)], reader)).rejects.toThrow(/read-only/);
        await expect(reader.applyRetention(Date.now())).rejects.toThrow(/read-only/);
      } finally {
        await reader.close();
      }
      expect(await rawSources(crashed)).toEqual(before);

      // The same open without readOnly checkpoints at close: what the read-only one must not do.
      const writer = new LevelStorage({ dataDir: crashed });
      await writer.open();
      await writer.close();
      expect((await rawSources(crashed)).head.sourcesAt).toBe(1);
    });
  });
});
