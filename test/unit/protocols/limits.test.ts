import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonDepth } from '../../../protocols/index.js';

/** The plain recursive definition: a scalar is depth 0, an object or array one more than its deepest child. */
function depthOf(v: unknown): number {
  if (v === null || typeof v !== 'object') return 0;
  const children = Array.isArray(v) ? v : Object.values(v);
  return 1 + children.reduce<number>((m, c) => Math.max(m, depthOf(c)), 0);
}

describe('jsonDepth', () => {
  it('is the depth of any JSON value, and limit + 1 past the limit', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 0, max: 9 }), (v, limit) => {
        const d = depthOf(v);
        expect(jsonDepth(v, limit)).toBe(d > limit ? limit + 1 : d);
        expect(jsonDepth(v, 100)).toBe(d);
      }),
      { numRuns: 2000 },
    );
  });

  it('stops at the limit on hostile nesting without recursing', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i += 1) deep = i % 2 === 0 ? [deep] : { k: deep };
    expect(jsonDepth(deep, 32)).toBe(33);
    expect(jsonDepth(JSON.parse('{"__proto__":{"a":{}}}'), 10)).toBe(3);
  });
});
