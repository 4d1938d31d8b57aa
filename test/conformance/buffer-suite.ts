import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Hex, verifyChain, type AuditEvent, type ChainedEvent } from '../../protocols/index.js';
import type { AgentBuffer } from '../../agent/buffer/types.js';
import type { BufferOptions } from '../../agent/buffer/options.js';

/** What a buffer implementation is built from in these tests: the options the suite varies. */
export type SuiteBufferOptions = Pick<BufferOptions, 'dataDir' | 'id' | 'maxBytes' | 'whenFull' | 'retainMs' | 'maxUndeliveredAgeMs' | 'clock'>;

/**
 * How the suite drives one implementation (abstract-level style: optional
 * capabilities skip their tests when absent).
 */
export interface BufferHarness {
  /** A new, unopened buffer. */
  create(options: SuiteBufferOptions): AgentBuffer;
  /** Runs the retention sweep now. */
  sweep?(buffer: AgentBuffer): Promise<void>;
  /** Damages the stored data of a closed buffer (`table-middle`: bytes inside the table files, headers and footers intact). */
  corrupt?(dataDir: string, how: 'table' | 'manifest' | 'table-middle'): Promise<void>;
  /** Runs `open` and reports how many stored entries it could have read (Infinity for an unbounded scan). */
  measureOpenReads?(open: () => Promise<void>): Promise<number>;
}

const ev = (i: number): AuditEvent => ({ type: 'test.event', actor: `user-${i}`, data: { i, pad: 'x'.repeat(200) } });
const evs = (n: number, base = 0): AuditEvent[] => Array.from({ length: n }, (_, k) => ev(base + k));

function gapsOf(events: readonly ChainedEvent[]): { from: number; to: number; count: number; reason: string }[] {
  return events.filter((e) => e.type === 'meteorzx.gap').map((e) => e.data as { from: number; to: number; count: number; reason: string });
}

export function bufferSuite(name: string, harness: BufferHarness): void {
  describe(`AgentBuffer conformance: ${name}`, () => {
    let dir: string;
    let open: AgentBuffer[] = [];
    let now = Date.parse('2026-01-01T00:00:00Z');
    const clock = { now: () => now };

    async function make(options: Partial<SuiteBufferOptions> = {}): Promise<AgentBuffer> {
      const buffer = harness.create({ dataDir: dir, id: 'agent-1', clock, ...options });
      await buffer.open();
      open.push(buffer);
      return buffer;
    }
    async function all(buffer: AgentBuffer): Promise<ChainedEvent[]> {
      return buffer.read(0, 1_000_000);
    }

    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'meteorzx-buffer-'));
      now = Date.parse('2026-01-01T00:00:00Z');
    });
    afterEach(async () => {
      for (const b of open) await b.close();
      open = [];
      await rm(dir, { recursive: true, force: true });
    });

    it('assigns contiguous seqs and a verifiable chain across many concurrent appends', async () => {
      const buffer = await make();
      const calls = Array.from({ length: 60 }, (_, p) => Array.from({ length: 10 }, (_, k) => evs(1 + ((p + k) % 4), p * 100 + k * 5)));
      const results = await Promise.all(calls.map(async (batches) => {
        const out: ChainedEvent[][] = [];
        for (const batch of batches) out.push(await buffer.append(batch));
        return out;
      }));
      const total = calls.flat(2).length;
      expect(buffer.state().head).toBe(total);
      const stored = await all(buffer);
      expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
      expect(verifyChain(stored).breaks).toEqual([]);
      // Each caller got its own events back, in order, as stored.
      results.flat().forEach((got, i) => {
        const sent = calls.flat()[i] as AuditEvent[];
        expect(got.map((e) => e.actor)).toEqual(sent.map((e) => e.actor));
        for (const e of got) expect(stored[e.seq - 1]).toEqual(e);
      });
      expect(new Set(stored.map((e) => e.id)).size).toBe(total);
    });

    it('fills id, source, time and chain fields, keeps what the producer gave, does not mutate input', async () => {
      now = Date.parse('2026-03-04T05:06:07.000Z');
      const buffer = await make();
      const given: AuditEvent = { type: 'a', id: 'my-id', source: 'dev-9', time: '2025-01-01T00:00:00Z', hash: 'f'.repeat(64), prev: 'e'.repeat(64) };
      const copy = structuredClone(given);
      const [a, b] = await buffer.append([given, { type: 'b' }]);
      expect(given).toEqual(copy);
      expect(a).toMatchObject({ id: 'my-id', source: 'dev-9', time: '2025-01-01T00:00:00Z', agent: 'agent-1', seq: 1, epoch: buffer.state().epoch });
      expect(a?.prev).toBeUndefined();
      expect(b).toMatchObject({ source: 'agent-1', time: '2026-03-04T05:06:07.000Z', seq: 2, prev: a?.hash });
      expect(b?.id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
      expect(verifyChain([a as ChainedEvent, b as ChainedEvent]).ok).toBe(true);
    });

    it('keeps epoch, head and chain across close and reopen', async () => {
      let buffer = await make();
      await buffer.append(evs(5));
      const { epoch } = buffer.state();
      await buffer.close();
      buffer = await make();
      expect(buffer.state()).toMatchObject({ epoch, head: 5, delivered: 0, oldest: 1, bufferedEvents: 5 });
      await Promise.all([buffer.append(evs(3)), buffer.append(evs(2))]);
      const stored = await all(buffer);
      expect(stored.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(verifyChain(stored).breaks).toEqual([]);
    });

    it('reads any range across block boundaries, cached or from disk', async () => {
      let buffer = await make();
      for (const n of [1, 7, 3, 12, 1, 1, 20, 5]) await buffer.append(evs(n));
      const check = async (b: AgentBuffer): Promise<void> => {
        const full = await all(b);
        expect(full).toHaveLength(50);
        for (const after of [0, 1, 2, 7, 8, 9, 19, 22, 23, 48, 49, 50, 60]) {
          for (const limit of [1, 2, 5, 13, 100]) {
            const got = await b.read(after, limit);
            expect(got.map((e) => e.seq)).toEqual(full.slice(after, after + limit).map((e) => e.seq));
          }
        }
        const small = await b.read(0, 100, 1500);
        expect(small.length).toBeGreaterThan(0);
        expect(small.length).toBeLessThan(50);
        // The stored lines (what push and pull send): the same events, each line the exact text its hash covers.
        for (const after of [0, 7, 8, 22, 49]) {
          const lines = await b.readLines(after, 13);
          expect(lines.map((l) => l.seq)).toEqual(full.slice(after, after + 13).map((e) => e.seq));
          lines.forEach((l, i) => {
            const event = full[after + i] as ChainedEvent;
            expect(JSON.parse(l.line)).toEqual(event);
            const tail = `,"hash":"${event.hash}"}`;
            expect(l.line.endsWith(tail)).toBe(true);
            expect(sha256Hex(`${l.line.slice(0, -tail.length)}}`)).toBe(event.hash);
          });
        }
        const capped = await b.readLines(0, 100, 1500);
        expect(capped.length).toBeGreaterThan(1);
        expect(capped.reduce((n, l) => n + l.line.length + 1, 0)).toBeLessThanOrEqual(1500);
        expect(capped.length).toBeLessThan(50);
      };
      await check(buffer);
      await buffer.close();
      buffer = await make();
      await check(buffer);
    });

    it('acks monotonically, durably, never past the head', async () => {
      let buffer = await make();
      await buffer.append(evs(10));
      await buffer.ack(6);
      await buffer.ack(3);
      expect(buffer.state()).toMatchObject({ delivered: 6, bufferedEvents: 4 });
      await buffer.ack(99);
      expect(buffer.state().delivered).toBe(10);
      await buffer.close();
      buffer = await make();
      expect(buffer.state()).toMatchObject({ delivered: 10, head: 10, bufferedEvents: 0 });
      // Delivered events stay readable for pull until retention removes them.
      expect(await buffer.read(0, 100)).toHaveLength(10);
    });

    it('notifies listeners after each commit and stops after unsubscribe', async () => {
      const buffer = await make();
      const heads: number[] = [];
      const off = buffer.onAppend((head) => heads.push(head));
      await buffer.append(evs(2));
      await buffer.append(evs(3));
      off();
      await buffer.append(evs(1));
      expect(heads).toEqual([2, 5]);
    });

    it('commits extra keys atomically with the events', async () => {
      let buffer = await make();
      await buffer.append(evs(2), [{ key: 'file:/var/log/a', value: '1234' }]);
      expect(await buffer.getMeta('file:/var/log/a')).toBe('1234');
      expect(await buffer.getMeta('missing')).toBeUndefined();
      await buffer.close();
      buffer = await make();
      expect(await buffer.getMeta('file:/var/log/a')).toBe('1234');
    });

    it('deletes an extra key given a null value, in the same batch as what comes with it', async () => {
      let buffer = await make();
      await buffer.append(evs(1), [{ key: 'file!a', value: '1' }, { key: 'file!b', value: '2' }]);
      await buffer.append([], [{ key: 'file!a', value: null }, { key: 'path!p', value: 'done' }]);
      expect(await buffer.getMeta('file!a')).toBeUndefined();
      await buffer.close();
      buffer = await make();
      expect([await buffer.getMeta('file!a'), await buffer.getMeta('file!b'), await buffer.getMeta('path!p')]).toEqual([undefined, '2', 'done']);
    });

    it('lists the extra keys under a prefix, in order and up to a limit, and refuses a bad prefix or limit', async () => {
      const buffer = await make();
      await buffer.append([], ['path!/b', 'path!/a', 'path"', 'path', 'file!1:2', 'path!/a/c'].map((key) => ({ key, value: '1' })));
      expect(await buffer.metaKeys('path!', 10)).toEqual(['path!/a', 'path!/a/c', 'path!/b']);
      expect(await buffer.metaKeys('path!', 2)).toEqual(['path!/a', 'path!/a/c']);
      // A page after a key: the next page, none past the last; a key before the prefix starts at the prefix.
      expect(await buffer.metaKeys('path!', 2, 'path!/a/c')).toEqual(['path!/b']);
      expect(await buffer.metaKeys('path!', 2, 'path!/b')).toEqual([]);
      expect(await buffer.metaKeys('path!', 2, 'file!9')).toEqual(['path!/a', 'path!/a/c']);
      expect(await buffer.metaKeys('nothing!', 10)).toEqual([]);
      await buffer.append([], [{ key: 'path!/a', value: null }]);
      expect(await buffer.metaKeys('path!', 10)).toEqual(['path!/a/c', 'path!/b']);
      await expect(buffer.metaKeys('', 10)).rejects.toMatchObject({ code: 'METEORZX_BUFFER_INVALID_KEY' });
      await expect(buffer.metaKeys('path!', 0)).rejects.toThrow(/limit must be a positive integer/);
    });

    it('whenFull block: refuses with METEORZX_BUFFER_FULL (503) until an ack frees space, then accepts', async () => {
      const buffer = await make({ maxBytes: 4000, whenFull: 'block' });
      let err: unknown;
      for (let i = 0; i < 200 && err === undefined; i++) {
        await buffer.append(evs(3, i * 3), [{ key: 'offset', value: String(i) }]).catch((e: unknown) => { err = e; });
      }
      expect(err).toMatchObject({ code: 'METEORZX_BUFFER_FULL', status: 503 });
      const { head } = buffer.state();
      expect(await buffer.getMeta('offset')).toBe(String(head / 3 - 1));
      let woke = false;
      const waiting = buffer.waitForSpace().then(() => { woke = true; });
      await new Promise((r) => setTimeout(r, 20));
      expect(woke).toBe(false);
      await buffer.ack(head);
      await waiting;
      await buffer.append(evs(3));
      const stored = await all(buffer);
      expect(gapsOf(stored)).toEqual([]);
      expect(stored[stored.length - 1]?.seq).toBe(head + 3);
      expect(verifyChain(stored).breaks.filter((b) => b.index > 0)).toEqual([]);
    });

    it('whenFull reject: refuses new events with METEORZX_BUFFER_REJECTED (507), keeps buffered ones', async () => {
      const buffer = await make({ maxBytes: 3000, whenFull: 'reject' });
      let err: unknown;
      for (let i = 0; i < 200 && err === undefined; i++) await buffer.append(evs(2)).catch((e: unknown) => { err = e; });
      expect(err).toMatchObject({ code: 'METEORZX_BUFFER_REJECTED', status: 507 });
      const { head } = buffer.state();
      expect((await all(buffer)).map((e) => e.seq)).toEqual(Array.from({ length: head }, (_, i) => i + 1));
      await buffer.ack(head);
      await buffer.waitForSpace();
      await expect(buffer.append(evs(1))).resolves.toHaveLength(1);
    });

    it('whenFull drop-oldest: deletes the oldest events and names exactly the dropped range in gap events', async () => {
      const buffer = await make({ maxBytes: 3000, whenFull: 'drop-oldest' });
      await buffer.append(evs(1));
      await buffer.append(evs(2));
      await buffer.ack(2); // seq 1 delivered; the block 2-3 only half
      // A reader right behind the head (a push sink that never acks) sees every gap event before it can be dropped.
      const seen = new Map<number, ChainedEvent>();
      for (let i = 0; i < 60; i++) {
        await buffer.append(evs(1 + (i % 3), i * 3));
        for (const e of await buffer.read(Math.max(0, ...seen.keys()), 1000)) seen.set(e.seq, e);
      }
      const { head, oldest, bufferedBytes } = buffer.state();
      expect(bufferedBytes).toBeLessThanOrEqual(3000);
      const stored = await all(buffer);
      const present = new Set(stored.map((e) => e.seq));
      expect(stored[0]?.seq).toBe(oldest);
      expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: head - oldest + 1 }, (_, i) => oldest + i));
      expect(verifyChain(stored, undefined).breaks.filter((b) => b.index > 0)).toEqual([]);
      const gaps = gapsOf([...seen.values()]);
      expect(gaps.length).toBeGreaterThan(1);
      for (const g of gaps) {
        expect(g.reason).toBe('buffer-full-drop-oldest');
        expect(g.count).toBe(g.to - g.from + 1);
      }
      // Every seq before `oldest` is delivered (≤ 2) or named by a gap, none that is still present.
      // A gap event dropped before delivery has its range folded into a later gap, which also names its seq.
      const named = new Map<number, number>();
      for (const g of gaps) for (let s = g.from; s <= g.to; s++) named.set(s, (named.get(s) ?? 0) + 1);
      for (const seq of named.keys()) expect(present.has(seq)).toBe(false);
      expect([...named.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: oldest - 3 }, (_, i) => i + 3));
      expect(buffer.state().delivered).toBeGreaterThanOrEqual(oldest - 1);
    });

    it('whenFull drop-oldest with nobody reading: the gap events that survive name every dropped seq exactly', async () => {
      // A long overflow keeps eating the head of the buffer, where the earlier gap events sit; their
      // ranges must be folded into the newer gaps, not deleted with them.
      const buffer = await make({ maxBytes: 3000, whenFull: 'drop-oldest' });
      await buffer.append(evs(1));
      await buffer.append(evs(2));
      await buffer.ack(2);
      for (let i = 0; i < 120; i++) await buffer.append(evs(1 + (i % 3), i * 3));
      const { oldest, head, bufferedBytes } = buffer.state();
      const stored = await all(buffer);
      expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: head - oldest + 1 }, (_, i) => oldest + i));
      const gaps = gapsOf(stored);
      expect(gaps.length).toBeGreaterThan(0);
      const named: number[] = [];
      for (const g of gaps) {
        expect(g.reason).toBe('buffer-full-drop-oldest');
        expect(g.count).toBe(g.to - g.from + 1);
        for (let s = g.from; s <= g.to; s++) named.push(s);
      }
      // Drops went on far past the first gap events (the oldest is way beyond them) ...
      expect(oldest).toBeGreaterThan(100);
      // ... yet the surviving gaps name exactly 3 … oldest-1 (a range may be repeated by a newer gap) ...
      expect([...new Set(named)].sort((a, b) => a - b)).toEqual(Array.from({ length: oldest - 3 }, (_, i) => i + 3));
      // ... in a bounded number of gap events, not one more per drop.
      expect(gaps.length).toBeLessThanOrEqual(10);
      expect(bufferedBytes).toBeLessThanOrEqual(3000);
    });

    it.runIf(harness.sweep !== undefined)('retention deletes only delivered blocks older than retainMs', async () => {
      const buffer = await make({ retainMs: 60_000 });
      await buffer.append(evs(4));
      await buffer.append(evs(4));
      now += 30_000;
      await buffer.append(evs(4));
      await buffer.append(evs(4));
      await buffer.ack(12);
      now += 40_000; // first two blocks are 70 s old, the next two 40 s
      await harness.sweep?.(buffer);
      expect(buffer.state()).toMatchObject({ oldest: 9, delivered: 12, head: 16, bufferedEvents: 4 });
      expect((await all(buffer)).map((e) => e.seq)).toEqual([9, 10, 11, 12, 13, 14, 15, 16]);
      now += 600_000;
      await harness.sweep?.(buffer);
      // Seq 13-16 are old but undelivered: kept, no gap.
      const left = await all(buffer);
      expect(left.map((e) => e.seq)).toEqual([13, 14, 15, 16]);
      expect(gapsOf(left)).toEqual([]);
    });

    it.runIf(harness.sweep !== undefined)('retention sweeps of an idle drop-oldest buffer at its bound delete nothing undelivered', async () => {
      // Drop-oldest leaves the buffer just under maxBytes; a sweep with nothing arriving needs no room.
      const buffer = await make({ maxBytes: 3000, whenFull: 'drop-oldest', retainMs: 3_600_000 });
      for (let i = 0; i < 30; i++) await buffer.append(evs(1, i));
      const before = buffer.state();
      expect(before.oldest).toBeGreaterThan(1);
      const stored = (await all(buffer)).map((e) => e.seq);
      for (let n = 0; n < 5; n++) {
        now += 60_000;
        await harness.sweep?.(buffer);
      }
      expect(buffer.state()).toMatchObject({ oldest: before.oldest, head: before.head });
      expect((await all(buffer)).map((e) => e.seq)).toEqual(stored);
    });

    it.runIf(harness.sweep !== undefined)('retention of undelivered data appends a gap naming the deleted range', async () => {
      const buffer = await make({ retainMs: 60_000, maxUndeliveredAgeMs: 3_600_000 });
      await buffer.append(evs(5));
      await buffer.ack(2);
      now += 1_800_000;
      await buffer.append(evs(5));
      now += 2_000_000;
      await harness.sweep?.(buffer);
      const left = await all(buffer);
      expect(left.map((e) => e.seq)).toEqual([6, 7, 8, 9, 10, 11]);
      expect(gapsOf(left)).toEqual([{ from: 3, to: 5, count: 3, reason: 'retention-undelivered' }]);
    });

    it.runIf(harness.corrupt !== undefined).each(['table', 'manifest'] as const)(
      'recovers from a corrupt %s: moved aside, new epoch, gap event, keeps accepting',
      async (how) => {
        let buffer = await make();
        await buffer.append(evs(20));
        await buffer.ack(5);
        const oldEpoch = buffer.state().epoch;
        await buffer.close();
        buffer = await make(); // reopening turns the write-ahead log into a table file
        await buffer.close();
        await harness.corrupt?.(dir, how);
        buffer = await make();
        const state = buffer.state();
        expect(state.epoch).not.toBe(oldEpoch);
        expect(state.recovered).toMatch(/corrupt/);
        const [gap] = await all(buffer);
        expect(gap).toMatchObject({ type: 'meteorzx.gap', seq: 1, data: { reason: 'buffer-corrupt' } });
        const data = gap?.data as Record<string, unknown>;
        if (data.from !== null) expect(data).toMatchObject({ lostEpoch: oldEpoch, from: 6, to: 20, count: 15 });
        const entries = await readdir(dir);
        expect(entries.some((e) => e.startsWith('buffer.corrupt-'))).toBe(true);
        await buffer.append(evs(3));
        expect(verifyChain(await all(buffer)).breaks).toEqual([]);
        await buffer.close();
        buffer = await make();
        expect(buffer.state()).toMatchObject({ epoch: state.epoch, head: 4 });
        expect(buffer.state().recovered).toBeUndefined();
      },
    );

    it.runIf(harness.corrupt !== undefined)(
      'damage inside a table found by a read: the unreadable range becomes a gap, reads and appends go on',
      async () => {
        let buffer = await make();
        for (let n = 0; n < 20; n++) {
          await buffer.append(Array.from({ length: 100 }, (_, i) => ({ type: 'test.event', data: { n, i, pad: randomBytes(200).toString('hex') } })));
        }
        await buffer.ack(50);
        await buffer.close();
        buffer = await make(); // reopening turns the write-ahead log into a table file
        await buffer.close();
        await harness.corrupt?.(dir, 'table-middle');
        buffer = await make();
        const { head, epoch } = buffer.state();
        expect(head).toBe(2000);
        const read = await buffer.read(50, 1_000_000);
        const data = read.filter((e) => e.type !== 'meteorzx.gap');
        const gaps = gapsOf(read).filter((g) => g.reason === 'buffer-corrupt');
        expect(gaps.length).toBeGreaterThan(0);
        expect(buffer.state().recovered).toMatch(/unreadable/);
        // What was read and what the gaps name are disjoint and together exactly 51 … 2000.
        const covered = [...data.map((e) => e.seq)];
        for (const g of gaps) for (let s = g.from; s <= g.to; s++) covered.push(s);
        expect(covered.sort((a, b) => a - b)).toEqual(Array.from({ length: 1950 }, (_, i) => i + 51));
        expect(read.every((e) => e.epoch === epoch)).toBe(true);
        // Appends go on, and a pusher from the old cursor reaches them.
        await buffer.append(evs(3));
        const after = await buffer.read(50, 1_000_000);
        expect(after.slice(-3).map((e) => e.type)).toEqual(['test.event', 'test.event', 'test.event']);
        expect(gapsOf(after).filter((g) => g.reason === 'buffer-corrupt')).toEqual(gaps);
        // The hole is remembered: a restart does not report it a second time.
        await buffer.close();
        buffer = await make();
        expect(gapsOf(await buffer.read(50, 1_000_000)).filter((g) => g.reason === 'buffer-corrupt')).toEqual(gaps);
      },
    );

    it.runIf(harness.measureOpenReads !== undefined)('reopens without scanning the buffered events', async () => {
      let buffer = await make();
      for (let i = 0; i < 300; i++) await buffer.append(evs(3));
      await buffer.close();
      buffer = harness.create({ dataDir: dir, id: 'agent-1', clock });
      open.push(buffer);
      const reads = await harness.measureOpenReads?.(() => buffer.open());
      expect(reads).toBeLessThanOrEqual(10);
      expect(buffer.state()).toMatchObject({ head: 900, bufferedEvents: 900 });
    });

    it('refuses appends once closed; close is idempotent', async () => {
      const buffer = await make();
      await buffer.append(evs(1));
      await Promise.all([buffer.close(), buffer.close()]);
      await expect(buffer.append(evs(1))).rejects.toMatchObject({ code: 'METEORZX_BUFFER_CLOSED' });
    });
  });
}
