import { describe, expect, it } from 'vitest';
import { RecentIds } from '../../gateway/pipeline/dedup/recent-ids.js';

describe('recent ids (dedup cache)', () => {
  it('keeps between capacity/2 and capacity of the latest ids, never more', () => {
    const cache = new RecentIds(100);
    for (let i = 0; i < 1000; i += 1) {
      cache.set(`id-${i}`, i);
      expect(cache.size).toBeLessThanOrEqual(100);
    }
    expect(cache.size).toBeGreaterThanOrEqual(50);
    // The latest 50 are always there, with their receive time; the oldest are gone.
    for (let i = 950; i < 1000; i += 1) expect(cache.get(`id-${i}`)).toBe(i);
    expect(cache.get('id-0')).toBeUndefined();
    expect(cache.get('id-899')).toBeUndefined();
  });

  it('updates an id in place without evicting others', () => {
    const cache = new RecentIds(4);
    cache.set('a', 1);
    cache.set('b', 2);
    cache.set('b', 3);
    expect(cache.get('a')).toBe(1);
    expect(cache.get('b')).toBe(3);
    expect(cache.size).toBe(2);
  });
});
