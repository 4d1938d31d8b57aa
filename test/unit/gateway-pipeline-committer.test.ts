import { describe, expect, it } from 'vitest';
import { GroupCommitter } from '../../gateway/pipeline/committer/group-committer.js';

type Entry = { id: number; size: number };

function recorder(delayMs = 2) {
  const batches: number[][] = [];
  let active = 0;
  let maxActive = 0;
  const process = async (entries: Entry[]) => {
    active += 1;
    maxActive = Math.max(maxActive, active);
    batches.push(entries.map((e) => e.id));
    await new Promise((r) => setTimeout(r, delayMs));
    active -= 1;
    return entries.map((e) => `done ${e.id}`);
  };
  return { batches, process, maxActive: () => maxActive };
}

describe('group committer', () => {
  it('answers many concurrent callers with few ordered, single-flight commits', async () => {
    const r = recorder();
    const c = new GroupCommitter<Entry, string>({ maxEvents: 1000, maxWaitMs: 5, maxQueuedEvents: 100_000 }, (e) => e.size, r.process);
    const results = await Promise.all(Array.from({ length: 500 }, (_, id) => c.submit({ id, size: 1 })));
    expect(results).toEqual(Array.from({ length: 500 }, (_, id) => `done ${id}`));
    expect(r.batches.length).toBeLessThanOrEqual(2);
    expect(r.batches.flat()).toEqual(Array.from({ length: 500 }, (_, id) => id));
    expect(r.maxActive()).toBe(1);
  });

  it('commits at maxEvents without splitting an entry, and queues during a commit', async () => {
    const r = recorder(5);
    const c = new GroupCommitter<Entry, string>({ maxEvents: 10, maxWaitMs: 10_000, maxQueuedEvents: 1000 }, (e) => e.size, r.process);
    const all = [4, 4, 4, 30, 1, 1].map((size, id) => c.submit({ id, size }));
    await Promise.all(all);
    // 0+1 fill the first commit (2 would overflow it); the oversized 3 goes alone.
    expect(r.batches).toEqual([[0, 1], [2], [3], [4, 5]]);
    expect(r.maxActive()).toBe(1);
  });

  it('rejects with a 503 overload error past the queue bound, but always admits into an empty queue', async () => {
    const r = recorder(20);
    const c = new GroupCommitter<Entry, string>({ maxEvents: 5, maxWaitMs: 1, maxQueuedEvents: 10 }, (e) => e.size, r.process);
    const big = c.submit({ id: 0, size: 50 }); // over the bound, but the queue is empty: admitted, committing now
    const waiting = c.submit({ id: 1, size: 6 }); // queued behind the commit in flight
    const over = c.submit({ id: 2, size: 5 }); // 6 + 5 > 10
    const fits = c.submit({ id: 3, size: 4 }); // 6 + 4 = 10
    await expect(over).rejects.toMatchObject({ code: 'METEORZX_GATEWAY_OVERLOADED', status: 503 });
    await expect(Promise.all([big, waiting, fits])).resolves.toEqual(['done 0', 'done 1', 'done 3']);
  });

  it('rejects every caller of a failed commit, then carries on', async () => {
    let fail = true;
    const c = new GroupCommitter<Entry, string>({ maxEvents: 100, maxWaitMs: 1, maxQueuedEvents: 1000 }, () => 1, async (entries) => {
      if (fail) {
        fail = false;
        throw new Error('disk full');
      }
      return entries.map((e) => `ok ${e.id}`);
    });
    const failed = await Promise.allSettled([c.submit({ id: 1, size: 1 }), c.submit({ id: 2, size: 1 })]);
    expect(failed.map((f) => f.status)).toEqual(['rejected', 'rejected']);
    await expect(c.submit({ id: 3, size: 1 })).resolves.toBe('ok 3');
  });

  it('drains on close and refuses afterwards', async () => {
    const r = recorder();
    const c = new GroupCommitter<Entry, string>({ maxEvents: 100, maxWaitMs: 60_000, maxQueuedEvents: 1000 }, () => 1, r.process);
    const pending = [c.submit({ id: 1, size: 1 }), c.submit({ id: 2, size: 1 })];
    await c.close();
    await c.close();
    await expect(Promise.all(pending)).resolves.toEqual(['done 1', 'done 2']);
    await expect(c.submit({ id: 3, size: 1 })).rejects.toMatchObject({ code: 'METEORZX_PIPELINE_CLOSED' });
  });
});
