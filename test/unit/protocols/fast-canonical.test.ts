import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, computeHash, fastCanonicalJson, fastCanonicalJsonWithout, sha256Hex, type AuditEvent } from '../../../protocols/index.js';

function outcome(fn: () => string): string {
  try {
    return fn();
  } catch (err) {
    return `threw ${(err as { code?: string }).code}`;
  }
}

const same = (v: unknown): void => {
  expect(outcome(() => fastCanonicalJson(v))).toBe(outcome(() => canonicalJson(v)));
};

describe('fast canonical JSON', () => {
  it('equals the generic RFC 8785 serialisation on any JSON value', () => {
    fc.assert(fc.property(fc.jsonValue(), same), { numRuns: 2000 });
    fc.assert(fc.property(fc.object({ key: fc.string({ unit: 'binary' }), values: [fc.string({ unit: 'binary' }), fc.double(), fc.integer()] }), same), {
      numRuns: 2000,
    });
  });

  it('agrees on the unusual cases, including the failing ones', () => {
    for (const v of [
      { b: 1, a: [1, undefined, 'x'], c: undefined },
      { '\ud800': 1 },
      ['\udc00'],
      { n: Number.NaN },
      { n: -0, big: 1e21, small: 1e-7 },
      { d: new Date(0) },
      { é: 1, e: 2, E: 3, '😀': 4, '\u2028': 5 },
      // Keys sorted by insertion (≤ 16 keys) and by Array.prototype.sort (more), in code-unit order.
      { '\uffff': 1, '😀': 2, z: 3, a: 4 },
      Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${String.fromCharCode(122 - i)}`, i])),
      Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${(i * 7919) % 40}`, i])),
      { 10: 'a', 9: 'b', a: { 0: 1, '01': 2 } },
      JSON.parse('{"__proto__": {"x": 1}, "a": 1}'),
      { f: () => 1, s: Symbol('s'), a: [() => 1, Symbol('t')] },
      { n: 10n },
      // Keys already in order (written without a copy) around children that need one, or that are skipped.
      { a: 1, b: { d: 1, c: 2 }, c: [1, { y: 1, x: 2 }, 3] },
      { a: 1, b: undefined, c: { e: 1, f: Symbol('s') } },
      [1, [2, { b: 1, a: 2 }], undefined, 'z'],
    ]) {
      same(v);
    }
  });

  it('leaves out one top-level key exactly as canonicalising a copy without it does', () => {
    const without = (v: Record<string, unknown>, key: string): void => {
      const { [key]: _dropped, ...rest } = v;
      expect(outcome(() => fastCanonicalJsonWithout(v, key))).toBe(outcome(() => canonicalJson(rest)));
    };
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.string(), (v, key) => without(v, key)),
      { numRuns: 1000 },
    );
    for (const v of [{ b: 1, hash: 'x', a: 2 }, { hash: 'x', n: Number.NaN }, { a: { hash: 'inner' }, hash: 'outer' }, { '\ud800': 1, hash: 'x' }]) {
      without(v, 'hash');
    }
    // A nested key of the same name stays.
    expect(fastCanonicalJsonWithout({ a: { hash: 'inner' }, hash: 'outer' }, 'hash')).toBe('{"a":{"hash":"inner"}}');
  });

  it('hashes an event without its own hash field', () => {
    const event = { type: 't', seq: 2, prev: 'p', id: 'x' } as AuditEvent;
    const expected = sha256Hex(canonicalJson(event));
    expect(computeHash(event)).toBe(expected);
    expect(computeHash({ ...event, hash: 'anything' })).toBe(expected);
  });
});
