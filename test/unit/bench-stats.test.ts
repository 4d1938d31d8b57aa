import { describe, expect, it } from 'vitest';
import { median, percentile, slope, summarize } from '../../bench/lib/stats.mjs';
import { cpuFromStat, rssFromStatus } from '../../bench/lib/proc-stat.mjs';

describe('bench stats', () => {
  it('median of odd and even counts, ignoring values that are not finite numbers', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([5, Number.NaN, undefined, 'x', 1, Infinity])).toBe(3);
    expect(median([])).toBeNaN();
  });

  it('summarize gives median, min, max and how many runs counted', () => {
    expect(summarize([10, 30, 20, Number.NaN])).toEqual({ median: 20, min: 10, max: 30, n: 3 });
    expect(summarize([]).n).toBe(0);
  });

  it('percentile is nearest-rank', () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
  });

  it('slope is the least-squares bytes per id', () => {
    expect(slope([{ x: 0, y: 10 }, { x: 10, y: 30 }, { x: 20, y: 50 }])).toBeCloseTo(2);
    expect(slope([{ x: 1, y: 1 }])).toBeNaN();
    expect(slope([{ x: 1, y: 1 }, { x: 1, y: 5 }])).toBeNaN();
  });
});

describe('bench /proc parsing', () => {
  it('reads utime + stime after a command name holding spaces and parentheses', () => {
    // Fields 14 and 15 (utime 250, stime 50 ticks) = 3 s.
    const stat = '4242 (rs:main Q:Reg (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 1000 300';
    expect(cpuFromStat(stat)).toBe(3);
  });

  it('reads VmRSS in MiB', () => {
    expect(rssFromStatus('Name:\tnode\nVmPeak:\t 99999 kB\nVmRSS:\t   51200 kB\nThreads: 7\n')).toBe(50);
    expect(rssFromStatus('Name: zombie\n')).toBeNaN();
    expect(rssFromStatus('VmRSS:\t 73376 kB\nRssAnon:\t 28672 kB\nRssFile:\t 44560 kB\n', 'RssAnon')).toBe(28);
  });
});
