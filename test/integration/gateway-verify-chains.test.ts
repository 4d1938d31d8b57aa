import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainEvent } from '../../protocols/hash-chain.js';
import type { AuditEvent, StoredEvent } from '../../protocols/index.js';
import { LevelStorage } from '../../gateway/storage/level/index.js';
import { ingest, ndjson, removeDir, runCli, startGateway, tempDir } from './gateway-harness.js';

/**
 * `meteorzx verify` replays the agents' chains over the stored events. A
 * real gateway stores an agent's chain masked and out of order (a late
 * batch), and verify passes it; an event written into that store as
 * `verified` at a seq the chain already holds (a fork stored before the
 * ingest-time fork check, its ledger record made to match) is named by id.
 */
let dir: string;

beforeAll(async () => {
  dir = await tempDir('meteorzx-verify-chains-');
});
afterAll(async () => {
  await removeDir(dir);
});

/** Seqs 1…n of one agent epoch, chained as an agent's buffer chains them. */
function chain(n: number): (AuditEvent & { hash: string })[] {
  const out: (AuditEvent & { hash: string })[] = [];
  for (let seq = 1; seq <= n; seq++) {
    const event = { id: `ev-${seq}`, source: 'host-9', type: 'pay', agent: 'host-9', epoch: 'ep1', seq, data: { card: `4111-${seq}` } };
    out.push(chainEvent(event, out.at(-1)?.hash));
  }
  return out;
}

describe('meteorzx verify and the agents\u2019 chains', () => {
  it('passes a masked chain stored out of order, and names a forked event written into the store as verified', async () => {
    const gw = await startGateway({ dir, config: { pipeline: { transforms: [{ mask: ['data.card'] }] } } });
    const events = chain(8);
    // A late batch: 3–4 after 5–8, as a pull backfill stores them.
    expect(await ingest(gw.httpUrl, [...events.slice(0, 2), ...events.slice(4)])).toMatchObject({ accepted: 6, rejected: [] });
    expect(await ingest(gw.httpUrl, events.slice(2, 4))).toMatchObject({ accepted: 2, rejected: [] });
    // Stored verified, and masked: their content no longer matches the agent's hashes.
    const stored = ndjson<StoredEvent>(await (await fetch(`${gw.httpUrl}/v1/events?source=host-9`)).text());
    expect(stored.map((e) => [e.seq, e.ingest.integrity, (e.data as { card: string }).card === `4111-${e.seq}`])).toEqual(
      [1, 2, 5, 6, 7, 8, 3, 4].map((seq) => [seq, 'verified', false]),
    );
    expect(await gw.stop()).toBe(0);
    const sound = await runCli(['verify', '--data-dir', gw.dataDir]);
    expect(sound.code, sound.stdout + sound.stderr).toBe(0);

    // Another event at seq 3, stored as verified with a ledger record of its own (what an older gateway stored).
    const storage = new LevelStorage({ dataDir: gw.dataDir });
    await storage.open();
    try {
      const at = new Date().toISOString();
      const fork = chainEvent({ id: 'fork-3', source: 'host-9', time: at, type: 'pay', agent: 'host-9', epoch: 'ep1', seq: 3, data: {} }, events[1]?.hash);
      await storage.commit({
        events: [{ ...fork, ingest: { method: 'http', peer: 'p', receivedAt: at, gateway: 'gw', integrity: 'verified' } }],
        custody: [{ at, outcome: 'accepted', method: 'http', peer: 'p', id: 'fork-3', source: 'host-9' }],
        seqs: [],
      });
    } finally {
      await storage.close();
    }
    const forked = await runCli(['verify', '--data-dir', gw.dataDir]);
    // Before: exit 0, "verified" — every stored line matched its ledger record.
    expect(forked.code, forked.stdout + forked.stderr).toBe(1);
    expect(forked.stdout + forked.stderr).toContain('fork-3');
    expect(forked.stdout + forked.stderr).toContain('already holds an event at seq 3: a forked chain');
    expect(forked.stdout + forked.stderr).not.toMatch(/ev-\d/);
  });
});
