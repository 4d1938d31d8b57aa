import { describe, expect, it } from 'vitest';
import { AppendWindow } from '../../agent/intake/files/append-window.js';

/** A promise and the functions that settle it. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const noSkip = (): void => {
  throw new Error('skip should not run');
};

describe('AppendWindow', () => {
  it('runs the appends of different paths side by side', async () => {
    const window = new AppendWindow(8, 1 << 20);
    const a = deferred();
    const b = deferred();
    const started: string[] = [];
    await window.add({}, 10, () => (started.push('a'), a.promise), noSkip);
    await window.add({}, 10, () => (started.push('b'), b.promise), noSkip);
    expect(started).toEqual(['a', 'b']);
    a.resolve();
    b.resolve();
    await window.drain();
  });

  it("starts a path's append only once its earlier one is settled", async () => {
    const window = new AppendWindow(8, 1 << 20);
    const path = {};
    const first = deferred();
    const started: string[] = [];
    await window.add(path, 10, () => (started.push('first'), first.promise), noSkip);
    const second = window.add(path, 10, async () => void started.push('second'), noSkip);
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual(['first']);
    first.resolve();
    await second;
    await window.drain();
    expect(started).toEqual(['first', 'second']);
  });

  it("gives up a path's later append once one failed, so its checkpoint cannot pass the failed lines", async () => {
    const window = new AppendWindow(8, 1 << 20);
    const path = {};
    const other = {};
    const first = deferred();
    const ran: string[] = [];
    const skipped: string[] = [];
    await window.add(path, 10, () => first.promise, noSkip);
    const second = window.add(path, 10, async () => void ran.push('second'), () => void skipped.push('second'));
    const neighbour = window.add(other, 10, async () => void ran.push('neighbour'), () => void skipped.push('neighbour'));
    first.reject(new Error('disk full'));
    await Promise.all([second, neighbour]);
    await expect(window.drain()).rejects.toThrow('disk full');
    expect(skipped).toEqual(['second']);
    expect(ran).toEqual(['neighbour']);
    // The next poll starts afresh.
    await window.add(path, 10, async () => void ran.push('next poll'), noSkip);
    await window.drain();
    expect(ran).toEqual(['neighbour', 'next poll']);
  });
});
