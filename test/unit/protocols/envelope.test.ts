import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DEFAULT_LIMITS, formatIssues, isRfc3339, rfc3339Ms, validateEvent } from '../../../protocols/index.js';

function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
}

describe('validateEvent', () => {
  it('accepts a minimal event and a full one', () => {
    expect(validateEvent({ type: 'auth.login' }).ok).toBe(true);
    const full = {
      id: '01J000', source: 'host-17', time: '2026-11-26T12:00:00.123+01:00', type: 'auth.login',
      actor: { id: 'u1' }, action: 'login', target: 'ssh', outcome: 'failure', data: { ip: '10.0.0.1' },
      agent: 'host-17', epoch: 'ep', seq: 3, prev: 'a'.repeat(64), hash: 'b'.repeat(64),
    };
    expect(validateEvent(full)).toEqual({ ok: true, event: full });
  });

  it('reports every problem with its path', () => {
    const r = validateEvent({ type: 5, source: 'bad source', time: 'yesterday', outcome: 'maybe', data: [], seq: -1, prev: 'XYZ', extra: 1 });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const paths = r.errors.map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['type', 'source', 'time', 'outcome', 'data', 'seq', 'prev', 'extra']));
    expect(formatIssues(r.errors)).toContain('type: must be a string, got number');
  });

  it('a reason lists at most 10 problems and cuts a long key path: thousands of unknown keys make one short line', () => {
    const many: Record<string, unknown> = { type: 't' };
    for (let k = 0; k < 3000; k += 1) many[`k${k}`] = 0;
    const r = validateEvent(many);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors).toHaveLength(3000); // every problem is still found; only the reason is short
    const reason = formatIssues(r.errors);
    // Before the fix: 3,000 issues in one reason, ≈ 170 KB, answered and kept in custody for this one event.
    expect(reason.length).toBeLessThan(1000);
    expect(reason).toMatch(/^k0: unknown field .*; k9: unknown field [^;]*; … and 2990 more$/);

    const longKey = `${'x'.repeat(199)}\u{1F600}${'y'.repeat(60_000)}`;
    const one = validateEvent({ type: 't', [longKey]: 1 }, { ...DEFAULT_LIMITS, maxEventBytes: 1 << 20 });
    expect(one.ok).toBe(false);
    if (one.ok) return;
    const cut = formatIssues(one.errors);
    expect(cut).toBe(`${'x'.repeat(199)}…: unknown field (free-form values belong under data)`);
  });

  it('requires type', () => {
    const r = validateEvent({ source: 'a' });
    expect(r).toEqual({ ok: false, errors: [{ path: 'type', message: 'required' }] });
  });

  it('rejects non-objects', () => {
    for (const v of [null, 1, 'x', [], true]) expect(validateEvent(v).ok).toBe(false);
  });

  it('enforces the size limit, naming it', () => {
    const r = validateEvent({ type: 'x', data: { blob: 'a'.repeat(DEFAULT_LIMITS.maxEventBytes) } });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(formatIssues(r.errors)).toContain('maxEventBytes');
  });

  it('enforces the depth limit, naming it, without walking further', () => {
    expect(validateEvent({ type: 'x', data: nested(30) }).ok).toBe(true);
    const r = validateEvent({ type: 'x', data: nested(100_000) });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(formatIssues(r.errors)).toContain('maxDepth');
  });

  it('rejects lone surrogates (not encodable as UTF-8) with the path', () => {
    const r = validateEvent({ type: 'x', data: { name: 'a\uD800b' } });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]?.path).toBe('data.name');
  });

  it('rejects numbers JSON.parse turned into Infinity, with the path', () => {
    const r = validateEvent(JSON.parse('{"type":"x","data":{"list":[1,{"m":-1e400}]}}'));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]).toEqual({ path: 'data.list.1.m', message: expect.stringMatching(/^number out of range/) });
    expect(validateEvent({ type: 'x', data: { m: 1.7e308 } }).ok).toBe(true);
  });

  it('allows a chained event the fields its agent added (chainAllowanceBytes), and only a chained one', () => {
    const limits = { ...DEFAULT_LIMITS, maxEventBytes: 1000, chainAllowanceBytes: 300 };
    const chained = { type: 'x', agent: 'a', epoch: 'e', seq: 1, hash: 'a'.repeat(64) };
    expect(validateEvent(chained, limits, 1200).ok).toBe(true);
    const over = validateEvent(chained, limits, 1301);
    expect(over.ok ? undefined : over.errors[0]?.message).toBe("event is 1301 bytes, over the limit of 1300 (maxEventBytes + 300 for a chained event's added fields)");
    const plain = validateEvent({ type: 'x' }, limits, 1200);
    expect(plain.ok ? undefined : plain.errors[0]?.message).toBe('event is 1200 bytes, over the limit of 1000 (maxEventBytes)');
    // Where events are first taken in (the agent), there is no allowance.
    expect(validateEvent(chained, { ...limits, chainAllowanceBytes: undefined }, 1200).ok).toBe(false);
  });

  it('requires agent, epoch and seq together', () => {
    expect(validateEvent({ type: 'x', seq: 1 }).ok).toBe(false);
    expect(validateEvent({ type: 'x', agent: 'a', epoch: 'e', seq: 1 }).ok).toBe(true);
  });

  it('checks RFC 3339 strictly', () => {
    expect(isRfc3339('2026-02-28T23:59:59Z')).toBe(true);
    expect(isRfc3339('2026-02-30T00:00:00Z')).toBe(false);
    expect(isRfc3339('2026-11-26')).toBe(false);
    expect(isRfc3339('2026-11-26T25:00:00Z')).toBe(false);
    // The same answers when asked again, in any order (the last valid string is remembered).
    for (const t of ['2026-02-28T23:59:59Z', '2026-02-28T23:59:59Z', '2026-02-29T00:00:00Z', '2024-02-29T00:00:00.5+01:00', '2024-02-29T00:00:00.5+01:00', '2026-02-30T00:00:00Z']) {
      expect(isRfc3339(t)).toBe(t !== '2026-02-29T00:00:00Z' && t !== '2026-02-30T00:00:00Z');
    }
  });

  it('takes a leap second (RFC 3339 §5.7) as the last ms of its minute', () => {
    // Before: refused ("must be an RFC 3339 date-time"), Date.parse giving NaN for :60.
    expect(validateEvent({ type: 't', time: '2016-12-31T23:59:60Z' }).ok).toBe(true);
    expect(rfc3339Ms('2016-12-31T23:59:60Z')).toBe(Date.parse('2016-12-31T23:59:59.999Z'));
    expect(rfc3339Ms('2016-12-31 18:59:60.5-05:00')).toBe(Date.parse('2016-12-31T23:59:59.999Z'));
    expect(rfc3339Ms('2016-12-31T23:59:61Z')).toBeNaN();
    expect(isRfc3339('2016-12-31T23:59:61Z')).toBe(false);
  });

  it('never throws on hostile input and always answers', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue({ maxDepth: 40 }), fc.anything({ maxDepth: 6 }), fc.object()), (value) => {
        const r = validateEvent(value);
        expect(typeof r.ok).toBe('boolean');
        if (!r.ok) expect(r.errors.length).toBeGreaterThan(0);
      }),
      { numRuns: 1000 },
    );
  });

  it('accepts any event built from valid parts', () => {
    const event = fc.record(
      {
        type: fc.string({ minLength: 1, maxLength: 50 }).filter((s) => !/\p{Surrogate}/u.test(s)),
        source: fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/),
        outcome: fc.constantFrom('success', 'failure', 'unknown'),
        data: fc.dictionary(fc.stringMatching(/^[a-z]{1,8}$/), fc.jsonValue({ maxDepth: 4 })),
      },
      { requiredKeys: ['type'] },
    );
    fc.assert(
      fc.property(event, (e) => {
        expect(validateEvent(e).ok).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});
