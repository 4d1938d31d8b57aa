import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Integrity, StoredEvent } from '../../protocols/index.js';
import { LevelStorage } from '../../gateway/storage/level/index.js';

/**
 * `verify` replays the agents' chains over the stored events: an event
 * stored as `verified` that forks its chain or does not link to the stored
 * event before it — stored before the ingest-time checks caught it, or
 * written behind the gateway with its ledger record made to match — is
 * named by id. Links only: the hashes are taken as given (a masked event no
 * longer matches its agent's hash), so these events carry made-up ones.
 */
const T0 = Date.UTC(2026, 2, 10, 10, 0, 0);

let dir: string;
let storage: LevelStorage;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'meteorzx-verify-chains-'));
  storage = new LevelStorage({ dataDir: dir, clock: () => T0 });
  await storage.open();
});
afterEach(async () => {
  await storage.close();
  await rm(dir, { recursive: true, force: true });
});

interface Link {
  id: string;
  seq: number;
  hash: string;
  prev?: string;
  integrity?: Integrity;
  source?: string;
  epoch?: string;
}

const chained = (l: Link): StoredEvent => ({
  id: l.id,
  source: l.source ?? 'host-1',
  time: new Date(T0).toISOString(),
  type: 'auth.login',
  agent: 'host-1',
  epoch: l.epoch ?? 'e1',
  seq: l.seq,
  hash: l.hash,
  ...(l.prev === undefined ? {} : { prev: l.prev }),
  ingest: { method: 'http', peer: 'p', receivedAt: new Date(T0).toISOString(), gateway: 'gw', integrity: l.integrity ?? 'verified' },
});

/** One commit of these events, each accepted, as the pipeline would store them. */
const commit = (links: Link[]) => {
  const events = links.map(chained);
  return storage.commit({
    events,
    custody: events.map((e) => ({ at: e.ingest.receivedAt, outcome: 'accepted' as const, method: 'http' as const, peer: 'p', id: e.id, source: e.source })),
    seqs: [],
  });
};

const problems = async (source?: string): Promise<Array<[string, string]>> =>
  (await storage.verify(source === undefined ? {} : { source })).problems.map((p) => [p.where, p.detail]);

describe('verify replays the agents\u2019 chains over the stored events', () => {
  it('passes a chain stored in order, across commits, with a late seq filling a hole and another epoch beside it', async () => {
    await commit([
      { id: 'a1', seq: 1, hash: 'h1' },
      { id: 'a2', seq: 2, hash: 'h2', prev: 'h1' },
      { id: 'b1', seq: 1, hash: 'x1', epoch: 'e2' },
    ]);
    await commit([{ id: 'a4', seq: 4, hash: 'h4', prev: 'h3' }]);
    // Seq 3 came late (a backfill): it links to 2 below and to 4 above.
    await commit([{ id: 'a3', seq: 3, hash: 'h3', prev: 'h2' }]);
    // A hole never filled (5 lost), and what follows it: nothing to judge across.
    await commit([{ id: 'a6', seq: 6, hash: 'h6', prev: 'h5' }]);
    expect(await problems()).toEqual([]);
  });

  it('names a second verified event at a seq its chain holds (a fork), and one whose prev is not its predecessor\u2019s hash', async () => {
    await commit([
      { id: 'a1', seq: 1, hash: 'h1' },
      { id: 'a2', seq: 2, hash: 'h2', prev: 'h1' },
    ]);
    // Stored before the fork check existed: another event at seq 2, marked verified.
    await commit([{ id: 'fork-2', seq: 2, hash: 'f2', prev: 'h1' }]);
    await commit([{ id: 'a3', seq: 3, hash: 'h3', prev: 'not-h2' }]);
    // Late, into a hole whose edges are known: it must link to both.
    await commit([{ id: 'a5', seq: 5, hash: 'h5', prev: 'h4' }]);
    await commit([{ id: 'a4', seq: 4, hash: 'other', prev: 'h3' }]);
    // Before: all four passed, verify checked only that each stored line is the one its ledger record hashed.
    expect(await problems()).toEqual([
      ['fork-2', 'stored as verified, but its chain (agent host-1, epoch e1) already holds an event at seq 2: a forked chain'],
      ['a3', 'stored as verified, but its chain (agent host-1, epoch e1) is broken there: seq 3: prev does not match the hash of seq 2'],
      ['a4', 'stored as verified, but its chain (agent host-1, epoch e1) is broken there: seq 4: hash does not match the prev of seq 5'],
    ]);
  });

  it('leaves alone events already stored as broken, and under --source names only that source\u2019s', async () => {
    await commit([
      { id: 'a1', seq: 1, hash: 'h1' },
      { id: 'a2', seq: 2, hash: 'h2', prev: 'wrong', integrity: 'broken' },
      { id: 'd3', seq: 3, hash: 'h3', prev: 'wrong', source: 'dev-7' },
    ]);
    expect(await problems('host-1')).toEqual([]);
    expect(await problems('dev-7')).toEqual([['d3', 'stored as verified, but its chain (agent host-1, epoch e1) is broken there: seq 3: prev does not match the hash of seq 2']]);
    expect((await problems()).map(([where]) => where)).toEqual(['d3']);
  });
});
