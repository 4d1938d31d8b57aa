import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { formatSize, isMeteorError, parseDuration, parseSize } from '../../../protocols/index.js';

describe('human sizes and durations', () => {
  it('parses sizes', () => {
    expect(parseSize('1GiB')).toBe(1024 ** 3);
    expect(parseSize('64KiB')).toBe(65536);
    expect(parseSize('8 MiB')).toBe(8 * 1024 * 1024);
    expect(parseSize('1MB')).toBe(1_000_000);
    expect(parseSize('512')).toBe(512);
    expect(parseSize(100)).toBe(100);
    for (const bad of ['', 'GiB', '1XB', '-1', '1.5.5MB', 'one']) expect(() => parseSize(bad), bad).toThrowError(/size/);
  });

  it('parses durations', () => {
    expect(parseDuration('7d')).toBe(7 * 86_400_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration(1000)).toBe(1000);
    for (const bad of ['', '7', '7x', 'd', '1h 30m', '-5s']) expect(() => parseDuration(bad), bad).toThrowError(/duration/);
  });

  it('formats sizes', () => {
    expect(formatSize(1536)).toBe('1.5KiB');
    expect(formatSize(10)).toBe('10B');
  });

  it('never throws anything but its typed error', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => {
        for (const f of [parseSize, parseDuration]) {
          try {
            const n = f(s);
            expect(Number.isSafeInteger(n) && n >= 0).toBe(true);
          } catch (err) {
            expect(isMeteorError(err)).toBe(true);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});
