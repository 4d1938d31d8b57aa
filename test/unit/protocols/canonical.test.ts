import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { canonicalJson, deterministicId, isMeteorError, newId } from '../../../protocols/index.js';

describe('canonicalJson (RFC 8785)', () => {
  it('sorts keys and writes numbers the JCS way', () => {
    expect(canonicalJson({ b: 1, a: [true, null, 'x'], c: { z: 1e21, y: 0.1 } })).toBe('{"a":[true,null,"x"],"b":1,"c":{"y":0.1,"z":1e+21}}');
  });

  it('matches the RFC 8785 §3.2.2 sample', () => {
    // The RFC's own sample numbers: their extra digits are the point of the test.
    // eslint-disable-next-line no-loss-of-precision
    const input = { numbers: [333333333.33333329, 1e30, 4.5, 2e-3, 0.000000000000000000000000001], string: '\u20ac$\u000F\u000aA\'\u0042\u0022\u005c\\"/', literals: [null, true, false] };
    expect(canonicalJson(input)).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it('is stable under key order and re-parsing', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const once = canonicalJson(v);
        expect(canonicalJson(JSON.parse(once))).toBe(once);
      }),
      { numRuns: 500 },
    );
  });

  it('throws only its typed error on values JSON cannot hold', () => {
    fc.assert(
      fc.property(fc.anything({ withBigInt: false }), (v) => {
        try {
          canonicalJson(v);
        } catch (err) {
          expect(isMeteorError(err)).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
    for (const bad of [NaN, Infinity, 'a\uDC00', undefined]) {
      expect(() => canonicalJson(bad)).toThrowError(/cannot canonicalize/);
    }
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalJson(cyclic)).toThrowError(/cannot canonicalize/);
  });
});

describe('ids', () => {
  it('newId is a monotonic ULID', () => {
    const ids = Array.from({ length: 1000 }, () => newId());
    for (const id of ids) expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('deterministicId depends on source and content, not key order', () => {
    const a = deterministicId('dev-1', { type: 'x', data: { a: 1, b: 2 } });
    expect(deterministicId('dev-1', { data: { b: 2, a: 1 }, type: 'x' })).toBe(a);
    expect(deterministicId('dev-2', { type: 'x', data: { a: 1, b: 2 } })).not.toBe(a);
    expect(deterministicId('dev-1', { type: 'y', data: { a: 1, b: 2 } })).not.toBe(a);
    expect(a.length).toBeLessThanOrEqual(128);
  });
});
