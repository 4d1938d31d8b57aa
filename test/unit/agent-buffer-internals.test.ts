import { deflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { ClassicLevel } from 'classic-level';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { canonicalJson, computeHash, verifyChain, type AuditEvent } from '../../protocols/index.js';
import { LevelBuffer } from '../../agent/buffer/index.js';
import { fastCanonicalJson } from '../../protocols/index.js';
import { decodeBlock, decodeBlockLines, encodeBlock, readBlockMeta } from '../../agent/buffer/block-codec.js';
import { BlockCache } from '../../agent/buffer/block-cache.js';
import { jsonArrayOf, ndjsonOf } from '../../agent/buffer/event-line.js';
import { ChainCursor } from '../../agent/buffer/chain-cursor.js';
import { CommitQueue, type CommitWork } from '../../agent/buffer/commit-queue.js';
import { LineReader, type ReadView } from '../../agent/buffer/line-reader.js';
import { Holes } from '../../agent/buffer/holes.js';
import { blockKey } from '../../agent/buffer/keys.js';
import type { BufferDb } from '../../agent/buffer/level-store.js';
import { recoveries, RefusedWrite } from '../../agent/buffer/store-recovery.js';

const ev = (i: number): AuditEvent => ({ type: 'unit.event', data: { i } });

function outcome(f: () => string): { ok: string } | { err: string } {
  try {
    return { ok: f() };
  } catch (err) {
    return { err: (err as { code?: string }).code ?? 'unknown' };
  }
}

describe('fastCanonicalJson', () => {
  it('equals protocols canonicalJson on any JSON-ish value, failures included', () => {
    const odd = fc.oneof(fc.constant(Number.NaN), fc.constant(Infinity), fc.constant('\ud800x'), fc.constant(undefined), fc.constant(-0));
    const value = fc.letrec((tie) => ({
      leaf: fc.oneof(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }), fc.double(), fc.integer(), fc.boolean(), fc.constant(null), odd),
      node: fc.oneof({ depthSize: 'small' }, tie('leaf'), fc.array(tie('node'), { maxLength: 4 }), fc.dictionary(fc.string({ unit: 'binary' }), tie('node'), { maxKeys: 5 })),
    })).node;
    fc.assert(fc.property(value, (v) => {
      expect(outcome(() => fastCanonicalJson(v))).toEqual(outcome(() => canonicalJson(v)));
    }), { numRuns: 3000 });
  });
});

describe('store recovery plan', () => {
  const refused = new RefusedWrite('corrupt', Object.assign(new Error('Corruption: bad block'), { code: 'LEVEL_CORRUPTION' }));
  const repairedAt = Date.parse('2026-12-07T12:00:00Z');

  it('replaces at once a store repaired minutes ago, and repairs again one repaired long ago', () => {
    expect(recoveries(refused, repairedAt, repairedAt + 5 * 60_000)).toEqual(['replace']);
    expect(recoveries(refused, repairedAt, repairedAt + 11 * 60_000)).toEqual(['repair', 'replace']);
  });

  it('repairs first when the clock went back since the last repair: how long ago it was is not known', () => {
    // Clock stepped back an hour after the repair: taken for a repair seconds old, the store was
    // replaced (every undelivered event gone) where a repair keeps all that is readable.
    expect(recoveries(refused, repairedAt, repairedAt - 3_600_000)).toEqual(['repair', 'replace']);
  });
});

describe('ChainCursor', () => {
  it('hashes any envelope exactly as protocols computeHash, and stores the same event it returns', () => {
    const text = fc.string({ minLength: 1, maxLength: 12 });
    const envelope = fc.record(
      {
        type: text,
        id: text,
        source: fc.constantFrom('dev-1', 'host.a'),
        time: fc.constant('2026-01-01T00:00:00Z'),
        actor: fc.oneof(text, fc.dictionary(text, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 })),
        action: text,
        // Any UTF-16, lone surrogates included: those take the generic path.
        target: fc.oneof(text, fc.string({ unit: 'binary', maxLength: 6 })),
        outcome: fc.constantFrom('success', 'failure', 'unknown'),
        data: fc.dictionary(fc.oneof(fc.string(), fc.string({ unit: 'binary', maxLength: 4 })), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 }),
        hash: fc.constant('a'.repeat(64)),
        extraField: text, // outside the envelope: takes the generic path
      },
      { requiredKeys: ['type'] },
    );
    fc.assert(fc.property(fc.array(envelope, { minLength: 1, maxLength: 5 }), (inputs) => {
      const cursor = new ChainCursor({ agent: 'ag', epoch: 'ep', head: 0, lastHash: undefined });
      for (const input of inputs) cursor.push(input as AuditEvent, '2026-02-02T00:00:00Z', Date.parse('2026-02-02T00:00:00Z'));
      cursor.events.forEach((event, i) => {
        expect(event.hash).toBe(computeHash(event));
        expect(JSON.parse(cursor.lines[i] as string)).toEqual(JSON.parse(JSON.stringify(event))); // JSON has no -0
      });
      expect(verifyChain(cursor.events).breaks).toEqual([]);
    }), { numRuns: 500 });
  });
});

describe('CommitQueue', () => {
  it('keeps the highest ack of an epoch; an ack in a newer epoch replaces an older epoch\'s', async () => {
    const seen: Pick<CommitWork, 'ackTo' | 'ackEpoch'>[] = [];
    let release = (): void => undefined;
    const queue = new CommitQueue(async (work) => {
      seen.push({ ackTo: work.ackTo, ackEpoch: work.ackEpoch });
      await new Promise<void>((r) => (release = r)); // held, so the next acks pile up into one work
      for (const w of work.ackWaiters) w.resolve();
    }, 1, 100);
    const acks = [queue.ack(1, 'A')];
    await vi.waitFor(() => expect(seen).toHaveLength(1));
    acks.push(queue.ack(3, 'A'), queue.ack(10, 'A'), queue.ack(7, 'A'));
    release();
    await vi.waitFor(() => expect(seen).toHaveLength(2));
    acks.push(queue.ack(10, 'A'), queue.ack(3, 'B'), queue.ack(2, 'B'));
    release();
    await vi.waitFor(() => expect(seen).toHaveLength(3));
    release();
    await Promise.all(acks);
    expect(seen).toEqual([
      { ackTo: 1, ackEpoch: 'A' },
      { ackTo: 10, ackEpoch: 'A' },
      { ackTo: 3, ackEpoch: 'B' },
    ]);
  });
});

describe('LineReader', () => {
  it('reads one epoch: a store replaced while the read waits on LevelDB ends the read with what came before', async () => {
    const line = (seq: number) => `{"epoch":"A","seq":${seq}}`;
    const cache = new BlockCache(100);
    cache.put(1, [1, 2, 3].map(line));
    const view: ReadView = { db: undefined, epoch: 'A', oldest: 1, head: 6, holes: new Holes() };
    // Block 4-6 is on disk; while its read is awaited, a commit replaces the store (new epoch, head 6 again).
    view.db = {
      async *iterator(options: { lte: string }) {
        expect(options.lte).toBe(blockKey(4));
        Object.assign(view, { epoch: 'B', db: undefined });
        yield [blockKey(4), encodeBlock([4, 5, 6].map(line), 1)];
      },
    } as unknown as BufferDb;
    const repairs: unknown[] = [];
    const reader = new LineReader(cache, 100, () => ({ ...view }), async (r) => void repairs.push(r));
    const read = await reader.readLines(0, 100);
    expect(read.map((l) => l.seq)).toEqual([1, 2, 3]);
    expect(repairs).toEqual([]);
  });

  it('caches no block read from a store replaced meanwhile: the new epoch, whose seqs start again at 1, reads its own', async () => {
    const line = (epoch: string, seq: number) => `{"epoch":"${epoch}","seq":${seq}}`;
    const storeOf = (epoch: string, onRead = () => {}) =>
      ({
        async *iterator() {
          onRead();
          yield [blockKey(1), encodeBlock([1, 2, 3].map((seq) => line(epoch, seq)), 1)];
        },
      }) as unknown as BufferDb;
    const cache = new BlockCache(100);
    // A's block is still being read when the store is replaced: LevelDB lets a pending read finish after close.
    const view: ReadView = { db: undefined, epoch: 'A', oldest: 1, head: 3, holes: new Holes() };
    view.db = storeOf('A', () => Object.assign(view, { epoch: 'B', db: storeOf('B') }));
    const reader = new LineReader(cache, 100, () => ({ ...view }), async () => {});
    expect(await reader.readLines(0, 100)).toEqual([]);
    expect((await reader.readLines(0, 100)).map((l) => l.line)).toEqual([1, 2, 3].map((seq) => line('B', seq)));
  });
});

describe('block codec and cache', () => {
  it('round-trips a block and reads its header without inflating', () => {
    const lines = [JSON.stringify({ seq: 7, a: 1 }), JSON.stringify({ seq: 8, b: 'é' })];
    const block = encodeBlock(lines, 1234.5);
    expect(readBlockMeta(7, block)).toEqual({ firstSeq: 7, lastSeq: 8, count: 2, time: 1234.5, bytes: block.length, gaps: false });
    expect(readBlockMeta(7, encodeBlock(lines, 1234.5, true)).gaps).toBe(true);
    const decoded = decodeBlock(7, block);
    expect(JSON.parse(JSON.stringify(decoded))).toEqual([{ seq: 7, a: 1 }, { seq: 8, b: 'é' }]);
    // The push and pull paths take the stored lines as they are.
    expect(decodeBlockLines(7, block)).toEqual(lines);
    // Blocks written before the zlib wrapper (version 2: raw deflate of the lines) and before the line
    // format (version 1: a JSON array) still decode.
    const older = (version: number, text: string) => Buffer.concat([Buffer.from([version, 0, 0, 0, 2]), Buffer.alloc(8), deflateRawSync(text)]);
    expect(decodeBlockLines(7, older(2, lines.join('\n')))).toEqual(lines);
    expect(JSON.parse(JSON.stringify(decodeBlock(7, older(1, `[${lines.join(',')}]`))))).toEqual([{ seq: 7, a: 1 }, { seq: 8, b: 'é' }]);
    expect(() => decodeBlock(6, block)).toThrow(/does not match/);
    const damaged = Buffer.from(block);
    damaged.fill(0x41, 20);
    expect(() => decodeBlock(7, damaged)).toThrow();
  });

  it('round-trips blocks of megabytes, in any UTF-8 width', () => {
    const wide = Array.from({ length: 3 }, (_, i) => JSON.stringify({ seq: 1 + i, data: 'é😀\u2028x'.repeat(150_000 + i) }));
    expect(decodeBlockLines(1, encodeBlock(wide, 1))).toEqual(wide);
    const small = [JSON.stringify({ seq: 1, a: 'ü' })];
    expect(decodeBlockLines(1, encodeBlock(small, 1))).toEqual(small);
  });

  it('writes push bodies from stored lines byte for byte', () => {
    const items = [{ seq: 1, line: '{"a":"é😀"}' }, { seq: 2, line: '{}' }];
    expect(ndjsonOf(items).toString()).toBe('{"a":"é😀"}\n{}\n');
    expect(jsonArrayOf(items).toString()).toBe('[{"a":"é😀"},{}]');
    expect(ndjsonOf([]).length).toBe(0);
    expect(jsonArrayOf([]).toString()).toBe('[]');
  });

  it('finds any changed byte in a block body (its checksum), without parsing a line', () => {
    const lines = Array.from({ length: 50 }, (_, i) => JSON.stringify({ seq: 7 + i, type: 'auth.login', data: { n: i, pad: 'abcdefgh'.repeat(4) } }));
    const block = encodeBlock(lines, 1);
    // Each byte of the deflated body, changed in turn: a wrong byte must fail to decode, never yield other lines.
    for (let at = 13; at < block.length; at += 1) {
      const damaged = Buffer.from(block);
      damaged[at] = (damaged[at] as number) ^ 0x10;
      let outcome: string[] | Error;
      try {
        outcome = decodeBlockLines(7, damaged);
      } catch (err) {
        outcome = err as Error;
      }
      expect(outcome instanceof Error ? 'failed' : outcome.join('\n') === lines.join('\n') ? 'same' : 'different', `byte ${at}`).not.toBe('different');
    }
  });

  it('evicts least recently used blocks beyond its event budget', () => {
    const cache = new BlockCache(10);
    const block = (first: number, n: number) => Array.from({ length: n }, (_, i) => JSON.stringify({ seq: first + i }));
    cache.put(1, block(1, 4));
    cache.put(5, block(5, 4));
    expect(cache.find(2)?.firstSeq).toBe(1); // 1 is now most recent
    cache.put(9, block(9, 4)); // over budget: 5 goes
    expect(cache.find(6)).toBeUndefined();
    expect(cache.find(12)?.firstSeq).toBe(9);
    cache.dropBefore(9);
    expect(cache.find(3)).toBeUndefined();
  });
});

describe('LevelBuffer', () => {
  let dir: string;
  let buffer: LevelBuffer;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meteorzx-buffer-unit-'));
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await buffer.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('decoded-block cache', () => {
    const cached = (): number => (buffer as unknown as { cache: BlockCache }).cache.events;

    it('keeps a new block only while a reader is near the head, and drops it once read to its end', async () => {
      buffer = new LevelBuffer({ dataDir: dir, id: 'a', commitIntervalMs: 1, cacheEvents: 20 });
      await buffer.open();
      // No reader yet, but the head is within the budget of seq 0: cached.
      await buffer.append(Array.from({ length: 15 }, (_, i) => ev(i)));
      expect(cached()).toBe(15);
      // Head 15, nobody has read: 15 ≤ 20 still near. Head 30 next: nobody is near any more.
      await buffer.append(Array.from({ length: 15 }, (_, i) => ev(15 + i)));
      await buffer.append(Array.from({ length: 15 }, (_, i) => ev(30 + i)));
      expect(cached()).toBe(15); // the second block (the first was evicted for it); the third was not cached
      await buffer.append([ev(45)]);
      expect(cached()).toBe(15); // far from any reader: not cached
      // A reader catches up: everything it read to the end of a block leaves the cache.
      expect((await buffer.read(0, 1000)).map((e) => e.seq)).toEqual(Array.from({ length: 46 }, (_, i) => i + 1));
      expect(cached()).toBe(0);
      // Reader at the head: the next block is cached for it, then dropped when it is read.
      await buffer.append([ev(46), ev(47)]);
      expect(cached()).toBe(2);
      const partial = await buffer.read(46, 1);
      expect(partial.map((e) => e.seq)).toEqual([47]);
      expect(cached()).toBe(2); // read partly: kept
      expect((await buffer.read(47, 10)).map((e) => e.seq)).toEqual([48]);
      expect(cached()).toBe(0);
      // What left the cache is still read correctly, from disk.
      expect((await buffer.read(40, 3)).map((e) => e.seq)).toEqual([41, 42, 43]);
    });
  });

  describe('group commit', () => {

    it('writes concurrent appends as one synced batch (durability fsync)', async () => {
      buffer = new LevelBuffer({ dataDir: dir, id: 'a', commitIntervalMs: 20 });
      await buffer.open();
      const batch = vi.spyOn(ClassicLevel.prototype, 'batch');
      await Promise.all(Array.from({ length: 50 }, (_, i) => buffer.append([ev(i)])));
      expect(batch).toHaveBeenCalledTimes(1);
      expect((batch.mock.calls[0] as unknown[] | undefined)?.[1]).toMatchObject({ sync: true });
    });

    it('writes without sync for durability os', async () => {
      buffer = new LevelBuffer({ dataDir: dir, id: 'a', durability: 'os' });
      await buffer.open();
      const batch = vi.spyOn(ClassicLevel.prototype, 'batch');
      await buffer.append([ev(1)]);
      expect((batch.mock.calls[0] as unknown[] | undefined)?.[1]).toMatchObject({ sync: false });
    });

    it('commits sooner than the interval once maxCommitEvents are pending', async () => {
      buffer = new LevelBuffer({ dataDir: dir, id: 'a', commitIntervalMs: 60_000, maxCommitEvents: 10 });
      await buffer.open();
      await expect(buffer.append(Array.from({ length: 10 }, (_, i) => ev(i)))).resolves.toHaveLength(10);
    });

    it('fails every caller of a failed write and acknowledges nothing of it; the chain continues from the last durable event', async () => {
      buffer = new LevelBuffer({ dataDir: dir, id: 'a', commitIntervalMs: 5 });
      await buffer.open();
      await buffer.append([ev(0), ev(1)]);
      const before = buffer.state();
      const batch = vi.spyOn(ClassicLevel.prototype, 'batch').mockRejectedValueOnce(new Error('EIO: disk on fire'));
      const results = await Promise.allSettled([buffer.append([ev(2)]), buffer.append([ev(3), ev(4)]), buffer.append([ev(5)], [{ key: 'k', value: 'v' }])]);
      expect(batch).toHaveBeenCalledTimes(1);
      for (const r of results) expect(r).toMatchObject({ status: 'rejected', reason: { code: 'METEORZX_BUFFER_WRITE_FAILED', status: 503 } });
      // Nothing moved; the status says why the write failed, until the next one is written.
      expect(buffer.state()).toEqual({ ...before, writeError: 'group commit failed: EIO: disk on fire' });
      expect(await buffer.getMeta('k')).toBeUndefined();
      await buffer.append([ev(6)]);
      expect(buffer.state().writeError).toBeUndefined();
      const stored = await buffer.read(0, 100);
      expect(stored.map((e) => e.seq)).toEqual([1, 2, 3]);
      expect(stored.map((e) => (e.data as { i: number }).i)).toEqual([0, 1, 6]);
      expect(verifyChain(stored).breaks).toEqual([]);
    });
  });
});
