import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, sha256Hex } from '../../protocols/index.js';
import { chainCustody, checkCustodyRecord } from '../../gateway/storage/ledger.js';
import type { CustodyInput } from '../../gateway/storage/types.js';

const input: fc.Arbitrary<CustodyInput> = fc.record(
  {
    at: fc.oneof(fc.constant('2026-03-10T10:00:00.000Z'), fc.string()),
    outcome: fc.constantFrom('accepted' as const, 'duplicate' as const, 'rejected' as const),
    method: fc.constantFrom('mqtt' as const, 'http' as const, 'pull' as const),
    // Constants as well as arbitrary strings: one caller's records repeat at, peer and source in runs.
    peer: fc.oneof(fc.constant('127.0.0.1:5000'), fc.string()),
    id: fc.string(),
    source: fc.oneof(fc.constant('edge-1'), fc.constant('edge-2'), fc.string()),
    reason: fc.string(),
  },
  { requiredKeys: ['at', 'outcome', 'method', 'peer'] },
);

describe('custody ledger chaining', () => {
  it('numbers, links and hashes records; each stored line is the canonical JSON of its record', () => {
    fc.assert(
      fc.property(fc.array(input, { maxLength: 20 }), (inputs) => {
        const hashes = inputs.filter((i) => i.outcome === 'accepted').map((_, k) => sha256Hex(String(k)));
        const start = { n: 7, hash: 'f'.repeat(64) as string | undefined };
        const { records, lines, head } = chainCustody(inputs, start, hashes);
        let before = start;
        records.forEach((r, i) => {
          expect(lines[i]).toBe(canonicalJson(r));
          const { hash, ...rest } = r;
          expect(hash).toBe(sha256Hex(canonicalJson(rest)));
          expect(checkCustodyRecord(r, before)).toBeUndefined();
          before = { n: r.n, hash: r.hash };
        });
        expect(head).toEqual(before);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses a mismatch between accepted records and stored events', () => {
    const accepted: CustodyInput = { at: 'x', outcome: 'accepted', method: 'http', peer: 'p' };
    expect(() => chainCustody([accepted], { n: 0, hash: undefined }, [])).toThrow();
    expect(() => chainCustody([], { n: 0, hash: undefined }, ['h'])).toThrow();
  });
});
