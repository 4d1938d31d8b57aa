import { describe, expect, it } from 'vitest';
import { GroupCommitter, type GroupCommitOptions, type Prepared } from '../../gateway/pipeline/committer/group-committer.js';

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

/** The one-step committer of before pipelining: one commit at a time. */
const serial = <R>(opts: GroupCommitOptions, size: (e: Entry) => number, process: (entries: Entry[]) => Promise<R[]>) =>
  new GroupCommitter<Entry, R>({ ...opts, maxInFlight: 1 }, size, GroupCommitter.serial(process));

describe('group committer', () => {
  it('answers many concurrent callers with few ordered, single-flight commits', async () => {
    const r = recorder();
    const c = serial({ maxEvents: 1000, maxWaitMs: 5, maxQueuedEvents: 100_000 }, (e) => e.size, r.process);
    const results = await Promise.all(Array.from({ length: 500 }, (_, id) => c.submit({ id, size: 1 })));
    expect(results).toEqual(Array.from({ length: 500 }, (_, id) => `done ${id}`));
    expect(r.batches.length).toBeLessThanOrEqual(2);
    expect(r.batches.flat()).toEqual(Array.from({ length: 500 }, (_, id) => id));
    expect(r.maxActive()).toBe(1);
  });

  it('commits at maxEvents without splitting an entry, and queues during a commit', async () => {
    const r = recorder(5);
    const c = serial({ maxEvents: 10, maxWaitMs: 10_000, maxQueuedEvents: 1000 }, (e) => e.size, r.process);
    const all = [4, 4, 4, 30, 1, 1].map((size, id) => c.submit({ id, size }));
    await Promise.all(all);
    // 0+1 fill the first commit (2 would overflow it); the oversized 3 goes alone.
    expect(r.batches).toEqual([[0, 1], [2], [3], [4, 5]]);
    expect(r.maxActive()).toBe(1);
  });

  it('rejects with a 503 overload error past the queue bound, but always admits into an empty queue', async () => {
    const r = recorder(20);
    const c = serial({ maxEvents: 5, maxWaitMs: 1, maxQueuedEvents: 10 }, (e) => e.size, r.process);
    const big = c.submit({ id: 0, size: 50 }); // over the bound, but the queue is empty: admitted, committing now
    const waiting = c.submit({ id: 1, size: 6 }); // queued behind the commit in flight
    const over = c.submit({ id: 2, size: 5 }); // 6 + 5 > 10
    const fits = c.submit({ id: 3, size: 4 }); // 6 + 4 = 10
    await expect(over).rejects.toMatchObject({ code: 'METEORZX_GATEWAY_OVERLOADED', status: 503 });
    await expect(Promise.all([big, waiting, fits])).resolves.toEqual(['done 0', 'done 1', 'done 3']);
  });

  it('rejects every caller of a failed commit, then carries on', async () => {
    let fail = true;
    const c = serial({ maxEvents: 100, maxWaitMs: 1, maxQueuedEvents: 1000 }, () => 1, async (entries) => {
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
    const c = serial({ maxEvents: 100, maxWaitMs: 60_000, maxQueuedEvents: 1000 }, () => 1, r.process);
    const pending = [c.submit({ id: 1, size: 1 }), c.submit({ id: 2, size: 1 })];
    await c.close();
    await c.close();
    await expect(Promise.all(pending)).resolves.toEqual(['done 1', 'done 2']);
    await expect(c.submit({ id: 3, size: 1 })).rejects.toMatchObject({ code: 'METEORZX_PIPELINE_CLOSED' });
  });

  describe('pipelined (maxInFlight 2)', () => {
    /** A commit whose prepare and write the test releases by hand, recording what overlaps. */
    function stepped() {
      const log: string[] = [];
      const writes: Array<{ ids: number[]; finish: (ok: boolean) => void }> = [];
      const prepares: Array<{ ids: number[]; release: () => void }> = [];
      let preparing = 0;
      let maxPreparing = 0;
      const prepare = async (entries: Entry[]): Promise<Prepared<string>> => {
        const ids = entries.map((e) => e.id);
        preparing += 1;
        maxPreparing = Math.max(maxPreparing, preparing);
        log.push(`prepare ${ids.join(',')}`);
        await new Promise<void>((release) => prepares.push({ ids, release }));
        preparing -= 1;
        const done = new Promise<string[]>((resolve, reject) =>
          writes.push({
            ids,
            finish: (ok) => {
              log.push(`${ok ? 'written' : 'failed'} ${ids.join(',')}`);
              if (ok) resolve(ids.map((id) => `ok ${id}`));
              else reject(new Error(`write of ${ids.join(',')} failed`));
            },
          }),
        );
        return { done };
      };
      return { log, writes, prepares, prepare, maxPreparing: () => maxPreparing };
    }
    const tick = () => new Promise((r) => setTimeout(r, 1));

    it('prepares commit k+1 while k is written, one prepare at a time, answering in order', async () => {
      const s = stepped();
      const c = new GroupCommitter<Entry, string>({ maxEvents: 100, maxWaitMs: 1, maxQueuedEvents: 1000 }, () => 1, s.prepare);
      const first = c.submit({ id: 1, size: 1 });
      await tick();
      expect(s.log).toEqual(['prepare 1']);
      const second = c.submit({ id: 2, size: 1 });
      const third = c.submit({ id: 3, size: 1 });
      await tick();
      expect(s.log).toEqual(['prepare 1']); // no second prepare while the first runs
      s.prepares[0]?.release();
      await tick();
      // k=1 is being written; everything queued meanwhile is prepared at once, as one batch.
      expect(s.log).toEqual(['prepare 1', 'prepare 2,3']);
      const fourth = c.submit({ id: 4, size: 1 });
      s.prepares[1]?.release();
      await tick();
      // Two commits under way (1 writing, 2,3 prepared): 4 waits for a slot.
      expect(s.log).toEqual(['prepare 1', 'prepare 2,3']);
      s.writes[0]?.finish(true);
      await expect(first).resolves.toBe('ok 1');
      await tick();
      expect(s.log).toEqual(['prepare 1', 'prepare 2,3', 'written 1', 'prepare 4']);
      s.prepares[2]?.release();
      await tick();
      s.writes[1]?.finish(true);
      s.writes[2]?.finish(true);
      await expect(Promise.all([second, third, fourth])).resolves.toEqual(['ok 2', 'ok 3', 'ok 4']);
      expect(s.maxPreparing()).toBe(1);
      await c.close();
    });

    it('does not wait for the timer while a commit is in flight, and takes up to maxEvents', async () => {
      const s = stepped();
      const c = new GroupCommitter<Entry, string>({ maxEvents: 3, maxWaitMs: 60_000, maxQueuedEvents: 1000 }, () => 1, s.prepare);
      const all = [c.submit({ id: 1, size: 1 }), c.submit({ id: 2, size: 1 }), c.submit({ id: 3, size: 1 })]; // full: no wait
      await tick();
      s.prepares[0]?.release();
      await tick();
      all.push(...[4, 5, 6, 7].map((id) => c.submit({ id, size: 1 })));
      await tick();
      expect(s.log).toEqual(['prepare 1,2,3', 'prepare 4,5,6']);
      s.prepares[1]?.release();
      s.writes[0]?.finish(true);
      await tick();
      s.prepares[2]?.release();
      await tick();
      s.writes[1]?.finish(true);
      s.writes[2]?.finish(true);
      await expect(Promise.all(all)).resolves.toEqual([1, 2, 3, 4, 5, 6, 7].map((id) => `ok ${id}`));
      expect(s.log).toEqual(['prepare 1,2,3', 'prepare 4,5,6', 'written 1,2,3', 'prepare 7', 'written 4,5,6', 'written 7']);
    });

    it('rejects the callers of a failed write or prepare only, and carries on', async () => {
      let n = 0;
      const c = new GroupCommitter<Entry, string>({ maxEvents: 100, maxWaitMs: 1, maxQueuedEvents: 1000 }, () => 1, async (entries) => {
        n += 1;
        if (n === 1) throw new Error('prepare failed');
        if (n === 2) return { done: Promise.reject(new Error('write failed')) };
        return { done: Promise.resolve(entries.map((e) => `ok ${e.id}`)) };
      });
      await expect(c.submit({ id: 1, size: 1 })).rejects.toThrow('prepare failed');
      await expect(c.submit({ id: 2, size: 1 })).rejects.toThrow('write failed');
      await expect(c.submit({ id: 3, size: 1 })).resolves.toBe('ok 3');
      await c.close();
    });

    it('drains both stages on close', async () => {
      const s = stepped();
      const c = new GroupCommitter<Entry, string>({ maxEvents: 1, maxWaitMs: 60_000, maxQueuedEvents: 1000 }, () => 1, s.prepare);
      const all = [1, 2, 3].map((id) => c.submit({ id, size: 1 }));
      const closing = c.close();
      // Release every step as it appears until close resolves.
      let closed = false;
      void closing.then(() => (closed = true));
      while (!closed) {
        await tick();
        for (const p of s.prepares.splice(0)) p.release();
        for (const w of s.writes.splice(0)) w.finish(true);
      }
      await expect(Promise.all(all)).resolves.toEqual(['ok 1', 'ok 2', 'ok 3']);
    });
  });
});
