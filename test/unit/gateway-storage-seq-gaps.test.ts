import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LevelStorage } from '../../gateway/storage/level/level-storage.js';
import { epochStatus, MAX_GAPS_PER_EPOCH, newEpochState, recordSeq, type EpochState } from '../../gateway/storage/seq-gaps.js';
import type { CommitBatch } from '../../gateway/storage/types.js';

/**
 * The gap registry keeps, with each gap, the edges a late event filling it
 * is linked to (GapEdges): the hash of the seq below, the prev of the seq
 * above. Hashes here are stand-ins: `h<n>` is seq n's hash, so seq n's prev is `h<n-1>`.
 */

const AT = '2026-03-10T10:00:00.000Z';
const h = (n: number): string => `h${n}`;
const arrive = (state: EpochState, ...seqs: number[]): EpochState => {
  for (const seq of seqs) recordSeq(state, { seq, hash: h(seq), prev: seq > 1 ? h(seq - 1) : undefined }, AT);
  return state;
};
const gapsOf = (state: EpochState) => state.gaps.map(({ from, to, lowerHash, upperPrev }) => ({ from, to, lowerHash, upperPrev }));

describe('gap edges', () => {
  it('a gap opens with the head below it and the prev above it, and keeps edges as it shrinks and splits', () => {
    const state = arrive(newEpochState('ag', 'E', AT), 1, 2, 10);
    expect(gapsOf(state)).toEqual([{ from: 3, to: 9, lowerHash: h(2), upperPrev: h(9) }]);
    arrive(state, 3); // from the bottom
    expect(gapsOf(state)).toEqual([{ from: 4, to: 9, lowerHash: h(3), upperPrev: h(9) }]);
    arrive(state, 9); // from the top
    expect(gapsOf(state)).toEqual([{ from: 4, to: 8, lowerHash: h(3), upperPrev: h(8) }]);
    arrive(state, 6); // in the middle
    expect(gapsOf(state)).toEqual([
      { from: 4, to: 5, lowerHash: h(3), upperPrev: h(5) },
      { from: 7, to: 8, lowerHash: h(6), upperPrev: h(8) },
    ]);
    arrive(state, 2, 6); // repeats: nothing changes
    arrive(state, 4, 5, 8, 7);
    expect(state.gaps).toEqual([]);
    expect(state).toMatchObject({ lastSeq: 10, lastHash: h(10), received: 12 });
  });

  it('a gap from seq 1 has no lower edge; unchained neighbours leave theirs unknown', () => {
    const state = arrive(newEpochState('ag', 'E', AT), 5);
    expect(gapsOf(state)).toEqual([{ from: 1, to: 4, lowerHash: undefined, upperPrev: h(4) }]);
    recordSeq(state, { seq: 2 }, AT);
    expect(gapsOf(state)).toEqual([
      { from: 1, to: 1, lowerHash: undefined, upperPrev: undefined },
      { from: 3, to: 4, lowerHash: undefined, upperPrev: h(4) },
    ]);
  });

  it('merged gaps keep their outer edges', () => {
    const state = newEpochState('ag', 'E', AT);
    for (let i = 0; i <= MAX_GAPS_PER_EPOCH + 1; i += 1) arrive(state, 2 * i + 1); // one gap too many
    expect(state.gaps).toHaveLength(MAX_GAPS_PER_EPOCH);
    expect(gapsOf(state)[0]).toEqual({ from: 2, to: 4, lowerHash: h(1), upperPrev: h(4) });
  });

  it('a gap the agent reports lost is split at the range and marked; edges at a split are unknown', () => {
    const state = arrive(newEpochState('ag', 'E', AT), 1, 2, 20);
    // Seq 21 is the agent's gap event naming 5..8 (inside the gap 3..19); 22 names 3..4, the rest of the gap below.
    recordSeq(state, { seq: 21, hash: h(21), prev: h(20), lost: { from: 5, to: 8 } }, AT);
    const view = () => state.gaps.map(({ from, to, lowerHash, upperPrev, reportedByAgent }) => ({ from, to, lowerHash, upperPrev, reportedByAgent }));
    expect(view()).toEqual([
      { from: 3, to: 4, lowerHash: h(2), upperPrev: undefined, reportedByAgent: undefined },
      { from: 5, to: 8, lowerHash: undefined, upperPrev: undefined, reportedByAgent: true },
      { from: 9, to: 19, lowerHash: undefined, upperPrev: h(19), reportedByAgent: undefined },
    ]);
    recordSeq(state, { seq: 22, hash: h(22), prev: h(21), lost: { from: 1, to: 6 } }, AT); // 1..2 arrived, 5..6 already marked
    // 3..4 touches the marked 5..8: one recorded loss, with the outer edges.
    expect(view()).toEqual([
      { from: 3, to: 8, lowerHash: h(2), upperPrev: undefined, reportedByAgent: true },
      { from: 9, to: 19, lowerHash: undefined, upperPrev: h(19), reportedByAgent: undefined },
    ]);
    // A seq of a marked gap that arrives after all fills it as any other; the mark stays on what is left.
    arrive(state, 6);
    expect(view().map((g) => [g.from, g.to, g.reportedByAgent])).toEqual([
      [3, 5, true],
      [7, 8, true],
      [9, 19, undefined],
    ]);
    expect(epochStatus(state).gaps.map((g) => g.reportedByAgent)).toEqual([true, true, undefined]);
  });

  it('gap events that each name the whole loss so far leave one marked gap, not one per event', () => {
    const state = arrive(newEpochState('ag', 'E', AT), 1, 3, 5000); // gaps 2 and 4..4999
    // A drop-oldest agent whose gateway is away: 4..4, 4..5, ... 4..1013, each in its own gap event.
    for (let seq = 5001; seq <= 6010; seq += 1) recordSeq(state, { seq, hash: h(seq), prev: h(seq - 1), lost: { from: 4, to: seq - 4997 } }, AT);
    // Before: 1,012 gaps, cut to 1,000 by merging 2 (never reported) with 4..15, which made 3..15 a hole nobody reported.
    expect(state.gaps.map((g) => [g.from, g.to, g.reportedByAgent])).toEqual([
      [2, 2, undefined],
      [4, 1013, true],
      [1014, 4999, undefined],
    ]);
  });

  it('a gap event that arrives ahead marks the gap its own arrival opens', () => {
    const state = arrive(newEpochState('ag', 'E', AT), 1, 2);
    recordSeq(state, { seq: 10, hash: h(10), prev: h(9), lost: { from: 3, to: 9 } }, AT);
    expect(state.gaps).toEqual([{ from: 3, to: 9, since: AT, lowerHash: h(2), upperPrev: h(9), reportedByAgent: true }]);
  });

  it('a merged gap is reported by the agent only when both parts were', () => {
    const state = newEpochState('ag', 'E', AT);
    arrive(state, 1, 3, 5);
    recordSeq(state, { seq: 7, hash: h(7), prev: h(6), lost: { from: 2, to: 2 } }, AT); // gaps 2 (marked), 4, 6
    for (let i = 4; i <= MAX_GAPS_PER_EPOCH + 1; i += 1) arrive(state, 2 * i + 1); // one gap too many: 2 and 4 merge
    expect(state.gaps).toHaveLength(MAX_GAPS_PER_EPOCH);
    expect(state.gaps[0]).toMatchObject({ from: 2, to: 4 });
    expect(state.gaps[0]?.reportedByAgent).toBeUndefined();
  });

  it('the public view has no edges', () => {
    const state = arrive(newEpochState('ag', 'E', AT), 1, 5);
    expect(epochStatus(state).gaps).toEqual([{ from: 2, to: 4, since: AT }]);
  });
});

describe('gap edges in the LevelDB registry', () => {
  const dirs: string[] = [];
  const open: LevelStorage[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });
  async function store(dir?: string): Promise<LevelStorage> {
    const dataDir = dir ?? (await mkdtemp(path.join(os.tmpdir(), 'meteorzx-gap-edges-')));
    if (dir === undefined) dirs.push(dataDir);
    const storage = new LevelStorage({ dataDir });
    await storage.open();
    open.push(storage);
    return storage;
  }
  const seqs = (...list: number[]): CommitBatch => ({
    events: [],
    custody: [],
    seqs: list.map((seq) => ({ agent: 'ag', epoch: 'E', seq, source: 'ag', at: AT, hash: h(seq), ...(seq > 1 ? { prev: h(seq - 1) } : {}) })),
  });

  it('keeps edges on disk and gives them with the chain head, after a reopen too', async () => {
    const storage = await store();
    await storage.commit(seqs(1, 2, 10, 6));
    const expected = {
      seq: 10,
      hash: h(10),
      gaps: [
        { from: 3, to: 5, lowerHash: h(2), upperPrev: h(5) },
        { from: 7, to: 9, lowerHash: h(6), upperPrev: h(9) },
      ],
    };
    expect(await storage.chainHead('ag', 'E')).toEqual(expected);
    // A copy: the integrity stage changes its own.
    (await storage.chainHead('ag', 'E'))?.gaps?.splice(0);
    expect(await storage.chainHead('ag', 'E')).toEqual(expected);
    expect((await storage.sources()).epochs[0]?.gaps).toEqual([
      { from: 3, to: 5, since: AT },
      { from: 7, to: 9, since: AT },
    ]);

    const dir = path.dirname(storage.location);
    await storage.close();
    const reopened = await store(dir);
    expect(await reopened.chainHead('ag', 'E')).toEqual(expected);
    await reopened.commit(seqs(3, 4, 5, 7, 8, 9));
    expect(await reopened.chainHead('ag', 'E')).toEqual({ seq: 10, hash: h(10) });
  });

  it('reads a registry entry written before gaps had edges: its edges are unknown', async () => {
    const storage = await store();
    const legacy = { agent: 'ag', epoch: 'E', lastSeq: 10, lastSeen: AT, received: 2, gaps: [{ from: 2, to: 9, since: AT }], lastHash: h(10) };
    const db = (storage as unknown as { db: { put(k: string, v: Buffer): Promise<void> } }).db;
    await db.put('ra!ag!E', Buffer.from(JSON.stringify(legacy)));
    expect(await storage.chainHead('ag', 'E')).toEqual({ seq: 10, hash: h(10), gaps: [{ from: 2, to: 9 }] });
    await storage.commit(seqs(5));
    expect(await storage.chainHead('ag', 'E')).toEqual({
      seq: 10,
      hash: h(10),
      gaps: [
        { from: 2, to: 4, upperPrev: h(4) },
        { from: 6, to: 9, lowerHash: h(5) },
      ],
    });
    expect((await storage.sources()).epochs[0]).toMatchObject({ lastSeq: 10, received: 3, gaps: [{ from: 2, to: 4, since: AT }, { from: 6, to: 9, since: AT }] });
  });

  it('gives the head and its gaps when the highest seq arrived unchained: the head without a hash', async () => {
    const storage = await store();
    await storage.commit(seqs(1, 2, 10));
    await storage.commit({ events: [], custody: [], seqs: [{ agent: 'ag', epoch: 'E', seq: 11, source: 'ag', at: AT }] });
    // Before: undefined, as for an epoch never seen (the integrity stage then started it afresh).
    expect(await storage.chainHead('ag', 'E')).toEqual({ seq: 11, gaps: [{ from: 3, to: 9, lowerHash: h(2), upperPrev: h(9) }] });
  });
});
