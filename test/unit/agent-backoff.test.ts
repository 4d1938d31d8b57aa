import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Backoff } from '../../agent/push/backoff.js';
import { CircuitBreaker } from '../../agent/push/circuit-breaker.js';
import { parseRetryAfter } from '../../common/retry-after.js';

describe('backoff (full jitter)', () => {
  it('keeps every delay within [0, min(max, initial · 2^n)]', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 100_000 }), fc.array(fc.double({ min: 0, max: 0.9999999, noNaN: true }), { minLength: 1, maxLength: 60 }), (initial, extra, randoms) => {
        const max = initial + extra;
        let i = 0;
        const backoff = new Backoff({ initialMs: initial, maxMs: max, random: () => randoms[i++ % randoms.length] as number });
        randoms.forEach((_, n) => {
          const delay = backoff.next();
          expect(delay).toBeGreaterThanOrEqual(0);
          expect(delay).toBeLessThanOrEqual(Math.min(max, initial * 2 ** n));
        });
      }),
    );
  });

  it('doubles the ceiling per failure up to the max, and reset starts over', () => {
    const backoff = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999999 });
    expect([1, 2, 3, 4, 5].map(() => backoff.next())).toEqual([99, 199, 399, 799, 999]);
    backoff.reset();
    expect(backoff.next()).toBe(99);
  });
});

describe('circuit breaker', () => {
  it('opens after threshold failures, half-opens after the cool-down, reopens on a failed probe, closes on success', () => {
    let now = 0;
    const breaker = new CircuitBreaker({ threshold: 3, cooldownMs: 100, now: () => now });
    breaker.onFailure();
    breaker.onFailure();
    expect(breaker.state).toBe('closed');
    breaker.onFailure();
    expect(breaker.state).toBe('open');
    expect(breaker.remainingMs()).toBe(100);
    now = 99;
    expect(breaker.state).toBe('open');
    now = 100;
    expect(breaker.state).toBe('half-open');
    breaker.onFailure();
    expect(breaker.state).toBe('open');
    now = 200;
    expect(breaker.state).toBe('half-open');
    breaker.onSuccess();
    expect(breaker.state).toBe('closed');
    breaker.onFailure();
    expect(breaker.state).toBe('closed'); // the count started over
  });
});

describe('Retry-After', () => {
  it('reads delay-seconds and HTTP dates', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });

  it('reads all three HTTP-date forms as GMT, the zoneless asctime one too, whatever the local time zone', () => {
    const tz = process.env.TZ;
    process.env.TZ = 'America/New_York';
    try {
      const now = Date.UTC(2026, 11, 7, 18, 17, 4);
      expect(parseRetryAfter('Mon, 07 Dec 2026 18:17:14 GMT', now)).toBe(10_000); // IMF-fixdate
      expect(parseRetryAfter('Monday, 07-Dec-26 18:17:14 GMT', now)).toBe(10_000); // RFC 850
      // asctime: before, read as New York time, 5 h late (a wait of the 5 min cap instead of 10 s).
      expect(parseRetryAfter('Mon Dec  7 18:17:14 2026', now)).toBe(10_000);
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
  });
});
