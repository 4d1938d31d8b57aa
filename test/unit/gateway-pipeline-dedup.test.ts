import { describe, expect, it } from 'vitest';
import { Dedup } from '../../gateway/pipeline/dedup/dedup.js';

function fakeStorage(stored: Map<string, number>, now: () => number) {
  const asked: string[][] = [];
  return {
    asked,
    seen: async (ids: readonly string[], windowMs: number) => {
      asked.push([...ids]);
      return new Set(ids.filter((id) => (stored.get(id) ?? -Infinity) >= now() - windowMs));
    },
  };
}

describe('dedup stage', () => {
  it('marks repeats inside one batch, first occurrence wins', async () => {
    const storage = fakeStorage(new Map(), () => 1000);
    const d = new Dedup(storage, { windowMs: 100, cacheSize: 10, clock: () => 1000 });
    expect(await d.duplicates(['a', 'b', 'a', 'c', 'b', 'a'])).toEqual([false, false, true, false, true, true]);
    expect(storage.asked).toEqual([['a', 'b', 'c']]);
  });

  it('asks storage for what the cache does not know and honours the window', async () => {
    let now = 1000;
    const storage = fakeStorage(new Map([['old', 850], ['recent', 950]]), () => now);
    let hits = 0;
    const d = new Dedup(storage, { windowMs: 100, cacheSize: 10, clock: () => now, onCacheHits: (n) => (hits += n) });
    expect(await d.duplicates(['old', 'recent', 'new', 'recent'])).toEqual([false, true, false, true]);
    d.remember(['new'], 1000);
    expect(await d.duplicates(['new'])).toEqual([true]);
    expect(hits).toBe(1);
    expect(storage.asked).toEqual([['old', 'recent', 'new']]);
    now = 1200; // 'new' is now outside the window: the cache no longer answers, storage says not seen
    expect(await d.duplicates(['new'])).toEqual([false]);
    expect(storage.asked.at(-1)).toEqual(['new']);
  });

  it('bounds the cache', async () => {
    const storage = fakeStorage(new Map(), () => 0);
    const d = new Dedup(storage, { windowMs: 100, cacheSize: 2, clock: () => 0 });
    d.remember(['a', 'b', 'c'], 0);
    await d.duplicates(['a', 'b', 'c']);
    expect(storage.asked).toEqual([['a']]);
    const off = new Dedup(storage, { windowMs: 100, cacheSize: 0, clock: () => 0 });
    off.remember(['x'], 0);
    await off.duplicates(['x']);
    expect(storage.asked.at(-1)).toEqual(['x']);
  });
});
