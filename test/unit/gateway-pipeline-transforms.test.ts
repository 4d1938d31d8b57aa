import { describe, expect, it } from 'vitest';
import { sha256Hex, canonicalJson, type AuditEvent } from '../../protocols/index.js';
import { Transforms } from '../../gateway/pipeline/transforms/transforms.js';

const base = (): AuditEvent => ({
  id: 'a',
  source: 's',
  type: 't',
  actor: 'alice',
  data: { card: '4111', user: 'bob', debug: { trace: 1 }, nested: { deep: { x: 1 } } },
});

describe('transforms stage', () => {
  it('masks, hashes, renames, drops and sets dotted paths in order, on a copy', () => {
    const t = new Transforms([
      { mask: ['data.card', 'data.missing'] },
      { hash: ['actor', 'data.nested'] },
      { rename: { 'data.user': 'target', 'data.none': 'data.other' } },
      { drop: ['data.debug'] },
      { set: { 'data.site': 'eu-1', 'data.meta.v': 2 } },
    ]);
    const input = base();
    const out = t.apply(input);
    expect(out).toEqual({
      id: 'a',
      source: 's',
      type: 't',
      actor: sha256Hex('alice'),
      target: 'bob',
      data: { card: '***', nested: sha256Hex(canonicalJson({ deep: { x: 1 } })), site: 'eu-1', meta: { v: 2 } },
    });
    expect(input).toEqual(base());
  });

  it('hashes with HMAC-SHA256 when given a key: a known test vector, and the plain SHA-256 without one', () => {
    const fox = { ...base(), actor: 'The quick brown fox jumps over the lazy dog', data: { n: 1 } };
    const keyed = new Transforms([{ hash: ['actor', 'data'] }], 'key').apply(fox);
    expect(keyed.actor).toBe('f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8');
    expect(keyed.data).toMatch(/^[0-9a-f]{64}$/);
    expect(keyed.data).not.toBe(sha256Hex(canonicalJson({ n: 1 })));
    expect(new Transforms([{ hash: ['actor'] }]).apply(fox).actor).toBe('d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592');
  });

  it('returns the same event when there is nothing to do', () => {
    const e = base();
    expect(new Transforms([]).apply(e)).toBe(e);
  });

  it('does not create paths through scalars', () => {
    const out = new Transforms([{ set: { 'data.card.x': 1 } }, { mask: ['data.card.x'] }]).apply(base());
    expect(out.data?.card).toBe('4111');
  });

  it('keeps a renamed field where it was when a value is in the way of its new path', () => {
    const t = new Transforms([{ rename: { 'data.user': 'data.card.holder', 'data.nested.deep': 'actor.name' } }]);
    const out = t.apply(base());
    // data.card is a string and actor a string: neither can hold a member, so nothing moves and nothing is lost.
    expect(out).toEqual(base());
    // The way clears once the old field is gone: a field moved below its own old path.
    expect(new Transforms([{ rename: { 'data.user': 'data.user.name' } }]).apply(base()).data?.user).toEqual({ name: 'bob' });
  });

  it('walks only members the event has: a __proto__ key is a field, never Object.prototype', () => {
    const probe = {} as Record<string, unknown>;
    try {
      const t = new Transforms([{ set: { 'data.__proto__.polluted': 1 } }, { mask: ['data.toString'] }]);
      const out = t.apply(base());
      expect(probe.polluted).toBeUndefined();
      expect(Object.hasOwn(out.data ?? {}, 'toString')).toBe(false);
      // Set as a member of the event, as JSON.parse reads {"__proto__": ...}, so it is stored.
      expect(JSON.parse(JSON.stringify(out.data))).toEqual({ ...base().data, ['__proto__']: { polluted: 1 } });
      const parsed = JSON.parse('{"id":"a","source":"s","type":"t","data":{"__proto__":{"pin":"1234"}}}') as AuditEvent;
      expect(JSON.stringify(new Transforms([{ mask: ['data.__proto__.pin'] }]).apply(parsed).data)).toBe('{"__proto__":{"pin":"***"}}');
    } finally {
      delete (Object.prototype as Record<string, unknown>).polluted;
    }
  });

  it('steps into every item of an array after a name ending in [], for mask, hash and drop', () => {
    const event = {
      ...base(),
      data: {
        cards: [{ number: '4111', cvv: '123', brand: 'visa' }, { number: '5500', brand: 'mc' }, 'legacy-text', null, [{ number: '1' }]],
        emails: ['a@example.com', 'b@example.com'],
        grid: [
          ['p', 'q'],
          ['r', 7],
        ],
        users: { name: 'not an array' },
        deep: [{ owners: [{ pin: '1' }, { pin: '2' }] }],
      },
    } as AuditEvent;
    const out = new Transforms([
      { mask: ['data.cards[].number', 'data.grid[][]', 'data.users[].name', 'data.deep[].owners[].pin'] },
      { hash: ['data.emails[]'] },
      { drop: ['data.cards[].cvv'] },
    ]).apply(event);
    expect(out.data).toEqual({
      // An item that is not an object has no member to mask; an array inside the array is not walked by one [].
      cards: [{ number: '***', brand: 'visa' }, { number: '***', brand: 'mc' }, 'legacy-text', null, [{ number: '1' }]],
      // Each item hashed on its own, so each stays joinable with the same address elsewhere.
      emails: [sha256Hex('a@example.com'), sha256Hex('b@example.com')],
      grid: [
        ['***', '***'],
        ['***', '***'],
      ],
      // [] where the value is not an array finds nothing, as a scalar in the way of a plain path does.
      users: { name: 'not an array' },
      deep: [{ owners: [{ pin: '***' }, { pin: '***' }] }],
    });
    // The item's own members only, never Object.prototype.
    const parsed = JSON.parse('{"id":"a","source":"s","type":"t","data":{"list":[{"__proto__":{"pin":"1"}},{}]}}') as AuditEvent;
    const masked = new Transforms([{ mask: ['data.list[].__proto__.pin', 'data.list[].toString'] }]).apply(parsed);
    expect(JSON.stringify(masked.data)).toBe('{"list":[{"__proto__":{"pin":"***"}},{}]}');
  });

  it('refuses [] where it cannot be applied, naming the path and what to write instead', () => {
    expect(() => new Transforms([{ rename: { 'data.cards[].n': 'data.n' } }])).toThrow(/steps into an array.*only mask, hash and drop/);
    expect(() => new Transforms([{ set: { 'data.cards[].n': 1 } }])).toThrow(/steps into an array/);
    expect(() => new Transforms([{ drop: ['data.cards[]'] }])).toThrow(/drop the array itself/);
    expect(() => new Transforms([{ mask: ['data.cards[0]'] }])).toThrow(/not a dotted field path \(a name may end in \[\]/);
    expect(() => new Transforms([{ mask: ['data.[]'] }])).toThrow(/not a dotted field path/);
    expect(() => new Transforms([{ hash: ['tags[]'] }])).toThrow(/owns/);
  });

  it('refuses fields the gateway owns and malformed paths', () => {
    expect(() => new Transforms([{ drop: ['id'] }])).toThrow(expect.objectContaining({ code: 'METEORZX_TRANSFORM_INVALID' }));
    expect(() => new Transforms([{ rename: { 'data.x': 'seq' } }])).toThrow(/seq/);
    expect(() => new Transforms([{ mask: ['ingest.peer'] }])).toThrow(/owns/);
    expect(() => new Transforms([{ mask: ['data..x'] }])).toThrow(/dotted/);
    expect(() => new Transforms([{ bogus: ['x'] } as never])).toThrow(/unknown transform/);
  });
});
