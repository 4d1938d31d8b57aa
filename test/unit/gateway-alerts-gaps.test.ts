import { describe, expect, it } from 'vitest';
import type { Alert } from '../../gateway/alerts/alert.js';
import { GapWatch } from '../../gateway/alerts/gap-watch.js';
import type { EpochStatus, SeqGap } from '../../protocols/index.js';

const GRACE = 30_000;
const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const at = (ms: number): string => new Date(T0 + ms).toISOString();

function epoch(gaps: SeqGap[], agent = 'ag-1', name = 'E1'): EpochStatus {
  return { agent, epoch: name, lastSeq: 100, lastSeen: at(0), received: 90, gaps };
}

function watch() {
  const alerts: Alert[] = [];
  const w = new GapWatch({ graceMs: GRACE, raise: (a) => alerts.push(a) });
  return { w, alerts, ranges: () => alerts.map((a) => [a.agent, a.epoch, a.from, a.to]) };
}

describe('seq-gap alert', () => {
  it('a hole alerts once it has been open for the grace, and only once', () => {
    const t = watch();
    const open = [epoch([{ from: 5, to: 9, since: at(0) }])];
    t.w.scan(open, [], T0 + GRACE - 1);
    expect(t.alerts).toEqual([]);
    t.w.scan(open, [], T0 + GRACE);
    expect(t.alerts).toEqual([{ kind: 'seq-gap', agent: 'ag-1', epoch: 'E1', from: 5, to: 9, since: at(0), detail: expect.stringContaining('5..9'), at: at(GRACE) }]);
    t.w.scan(open, [], T0 + 10 * GRACE);
    expect(t.alerts).toHaveLength(1);
  });

  it('after a restart, holes whose grace ended by the last scan before it do not alert again; later ones do', () => {
    const t = watch();
    // The gateway before the restart scanned last at GRACE + 5 s: hole 5..9 (due at GRACE) was alerted by then.
    t.w.restore(T0 + GRACE + 5000);
    const open = [epoch([{ from: 5, to: 9, since: at(0) }, { from: 20, to: 20, since: at(10_000) }])];
    t.w.scan(open, [], T0 + GRACE + 60_000);
    // Before the fix: 5..9 alerted a second time.
    expect(t.ranges()).toEqual([['ag-1', 'E1', 20, 20]]);
    t.w.scan(open, [], T0 + GRACE + 70_000);
    expect(t.alerts).toHaveLength(1);
  });

  it('a hole open before a start counts its grace from the start: filled soon after, it never alerts; still open, it alerts once', () => {
    // The gateway crashed at 1 s with hole 5..9 (in flight) not yet due, and started again at 5 min.
    const start = T0 + 300_000;
    const filled = watch();
    filled.w.restore(T0 + 1000, start);
    filled.w.scan([epoch([{ from: 5, to: 9, since: at(0) }])], [], start + 100);
    filled.w.scan([epoch([])], [], start + GRACE / 2); // the agent reconnected and re-sent it
    // Before the fix: 5..9 alerted at the first scan after the start.
    expect(filled.alerts).toEqual([]);
    const open = watch();
    open.w.restore(T0 + 1000, start);
    for (const now of [start + 100, start + GRACE - 1, start + GRACE, start + 2 * GRACE]) open.w.scan([epoch([{ from: 5, to: 9, since: at(0) }])], [], now);
    expect(open.alerts.map((a) => [a.from, a.to, a.at])).toEqual([[5, 9, new Date(start + GRACE).toISOString()]]);
  });

  it('a hole that closes within the grace never alerts', () => {
    const t = watch();
    t.w.scan([epoch([{ from: 5, to: 5, since: at(0) }])], [], T0 + 10);
    t.w.scan([epoch([])], [], T0 + GRACE + 10);
    expect(t.alerts).toEqual([]);
    expect(t.w.size).toBe(0);
  });

  it('what is left of an alerted hole (partly filled, split) is no new hole; a higher one is', () => {
    const t = watch();
    t.w.scan([epoch([{ from: 5, to: 9, since: at(0) }])], [], T0 + GRACE);
    t.w.scan([epoch([{ from: 5, to: 6, since: at(0) }, { from: 8, to: 9, since: at(0) }])], [], T0 + 2 * GRACE);
    expect(t.ranges()).toEqual([['ag-1', 'E1', 5, 9]]);
    const later = [epoch([{ from: 8, to: 9, since: at(0) }, { from: 20, to: 20, since: at(2 * GRACE) }])];
    t.w.scan(later, [], T0 + 2 * GRACE + 1);
    t.w.scan(later, [], T0 + 3 * GRACE);
    expect(t.ranges()).toEqual([
      ['ag-1', 'E1', 5, 9],
      ['ag-1', 'E1', 20, 20],
    ]);
  });

  it('holes of each agent and epoch are told apart', () => {
    const t = watch();
    t.w.scan([epoch([{ from: 3, to: 3, since: at(0) }], 'ag-1', 'E1'), epoch([{ from: 3, to: 3, since: at(0) }], 'ag-1', 'E2'), epoch([{ from: 3, to: 4, since: at(0) }], 'ag-2', 'E1')], [], T0 + GRACE);
    expect(t.ranges()).toEqual([
      ['ag-1', 'E1', 3, 3],
      ['ag-1', 'E2', 3, 3],
      ['ag-2', 'E1', 3, 4],
    ]);
  });

  it('seqs the agent reported lost itself, and holes backfill recorded lost, do not alert', () => {
    const t = watch();
    const epochs = [epoch([{ from: 5, to: 9, since: at(0), reportedByAgent: true }, { from: 20, to: 29, since: at(0) }, { from: 40, to: 49, since: at(0) }])];
    const lost = [
      { agent: 'ag-1', epoch: 'E1', from: 20, to: 24 },
      { agent: 'ag-1', epoch: 'E1', from: 25, to: 29 },
      { agent: 'ag-1', epoch: 'E1', from: 40, to: 45 },
      { agent: 'ag-1', epoch: 'E2', from: 46, to: 49 },
    ];
    t.w.scan(epochs, lost, T0 + GRACE);
    expect(t.ranges()).toEqual([['ag-1', 'E1', 40, 49]]);
  });

  it('forgets an epoch once its holes are closed: memory follows the open holes', () => {
    const t = watch();
    t.w.scan(Array.from({ length: 1000 }, (_, i) => epoch([{ from: 2, to: 2, since: at(0) }], `ag-${i}`)), [], T0 + GRACE);
    expect(t.alerts).toHaveLength(1000);
    expect(t.w.size).toBe(1000);
    t.w.scan(Array.from({ length: 1000 }, (_, i) => epoch([], `ag-${i}`)), [], T0 + 2 * GRACE);
    expect(t.w.size).toBe(0);
  });
});
