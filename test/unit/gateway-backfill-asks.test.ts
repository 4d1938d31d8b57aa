import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { Alert } from '../../gateway/alerts/alert.js';
import type { Ingestor } from '../../gateway/pipeline/ingestor.js';
import { Backfill } from '../../gateway/pull/backfill.js';
import type { LostRange, PullStore } from '../../gateway/pull/pull-store.js';
import type { EpochStatus, PullCommand } from '../../protocols/index.js';

/**
 * Backfill over the command channel asks for a hole at most once per
 * `backfill.grace` (docs/pull.md, "Gap backfill"), also while the hole
 * shrinks because the agent is re-sending it: each remainder is the same
 * hole, not a new one to ask for at once.
 */

const GRACE = 3000;

function backfillOver(gaps: { from: number; to: number }[], clock: { now: number }): { backfill: Backfill; asked: [number, number, number][]; alerts: Alert[] } {
  const asked: [number, number, number][] = [];
  const alerts: Alert[] = [];
  const since = new Date(0).toISOString();
  const lost: LostRange[] = [];
  const store = { lost: async () => [...lost], saveGapScanAt: async () => undefined, addLost: async (r: LostRange) => void lost.push(r) } as unknown as PullStore;
  const backfill = new Backfill({
    epochs: async () => [{ agent: 'ag', epoch: 'E', lastSeq: 40_000, lastSeen: since, received: 1, gaps: gaps.map((g) => ({ ...g, since })) }] as EpochStatus[],
    store,
    ingestor: { ingest: async () => ({ accepted: 1, duplicates: 0, rejected: [] }) } as unknown as Ingestor,
    connectors: () => [],
    command: async (_agent: string, c: PullCommand) => void asked.push([clock.now, c.after ?? 0, c.until ?? 0]),
    online: async () => true,
    graceMs: GRACE,
    tries: 5,
    alerter: { raise: (a: Alert) => void alerts.push(a) },
    logger: pino({ level: 'silent' }),
    now: () => clock.now,
  });
  return { backfill, asked, alerts };
}

describe('backfill asks for a hole once per grace', () => {
  it('a hole the agent is re-sending, shrinking at every scan, is asked for again only after the grace', async () => {
    const clock = { now: 10_000 };
    const gaps = [{ from: 1, to: 22_480 }];
    const { backfill, asked, alerts } = backfillOver(gaps, clock);
    const scanAt = async (now: number, from: number, also: { from: number; to: number }[] = []): Promise<void> => {
      clock.now = now;
      gaps.splice(0, gaps.length, { from, to: 22_480 }, ...also);
      await backfill.scan();
    };
    await scanAt(10_000, 1);
    await scanAt(11_000, 778, [{ from: 30_000, to: 30_010 }]); // a hole elsewhere is its own
    await scanAt(12_000, 1597, [{ from: 30_000, to: 30_010 }]);
    await scanAt(13_000, 2437, [{ from: 30_000, to: 30_010 }]);
    await scanAt(14_000, 3340, [{ from: 30_000, to: 30_010 }]);
    // Before the fix: also [11000, 777, 22480], [12000, 1596, 22480] and [14000, 3339, 22480], one re-send of the rest per scan.
    expect(asked).toEqual([
      [10_000, 0, 22_480],
      [11_000, 29_999, 30_010],
      [13_000, 2436, 22_480],
      [14_000, 29_999, 30_010],
    ]);
    expect(alerts).toEqual([]);
  });

  it('a hole that does not move is still recorded lost after tries asks, one grace apart', async () => {
    const clock = { now: 10_000 };
    const { backfill, asked, alerts } = backfillOver([{ from: 5, to: 9 }], clock);
    for (let now = 10_000; now <= 30_000; now += 1000) {
      clock.now = now;
      await backfill.scan();
    }
    // Five asks; the look after them records the loss, and a recorded loss is not asked for again.
    expect(asked.map(([at]) => at)).toEqual([10_000, 13_000, 16_000, 19_000, 22_000]);
    expect(alerts.map((a) => [a.kind, a.from, a.to])).toEqual([['gap-lost', 5, 9]]);
  });
});
