import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../protocols/index.js';
import { custodyJson } from '../../gateway/storage/custody-json.js';

const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('a"b\\c\n', '\u2028', '\ud800', 'é€😀'));
const record = fc.record(
  {
    n: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    at: text,
    outcome: fc.constantFrom('accepted', 'duplicate', 'rejected'),
    method: fc.constantFrom('mqtt', 'http', 'pull'),
    peer: text,
    id: text,
    source: text,
    reason: text,
    eventHash: text,
    prev: text,
    hash: text,
  },
  { requiredKeys: ['n', 'at', 'outcome', 'method', 'peer'] },
);

function outcome(fn: () => string): string {
  try {
    return fn();
  } catch (err) {
    return `threw ${(err as { code?: string }).code}`;
  }
}

describe('custody record canonical JSON', () => {
  it('equals the generic RFC 8785 serialisation, or throws the same error', () => {
    fc.assert(
      fc.property(record, (r) => {
        expect(outcome(() => custodyJson(r))).toBe(outcome(() => canonicalJson(r)));
      }),
      { numRuns: 2000 },
    );
  });

  it('defers to the generic path for a field it does not know or a non-integer', () => {
    expect(custodyJson({ n: 1, extra: { b: 1, a: 2 } } as never)).toBe('{"extra":{"a":2,"b":1},"n":1}');
    expect(custodyJson({ n: 1.5 })).toBe('{"n":1.5}');
  });
});
