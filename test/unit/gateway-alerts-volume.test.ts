import { describe, expect, it } from 'vitest';
import type { Alert } from '../../gateway/alerts/alert.js';
import { VolumeWatch } from '../../gateway/alerts/volume-watch.js';
import type { PipelineItem } from '../../gateway/pipeline/item.js';
import { reportCommit } from '../../gateway/pipeline/report.js';
import type { PendingIngest } from '../../gateway/pipeline/run-stages.js';
import type { StoredEvent } from '../../protocols/index.js';

const WINDOW = 60_000;

/** A watch on an injected clock; `next()` moves to the end of the current window and checks. */
function watch(options: { below?: number; maxSources?: number } = {}) {
  let now = 1_000_000;
  const alerts: Alert[] = [];
  const untracked: number[] = [];
  const w = new VolumeWatch({
    windowMs: WINDOW,
    below: options.below ?? 0.2,
    raise: (a) => alerts.push(a),
    ...(options.maxSources === undefined ? {} : { maxSources: options.maxSources }),
    onUntracked: (n) => untracked.push(n),
    clock: () => now,
  });
  return {
    w,
    alerts,
    untracked,
    advance(ms: number) {
      now += ms;
      w.check();
    },
    next() {
      now += WINDOW;
      w.check();
    },
  };
}

describe('volume-drop window', () => {
  it('a source that goes silent alerts once, naming it with both counts, and is then forgotten', () => {
    const t = watch();
    t.w.count('door-7', 30);
    t.w.count('door-7', 20);
    t.w.count('steady', 10);
    t.next(); // first window: nothing to compare with
    expect(t.alerts).toEqual([]);
    t.w.count('steady', 10);
    t.next(); // door-7 sent nothing
    expect(t.alerts).toEqual([
      { kind: 'volume-drop', source: 'door-7', windowMs: WINDOW, earlier: 0, previous: 50, current: 0, detail: expect.stringContaining('door-7'), at: new Date(1_000_000 + 2 * WINDOW).toISOString() },
    ]);
    expect(t.w.size).toBe(1);
    for (let i = 0; i < 5; i++) {
      t.w.count('steady', 10);
      t.next();
    }
    expect(t.alerts).toHaveLength(1);
  });

  it('alerts under below × the previous count, not at it, and compares each window with the one before', () => {
    const t = watch({ below: 0.2 });
    t.w.count('s', 100);
    t.next();
    t.w.count('s', 20); // exactly 0.2 × 100: not under
    t.next();
    expect(t.alerts).toEqual([]);
    t.w.count('s', 3); // under 0.2 × 20 = 4
    t.next();
    expect(t.alerts.map((a) => [a.source, a.previous, a.current])).toEqual([['s', 20, 3]]);
    t.w.count('s', 3); // steady at the lower level: no second alert
    t.next();
    expect(t.alerts).toHaveLength(1);
  });

  it('a surge is no baseline: the usual volume after an agent caught up on its backlog raises nothing, a drop under both windows does', () => {
    const t = watch({ below: 0.2 });
    const windows = (counts: number[]) => {
      for (const n of counts) {
        if (n > 0) t.w.count('edge-1', n);
        t.next();
      }
    };
    // Usual 1,000 a window; the gateway was down for six windows (nothing counted, the source forgotten after its
    // silence alert); then the agent's backlog arrives in one window, and the usual volume after it.
    windows([1000, 1000, 0]);
    expect(t.alerts.map((a) => a.current)).toEqual([0]);
    windows([7000, 1000, 1000, 1000]);
    // Before: 1000 < 0.2 × 7000 raised a volume-drop for every agent that had caught up.
    expect(t.alerts).toHaveLength(1);
    // A burst in the middle of the usual: the window after it is compared with the usual too.
    windows([9000, 900]);
    expect(t.alerts).toHaveLength(1);
    // A real drop, under below × both windows before it, still alerts, with the three counts.
    windows([1000, 150]);
    expect(t.alerts.slice(1).map((a) => [a.earlier, a.previous, a.current])).toEqual([[900, 1000, 150]]);
    // Silence after the window that came back alerts at once.
    windows([5000, 0]);
    expect(t.alerts.slice(2).map((a) => [a.earlier, a.previous, a.current])).toEqual([[150, 5000, 0]]);
  });

  it('below 0 alerts only on silence', () => {
    const t = watch({ below: 0 });
    t.w.count('s', 100);
    t.next();
    t.w.count('s', 1);
    t.next();
    expect(t.alerts).toEqual([]);
    t.next();
    expect(t.alerts.map((a) => a.current)).toEqual([0]);
  });

  it('a window ends once: checks before its end do nothing, and a stall of several windows ends one', () => {
    const t = watch();
    t.w.count('s', 10);
    t.advance(WINDOW - 1);
    t.advance(0);
    t.advance(1); // the first window ends here
    t.w.count('s', 10);
    t.advance(WINDOW / 2);
    expect(t.alerts).toEqual([]);
    t.advance(10 * WINDOW); // a suspended host: one window ends, with what it counted
    expect(t.alerts).toEqual([]);
    t.advance(WINDOW - 1);
    expect(t.alerts).toEqual([]);
    t.advance(1); // the window after the stall: s was silent
    expect(t.alerts.map((a) => a.source)).toEqual(['s']);
  });

  it('memory stays bounded: 100k one-off sources are all forgotten, and sources past maxSources are not watched', () => {
    const t = watch({ maxSources: 1000 });
    for (let i = 0; i < 100_000; i++) t.w.count(`device-${i}`, 1);
    expect(t.w.size).toBe(1000);
    t.next();
    expect(t.untracked).toEqual([99_000]);
    t.next(); // the 1000 watched went silent
    expect(t.alerts).toHaveLength(1000);
    expect(t.w.size).toBe(0);
    // Room again: a new source is watched, and a tracked one is never evicted by newcomers.
    t.w.count('late', 5);
    expect(t.w.size).toBe(1);
  });
});

describe('accepted events per source, per commit', () => {
  const entry = (sources: (string | undefined)[]): PendingIngest => ({
    items: sources.map((source, index): PipelineItem => (source === undefined ? { index, duplicate: true } : { index, stored: { source } as StoredEvent })),
    ctx: { method: 'http', peer: 'test' },
    receivedAt: '2026-01-01T00:00:00.000Z',
    receivedMs: 0,
    startedAt: 0,
  });

  it('tells the watch once per run of one source, not once per event, and skips what was not accepted', () => {
    const calls: [string, number][] = [];
    const entries = [entry(['a', 'a', undefined, 'a']), entry(['a', 'b']), entry(['b', 'a'])];
    const responses = entries.map(() => ({ accepted: 0, duplicates: 0, rejected: [] }));
    reportCommit(entries, responses, 0, { onAlert: () => undefined, countAccepted: (source, n) => void calls.push([source, n]) });
    expect(calls).toEqual([
      ['a', 4],
      ['b', 2],
      ['a', 1],
    ]);
  });
});
