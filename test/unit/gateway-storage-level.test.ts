import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Level } from 'level';
import { afterEach, describe, expect, it } from 'vitest';
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
  const commitOf = (events: StoredEvent[]) =>
    h!.storage.commit({
      events,
      custody: events.map((e) => ({ at: e.ingest.receivedAt, outcome: 'accepted' as const, method: 'http' as const, peer: 'p', id: e.id, source: e.source })),
      seqs: [],
      sourceCounts: [],
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
    expect(report.problems).toEqual([
      { kind: 'event', where: 'a', detail: 'stored event is missing' },
      expect.objectContaining({ kind: 'ledger', where: '1' }),
    ]);
  });

  it('opens without scanning: the head is one key', async () => {
    h = await makeLevel();
    await commitOf([stored('a')]);
    await h.storage.close();
    await withRaw(h.location, async (db) => {
      expect(JSON.parse(((await db.get('m!head')) as Buffer).toString())).toMatchObject({ commit: 1, n: 1 });
    });
  });
});
