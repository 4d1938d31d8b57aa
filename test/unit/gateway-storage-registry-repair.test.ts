import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { StoredEvent } from '../../protocols/index.js';
import { LevelStorage } from '../../gateway/storage/level/level-storage.js';
import type { RegistryRepair } from '../../gateway/storage/level/registry-repair.js';
import type { CommitBatch } from '../../gateway/storage/types.js';

/**
 * A registry key damaged while the store runs (the entry evicted from the
 * in-memory registry, so the next commit reads its key): the commit goes
 * through, `rs!` is counted again from the ledger — accepted, duplicate and
 * rejected records alike, over many commits — and `ra!` starts afresh.
 * Before, that commit (and every later one of the source) failed with
 * METEORZX_STORAGE_CORRUPT.
 */

const AT = Date.UTC(2026, 2, 10, 10);
let ids = 0;

function batch(source: string, outcome: 'accepted' | 'duplicate' | 'rejected', seq?: number): CommitBatch {
  const receivedAt = new Date(AT + ids * 1000).toISOString();
  const id = `e${(ids += 1)}`;
  const events: StoredEvent[] =
    outcome === 'accepted'
      ? [{ id, source, time: receivedAt, type: 't', agent: source, epoch: 'e1', ...(seq === undefined ? {} : { seq }), ingest: { method: 'http', peer: 'p', receivedAt, gateway: 'gw', integrity: 'unchained' } }]
      : [];
  return {
    events,
    custody: [{ at: receivedAt, outcome, method: 'http', peer: 'p', id, source, ...(outcome === 'rejected' ? { reason: 'bad' } : {}) }],
    seqs: seq === undefined ? [] : [{ agent: source, epoch: 'e1', seq, source, at: receivedAt }],
  };
}

let dir: string;
let storage: LevelStorage;
let repairs: RegistryRepair[];

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'meteorzx-registry-repair-'));
  repairs = [];
  storage = new LevelStorage({ dataDir: dir, registryMaxSources: 1, registryMaxEpochs: 1, registryCheckpointMs: 0, onRegistryRepair: (r) => repairs.push(r) });
  await storage.open();
});

afterEach(async () => {
  await storage.close();
  await rm(dir, { recursive: true, force: true });
});

/** Writes `value` under `key` behind the store's back (LevelDB allows one handle: through the store's own). */
async function damage(key: string, value: string): Promise<void> {
  await (storage as unknown as { db: Level<string, Buffer> }).db.put(key, Buffer.from(value));
}

describe('a registry key damaged while the store runs', () => {
  it('rs!: the next commit of the source counts it again from the ledger, over every commit it had', async () => {
    const outcomes = ['accepted', 'accepted', 'duplicate', 'rejected', 'accepted', 'duplicate'] as const;
    for (const o of outcomes) await storage.commit(batch('s1', o));
    await storage.commit(batch('other', 'accepted')); // evicts s1 (one source held), and checkpoints it
    await damage('rs!s1', '{x');
    await storage.commit(batch('s1', 'accepted'));
    await storage.commit(batch('other', 'accepted')); // the checkpoint writes the mended key
    const s = await storage.sources({ source: 's1' });
    expect(s.sources).toMatchObject([{ source: 's1', accepted: 4, duplicates: 2, rejected: 1 }]);
    expect(s.damaged).toBeUndefined();
    expect(repairs).toMatchObject([{ kind: 'source', key: 'rs!s1', quarantinedAs: expect.stringMatching(/^q!rs!s1![0-9a-f]{16}$/) as unknown }]);
    expect(repairs[0]?.detail).toContain('3 accepted, 2 duplicates, 1 rejected');
    const report = await storage.verify();
    expect(report.problems).toEqual([]);
  });

  it('ra!: the next commit of the epoch starts it afresh, with the seqs below as a gap', async () => {
    for (let seq = 1; seq <= 3; seq += 1) await storage.commit(batch('a1', 'accepted', seq));
    await storage.commit(batch('other', 'accepted', 1)); // evicts a1's epoch (one held)
    await damage('ra!a1!e1', 'garbage');
    expect(await storage.chainHead('a1', 'e1')).toBeUndefined();
    await storage.commit(batch('a1', 'accepted', 4));
    const epoch = (await storage.sources({ source: 'a1' })).epochs[0];
    expect(epoch).toMatchObject({ agent: 'a1', epoch: 'e1', lastSeq: 4, received: 1, gaps: [{ from: 1, to: 3 }] });
    // Read twice (the chain head, then the commit), reported once.
    expect(repairs.map((r) => [r.kind, r.key])).toEqual([['epoch', 'ra!a1!e1']]);
  });
});
