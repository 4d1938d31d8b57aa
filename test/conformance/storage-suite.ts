import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { canonicalJson, sha256Hex, type CustodyRecord, type StoredEvent } from '../../protocols/index.js';
import type { CommitBatch, CustodyInput, SeqSeen, Storage } from '../../gateway/storage/types.js';

/**
 * The conformance suite every Storage backend runs (LevelDB now, PostgreSQL
 * next), like abstract-level's `suite(options)`. A backend hands over an
 * open storage on fresh data, a way to reopen the same data, and optionally
 * a `tamper` capability that changes stored bytes behind the storage's back
 * (called with the storage closed).
 */
export interface StorageHarness {
  storage: Storage;
  cleanup(): Promise<void>;
  /** Closes the current storage if open and opens a new instance on the same data. */
  reopen?(): Promise<Storage>;
  tamper?: {
    /** Changes one byte of the stored event with this id. */
    event(id: string): Promise<void>;
    /** Changes one byte of custody record n. */
    custody(n: number): Promise<void>;
  };
}

const DAY = 86_400_000;
const WEEK = 7 * DAY;
const T0 = Date.UTC(2026, 2, 10, 10, 0, 0); // a fixed past day: windows and retention are measured from receive times

let counter = 0;
function event(over: Partial<StoredEvent> & { at?: number } = {}): StoredEvent {
  counter += 1;
  const { at = T0, ...rest } = over;
  return {
    id: `ev-${counter}-${Math.random().toString(36).slice(2, 8)}`,
    source: 'host-1',
    time: new Date(at).toISOString(),
    type: 'auth.login',
    data: { n: counter },
    ingest: { method: 'http', peer: '127.0.0.1:5000', receivedAt: new Date(at).toISOString(), gateway: 'gw-test', integrity: 'unchained' },
    ...rest,
  };
}

function accepted(e: StoredEvent): CustodyInput {
  return { at: e.ingest.receivedAt, outcome: 'accepted', method: e.ingest.method, peer: e.ingest.peer, id: e.id, source: e.source };
}

function batchOf(events: StoredEvent[], extra: { custody?: CustodyInput[]; seqs?: SeqSeen[] } = {}): CommitBatch {
  return { events, custody: [...events.map(accepted), ...(extra.custody ?? [])], seqs: extra.seqs ?? [] };
}

function seqs(agent: string, epoch: string, list: number[]): SeqSeen[] {
  return list.map((seq) => ({ agent, epoch, seq, source: agent, hash: sha256Hex(`${agent}${epoch}${seq}`), at: new Date(T0).toISOString() }));
}

async function allPages(storage: Storage, q: { source?: string; type?: string; since?: number; until?: number }, limit: number): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await storage.query({ ...q, limit, ...(cursor === undefined ? {} : { cursor }) });
    pages += 1;
    expect(page.events.length).toBeLessThanOrEqual(limit);
    ids.push(...page.events.map((e) => e.id));
    cursor = page.nextCursor;
    if (pages > 1000) throw new Error('pagination does not end');
  } while (cursor !== undefined);
  return { ids, pages };
}

export function storageSuite(name: string, makeStorage: () => Promise<StorageHarness>): void {
  describe(`Storage conformance: ${name}`, () => {
    let h: StorageHarness;
    let storage: Storage;

    beforeEach(async () => {
      h = await makeStorage();
      storage = h.storage;
    });
    afterEach(async () => {
      await h.cleanup();
    });

    async function reopen(): Promise<void> {
      if (h.reopen === undefined) return;
      storage = await h.reopen();
    }

    it('starts empty', async () => {
      expect(await storage.query({ limit: 10 })).toEqual({ events: [] });
      expect(await storage.sources()).toEqual({ epochs: [], sources: [] });
      expect(await storage.custody({})).toEqual([]);
      const report = await storage.verify();
      expect(report).toMatchObject({ ok: true, ledgerRecords: 0, events: 0, problems: [] });
    });

    it('remembers committed ids inside the dedup window only', async () => {
      const recent = event({ at: Date.now() - DAY });
      const old = event({ at: Date.now() - 10 * DAY });
      await storage.commit(batchOf([recent, old]));
      const seen = await storage.seen([recent.id, old.id, 'never-stored'], WEEK);
      expect([...seen].sort()).toEqual([recent.id]);
      expect(await storage.seen([old.id], 30 * DAY)).toEqual(new Set([old.id]));
      expect(await storage.seen([], WEEK)).toEqual(new Set());
    });

    it('lists every accepted record of an id by custody, also one accepted again after its dedup window', async () => {
      // The pipeline asks `seen` before it accepts: past the window the id is not a duplicate, and is stored again.
      const first = event({ at: Date.now() - 10 * DAY });
      await storage.commit(batchOf([first]));
      expect(await storage.seen([first.id], WEEK)).toEqual(new Set());
      const again = event({ id: first.id, at: Date.now() });
      await storage.commit(batchOf([again]));
      const byId = await storage.custody({ id: first.id });
      expect(byId.map((r) => [r.n, r.outcome, r.at])).toEqual([
        [1, 'accepted', first.ingest.receivedAt],
        [2, 'accepted', again.ingest.receivedAt],
      ]);
      expect(byId.map((r) => r.eventHash)).toEqual([sha256Hex(canonicalJson(first)), sha256Hex(canonicalJson(again))]);
      expect(await storage.seen([first.id], WEEK)).toEqual(new Set([first.id]));
      // By id: the latest copy (custody lists both accepts); the other filters still apply.
      expect((await storage.query({ id: first.id, limit: 10 })).events).toEqual([again]);
      expect((await storage.query({ id: first.id, until: Date.now() - DAY, limit: 10 })).events).toEqual([]);
      expect((await storage.query({ id: first.id, source: 'elsewhere', limit: 10 })).events).toEqual([]);
      expect((await storage.query({ id: 'never-stored', limit: 10 })).events).toEqual([]);
    });

    it('chains custody records across commits and hashes accepted events as stored', async () => {
      const a = event();
      const b = event();
      const first = await storage.commit(
        batchOf([a, b], { custody: [{ at: a.ingest.receivedAt, outcome: 'rejected', method: 'http', peer: 'p', reason: 'type: required', source: 'host-1' }] }),
      );
      expect(first.custody.map((r) => [r.n, r.outcome])).toEqual([[1, 'accepted'], [2, 'accepted'], [3, 'rejected']]);
      expect(first.custody[0]?.prev).toBeUndefined();
      expect(first.custody[0]?.eventHash).toBe(sha256Hex(canonicalJson(a)));
      expect(first.custody[1]?.eventHash).toBe(sha256Hex(canonicalJson(b)));
      expect(first.custody[2]?.eventHash).toBeUndefined();
      expect(first.custody[2]?.reason).toBe('type: required');
      for (const r of first.custody) {
        const { hash, ...rest } = r;
        expect(hash).toBe(sha256Hex(canonicalJson(rest)));
      }
      const dup: CustodyInput = { at: a.ingest.receivedAt, outcome: 'duplicate', method: 'mqtt', peer: 'dev', id: a.id, source: 'host-1' };
      const second = await storage.commit(batchOf([], { custody: [dup] }));
      expect(second.custody[0]).toMatchObject({ n: 4, prev: first.custody[2]?.hash, outcome: 'duplicate', id: a.id });

      const byId = await storage.custody({ id: a.id });
      expect(byId.map((r) => [r.n, r.outcome])).toEqual([[1, 'accepted'], [4, 'duplicate']]);
      expect((await storage.custody({ source: 'host-1' })).map((r) => r.n)).toEqual([1, 2, 3, 4]);
      expect((await storage.custody({ source: 'host-1', limit: 2 })).map((r) => r.n)).toEqual([1, 2]);
      expect(await storage.custody({ source: 'nobody' })).toEqual([]);
      // Pages: each resumes after the one before, across commits, and the last has no cursor.
      const bySource = await storage.custodyPage({ source: 'host-1', limit: 3 });
      expect(bySource.records.map((r) => r.n)).toEqual([1, 2, 3]);
      expect(await storage.custodyPage({ source: 'host-1', limit: 3, cursor: bySource.nextCursor as string })).toEqual({ records: [second.custody[0]] });
      const byIdPage = await storage.custodyPage({ id: a.id, limit: 1 });
      expect(byIdPage.records.map((r) => r.n)).toEqual([1]);
      expect((await storage.custodyPage({ id: a.id, limit: 1, cursor: byIdPage.nextCursor as string })).records.map((r) => r.n)).toEqual([4]);
      expect((await storage.custodyPage({ limit: 4 })).nextCursor).toBeUndefined();
      await expect(storage.custodyPage({ source: 'host-1', cursor: 'bm9wZQ' })).rejects.toThrow(/cursor/);
      const all: CustodyRecord[] = await storage.custody({});
      expect(all).toEqual([...first.custody, ...second.custody]);
      expect(await storage.verify()).toMatchObject({ ok: true, ledgerRecords: 4, events: 2 });
    });

    it('queries oldest first with source, type and time filters and pages with a cursor', async () => {
      const made: StoredEvent[] = [];
      for (let c = 0; c < 4; c += 1) {
        const events: StoredEvent[] = [];
        for (let i = 0; i < 6; i += 1) {
          events.push(event({ at: T0 + c * 60_000 + i, source: i % 2 === 0 ? 'host-a' : 'host-b', type: i % 3 === 0 ? 'file.read' : 'auth.login' }));
        }
        made.push(...events);
        await storage.commit(batchOf(events));
      }
      const ids = (pred: (e: StoredEvent) => boolean): string[] => made.filter(pred).map((e) => e.id);
      const all = await storage.query({ limit: 100 });
      expect(all.events.map((e) => e.id)).toEqual(ids(() => true));
      expect(all.nextCursor).toBeUndefined();
      expect(all.events[0]).toEqual(made[0]);

      expect((await storage.query({ source: 'host-a', limit: 100 })).events.map((e) => e.id)).toEqual(ids((e) => e.source === 'host-a'));
      expect((await storage.query({ type: 'file.read', limit: 100 })).events.map((e) => e.id)).toEqual(ids((e) => e.type === 'file.read'));
      expect((await storage.query({ source: 'host-b', type: 'file.read', limit: 100 })).events.map((e) => e.id)).toEqual(
        ids((e) => e.source === 'host-b' && e.type === 'file.read'),
      );
      const since = T0 + 60_000 + 3;
      const until = T0 + 3 * 60_000 + 2;
      const inRange = (e: StoredEvent): boolean => Date.parse(e.ingest.receivedAt) >= since && Date.parse(e.ingest.receivedAt) < until;
      expect((await storage.query({ since, until, limit: 100 })).events.map((e) => e.id)).toEqual(ids(inRange));
      expect((await storage.query({ since, until, source: 'host-a', limit: 100 })).events.map((e) => e.id)).toEqual(
        ids((e) => inRange(e) && e.source === 'host-a'),
      );
      expect((await storage.query({ source: 'nobody', limit: 5 })).events).toEqual([]);

      for (const limit of [1, 5, 6, 7, 24]) {
        const paged = await allPages(storage, {}, limit);
        expect(paged.ids).toEqual(ids(() => true));
        expect(paged.pages).toBe(Math.ceil(24 / limit));
      }
      const pagedA = await allPages(storage, { source: 'host-a', since }, 4);
      expect(pagedA.ids).toEqual(ids((e) => e.source === 'host-a' && Date.parse(e.ingest.receivedAt) >= since));
    });

    it('a time bound in year 9999 or later still bounds by time: until finds every event, since none', async () => {
      const events = [event({ at: T0, source: 'host-a' }), event({ at: T0 + DAY, source: 'host-a' })];
      await storage.commit(batchOf(events));
      const ids = events.map((e) => e.id);
      // The last instant RFC 3339 can write, and ms past it (GET /v1/events takes up to 15 digits).
      for (const bound of [Date.parse('9999-12-31T23:59:59.999Z'), Date.UTC(10_000, 0, 1), 999_999_999_999_999]) {
        // Before the fix: [] — the day after 9999-12-31 is "100000101", which sorts before every real day's key.
        expect((await storage.query({ until: bound, limit: 10 })).events.map((e) => e.id)).toEqual(ids);
        expect((await storage.query({ until: bound, source: 'host-a', limit: 10 })).events.map((e) => e.id)).toEqual(ids);
        expect((await storage.query({ since: bound, limit: 10 })).events).toEqual([]);
      }
    });

    it('rejects a cursor it did not issue', async () => {
      await expect(storage.query({ limit: 5, cursor: 'not-a-cursor' })).rejects.toMatchObject({ code: 'METEORZX_INVALID_CURSOR' });
    });

    it('keeps the sources registry: gaps open, split and close, repeats count as received', async () => {
      await storage.commit(batchOf([], { seqs: seqs('agent-1', 'e1', [1, 2, 3, 6, 7]) }));
      let epoch = (await storage.sources()).epochs[0];
      expect(epoch).toMatchObject({ agent: 'agent-1', epoch: 'e1', lastSeq: 7, received: 5 });
      expect(epoch?.gaps.map((g) => [g.from, g.to])).toEqual([[4, 5]]);

      await storage.commit(batchOf([], { seqs: seqs('agent-1', 'e1', [12, 9, 2]) }));
      epoch = (await storage.sources()).epochs[0];
      expect(epoch).toMatchObject({ lastSeq: 12, received: 8 });
      expect(epoch?.gaps.map((g) => [g.from, g.to])).toEqual([[4, 5], [8, 8], [10, 11]]);

      await storage.commit(batchOf([], { seqs: seqs('agent-1', 'e1', [4, 5, 8, 11, 10]) }));
      epoch = (await storage.sources()).epochs[0];
      expect(epoch).toMatchObject({ lastSeq: 12, received: 13, gaps: [] });

      await storage.commit(batchOf([], { seqs: [...seqs('agent-1', 'e2', [3]), ...seqs('dev-9', 'x', [1])] }));
      const { epochs } = await storage.sources();
      expect(epochs).toHaveLength(3);
      const e2 = epochs.find((e) => e.epoch === 'e2');
      expect(e2?.gaps.map((g) => [g.from, g.to])).toEqual([[1, 2]]);
      expect(await storage.chainHead('agent-1', 'e1')).toEqual({ seq: 12, hash: sha256Hex('agent-1e112') });
      expect(await storage.chainHead('agent-1', 'nope')).toBeUndefined();
    });

    it('counts per source', async () => {
      const a = event({ source: 'host-a' });
      await storage.commit(
        batchOf([a, event({ source: 'host-b' })], {
          custody: [
            { at: a.ingest.receivedAt, outcome: 'duplicate', method: 'http', peer: 'p', id: 'x', source: 'host-a' },
            { at: a.ingest.receivedAt, outcome: 'rejected', method: 'http', peer: 'p', reason: 'bad', source: 'host-a' },
          ],
        }),
      );
      await storage.commit(batchOf([event({ source: 'host-a', at: T0 + 5000 })]));
      const sources = (await storage.sources()).sources.sort((x, y) => x.source.localeCompare(y.source));
      expect(sources).toEqual([
        { source: 'host-a', lastSeen: new Date(T0 + 5000).toISOString(), accepted: 2, duplicates: 1, rejected: 1 },
        { source: 'host-b', lastSeen: new Date(T0).toISOString(), accepted: 1, duplicates: 0, rejected: 0 },
      ]);
    });

    it('pages the sources: each after the last one of the page before, with the epochs of the agents in its range', async () => {
      await storage.commit(batchOf(['c', 'a', 'd', 'a-b', 'b'].map((source) => event({ source }))));
      // Agent bb has no events of its own source: its epochs come with the page whose range holds its id.
      await storage.commit(batchOf([], { seqs: [...seqs('b', 'E1', [1]), ...seqs('bb', 'E2', [1]).map((s) => ({ ...s, source: 'b' })), ...seqs('d', 'E3', [1])] }));
      const page = async (after?: string) => {
        const r = await storage.sources({ limit: 2, ...(after === undefined ? {} : { after }) });
        return { sources: r.sources.map((x) => x.source), agents: r.epochs.map((e) => e.agent), next: r.next };
      };
      expect(await page()).toEqual({ sources: ['a', 'a-b'], agents: [], next: 'a-b' });
      expect(await page('a-b')).toEqual({ sources: ['b', 'c'], agents: ['b', 'bb'], next: 'c' });
      expect(await page('c')).toEqual({ sources: ['d'], agents: ['d'], next: undefined });
      expect(await page('d')).toEqual({ sources: [], agents: [], next: undefined });
      // Unpaged: everything, no next.
      const all = await storage.sources();
      expect({ n: all.sources.length, agents: all.epochs.map((e) => e.agent), next: all.next }).toEqual({ n: 5, agents: ['b', 'bb', 'd'], next: undefined });
    });

    it('deletes whole days by retention and still verifies', async () => {
      const day1 = [event({ at: T0 }), event({ at: T0 + 1 })];
      const day2 = [event({ at: T0 + DAY, source: 'host-z' })];
      const day3 = [event({ at: T0 + 2 * DAY })];
      for (const d of [day1, day2, day3]) await storage.commit(batchOf(d));
      const startOfDay3 = Date.UTC(2026, 2, 12);
      expect(await storage.applyRetention(startOfDay3 - 1)).toBe(2); // day 2 has not ended yet
      expect(await storage.applyRetention(startOfDay3)).toBe(1);
      expect(await storage.applyRetention(startOfDay3)).toBe(0);
      expect((await storage.query({ limit: 10 })).events.map((e) => e.id)).toEqual(day3.map((e) => e.id));
      expect((await storage.query({ source: 'host-z', limit: 10 })).events).toEqual([]);
      expect(await storage.seen([...day1, ...day2].map((e) => e.id), 3650 * DAY)).toEqual(new Set());
      const ledger = await storage.custody({});
      expect(ledger.filter((r) => r.outcome !== 'retained')).toHaveLength(4); // the ledger is append-only
      // Each deletion is a ledger record of its own, naming the receive time before which it deleted.
      expect(ledger.filter((r) => r.outcome === 'retained').map((r) => [r.method, r.before])).toEqual([
        ['retention', new Date(startOfDay3 - DAY).toISOString()],
        ['retention', new Date(startOfDay3).toISOString()],
      ]);
      expect(await storage.verify()).toMatchObject({ ok: true, ledgerRecords: 6, events: 1 });
    });

    it('finds the accepted record of an id by custody after retention deleted its event', async () => {
      const old = event({ at: T0 });
      const kept = event({ at: T0 + 2 * DAY });
      await storage.commit(batchOf([old]));
      await storage.commit(batchOf([], { custody: [{ ...accepted(old), outcome: 'duplicate' }] }));
      await storage.commit(batchOf([kept]));
      expect(await storage.applyRetention(Date.UTC(2026, 2, 12))).toBe(1);
      // The custody ledger is kept: by id as by source, every attempt is still listed.
      expect((await storage.custody({ id: old.id })).map((r) => r.outcome)).toEqual(['accepted', 'duplicate']);
      expect((await storage.custody({ source: old.source })).filter((r) => r.id === old.id).map((r) => r.outcome)).toEqual(['accepted', 'duplicate']);
      expect((await storage.custody({ id: kept.id })).map((r) => r.outcome)).toEqual(['accepted']);
      expect(await storage.verify()).toMatchObject({ ok: true, ledgerRecords: 4, events: 1 });
    });

    it('keeps everything across close and reopen', async (ctx) => {
      if (h.reopen === undefined) ctx.skip();
      const events = [event({ source: 'host-a' }), event({ source: 'host-b' })];
      const first = await storage.commit(batchOf(events, { seqs: seqs('agent-1', 'e1', [1, 3]) }));
      await storage.close();
      await storage.close(); // idempotent
      await reopen();
      expect((await storage.query({ limit: 10 })).events).toEqual(events);
      expect(await storage.seen([events[0]?.id as string], 3650 * DAY)).toEqual(new Set([events[0]?.id]));
      expect(await storage.custody({})).toEqual(first.custody);
      expect((await storage.sources()).epochs[0]?.gaps.map((g) => [g.from, g.to])).toEqual([[2, 2]]);
      // The open gap comes with its edges (the hash below it; these seqs carry no prev, so none above).
      expect(await storage.chainHead('agent-1', 'e1')).toEqual({ seq: 3, hash: sha256Hex('agent-1e13'), gaps: [{ from: 2, to: 2, lowerHash: sha256Hex('agent-1e11') }] });
      const next = await storage.commit(batchOf([event()], { seqs: seqs('agent-1', 'e1', [2]) }));
      expect(next.custody[0]).toMatchObject({ n: 3, prev: first.custody[1]?.hash });
      expect((await storage.sources()).epochs[0]?.gaps).toEqual([]);
      expect(await storage.verify()).toMatchObject({ ok: true, ledgerRecords: 3, events: 3 });
    });

    it('verify locates one changed byte in a stored event', async (ctx) => {
      if (h.tamper === undefined || h.reopen === undefined) ctx.skip();
      const events = [event(), event(), event()];
      await storage.commit(batchOf(events));
      await storage.commit(batchOf([event()]));
      await storage.close();
      await h.tamper?.event(events[1]?.id as string);
      await reopen();
      const report = await storage.verify();
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([expect.objectContaining({ kind: 'event', where: events[1]?.id })]);
    });

    it('verify locates one changed byte in a custody record', async (ctx) => {
      if (h.tamper === undefined || h.reopen === undefined) ctx.skip();
      await storage.commit(batchOf([event(), event()]));
      await storage.commit(batchOf([event(), event()]));
      await storage.close();
      await h.tamper?.custody(3);
      await reopen();
      const report = await storage.verify();
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([expect.objectContaining({ kind: 'ledger', where: '3' })]);
    });
  });
}
