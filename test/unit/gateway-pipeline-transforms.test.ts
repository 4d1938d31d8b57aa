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

  it('refuses fields the gateway owns and malformed paths', () => {
    expect(() => new Transforms([{ drop: ['id'] }])).toThrow(expect.objectContaining({ code: 'METEORZX_TRANSFORM_INVALID' }));
    expect(() => new Transforms([{ rename: { 'data.x': 'seq' } }])).toThrow(/seq/);
    expect(() => new Transforms([{ mask: ['ingest.peer'] }])).toThrow(/owns/);
    expect(() => new Transforms([{ mask: ['data..x'] }])).toThrow(/dotted/);
    expect(() => new Transforms([{ bogus: ['x'] } as never])).toThrow(/unknown transform/);
  });
});
