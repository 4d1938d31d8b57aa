import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fastCanonicalJson, fastCanonicalJsonWithout, isWellFormed, readCanonicalLine, sha256Hex, withMembers } from '../../../protocols/index.js';

/** The line an agent stores and sends: canonical JSON without `hash`, then `hash` added last. */
function agentLine(event: Record<string, unknown>): string {
  const text = fastCanonicalJson(event);
  const hash = sha256Hex(text);
  return text === '{}' ? `{"hash":"${hash}"}` : `${text.slice(0, -1)},"hash":"${hash}"}`;
}

/** What the generic path makes of a text: the canonical JSON of its event without `hash`, and its hash. */
function generic(text: string): { unhashed: string; hash: unknown } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const record = value as Record<string, unknown>;
  try {
    return { unhashed: fastCanonicalJsonWithout(record, 'hash'), hash: record.hash };
  } catch {
    return undefined;
  }
}

/**
 * The property everything rests on: whenever the scan answers, it answers
 * what the generic path would. Its contract is a text JSON.parse accepted
 * (the pipeline scans only what it has parsed), so others are not asked.
 */
function agreesWithGeneric(text: string): void {
  try {
    JSON.parse(text);
  } catch {
    return;
  }
  const line = readCanonicalLine(text);
  if (line === undefined) return;
  const g = generic(text);
  expect(g, `accepted a text the generic path cannot read: ${text}`).toBeDefined();
  expect(line.unhashed).toBe(g?.unhashed);
  expect(line.hash).toBe(g?.hash);
}

// Values inside the subset the scan takes: plain keys, any string, safe integers of ≤ 15 digits, nesting.
const key = fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_.-]{0,11}$/).filter((k) => k !== '__proto__');
const leaf = fc.oneof(
  fc.string({ unit: 'binary' }).filter(isWellFormed),
  fc.string({ unit: fc.integer({ min: 0, max: 0x3f }).map((c) => String.fromCharCode(c)) }),
  fc.integer({ min: -999_999_999_999_999, max: 999_999_999_999_999 }),
  fc.boolean(),
  fc.constant(null),
);
const inSubset = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('value'), { maxLength: 4 }), fc.dictionary(key, tie('value'), { maxKeys: 5 })),
})).value;
const event = fc.dictionary(key.filter((k) => k !== 'hash'), inSubset, { minKeys: 1, maxKeys: 14 });

describe('readCanonicalLine', () => {
  it('reads every agent line in the subset as the generic path does', () => {
    fc.assert(
      fc.property(event, (e) => {
        const text = agentLine(e);
        const line = readCanonicalLine(text);
        expect(line, text).toBeDefined();
        expect(line?.unhashed).toBe(fastCanonicalJsonWithout(JSON.parse(text) as Record<string, unknown>, 'hash'));
        expect(line?.hash).toBe(sha256Hex(fastCanonicalJson(e)));
      }),
      { numRuns: 3000 },
    );
  });

  it('reads a typical agent event', () => {
    const e = {
      action: 'login',
      actor: 'user-17',
      agent: 'edge-1',
      data: { ip: '10.0.0.1', method: 'publickey', note: 'line\nbreak "quoted" \\ tab\t \u0001 é 😀 \u2028' },
      epoch: '01JBX0000000000000000000',
      id: '01JBX0000000000000000001',
      outcome: 'success',
      prev: 'a'.repeat(64),
      seq: 42,
      source: 'edge-1',
      target: 'ssh://host-17:22',
      time: '2026-11-27T03:00:00.000Z',
      type: 'auth.login',
    };
    const line = readCanonicalLine(agentLine(e));
    expect(line?.unhashed).toBe(fastCanonicalJson(e));
  });

  it('never accepts a text the generic path would read differently, however the line is changed', () => {
    // Edits that keep the JSON valid but make it non-canonical (or that JSON.parse reads differently).
    const tokens = [' ', '\n', '\\/', '\\u0041', '\\u001F', '\\u001f', '\\u0008', '\\b', '\\ud800', '1.0', '1e2', '-0', '0', '10000000000000000', '"hash":"x",', '"a":1,', '"__proto__":{},', '"1":1,', ',', '{', '}', '[', ']', '"'];
    const edited = fc
      .tuple(event, fc.array(fc.tuple(fc.nat(), fc.constantFrom(...tokens), fc.boolean()), { minLength: 1, maxLength: 3 }))
      .map(([e, edits]) => {
        let text = agentLine(e);
        for (const [at, token, replace] of edits) {
          const i = at % text.length;
          text = text.slice(0, i) + token + text.slice(replace ? i + 1 : i);
        }
        return text;
      });
    let parsed = 0;
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(edited, (text) => {
        agreesWithGeneric(text);
        if (generic(text) === undefined) return;
        parsed += 1;
        if (readCanonicalLine(text) === undefined) refused += 1;
        else accepted += 1;
      }),
      { numRuns: 5000 },
    );
    // The edits must reach both answers often, or the property proves little.
    expect({ parsed: parsed > 600, accepted: accepted > 100, refused: refused > 300 }).toEqual({ parsed: true, accepted: true, refused: true });
  });

  it('never accepts a text the generic path would read differently: any JSON object with a hash added', () => {
    const anyObject = fc.dictionary(fc.string({ unit: 'binary' }), fc.jsonValue(), { maxKeys: 8 });
    const texts = fc.tuple(anyObject, fc.boolean(), fc.boolean()).map(([o, sorted, spaced]) => {
      const body = sorted ? fastCanonicalJson(o) : JSON.stringify(o, null, spaced ? 1 : undefined);
      const hash = sha256Hex(body);
      return body.length <= 2 ? `{"hash":"${hash}"}` : `${body.replace(/\s*\}$/, '')},"hash":"${hash}"}`;
    });
    fc.assert(fc.property(texts, agreesWithGeneric), { numRuns: 3000 });
  });

  it('leaves to the generic path each form outside the subset', () => {
    const base = { a: 1, b: 'x' };
    const outside = [
      '{"a":1.5,"b":"x"}',
      '{"a":1e3,"b":"x"}',
      '{"a":-0,"b":"x"}',
      '{"a":1234567890123456,"b":"x"}',
      '{"a":1,"b":"\\/"}',
      '{"a":1,"b":"\\u0041"}',
      '{"a":1,"b":"\\u001F"}',
      '{"a":1,"b":"\\u0009"}',
      '{"a":1,"b":"\\ud800"}',
      '{"a":1, "b":"x"}',
      '{"b":"x","a":1}',
      '{"a":1,"a":2}',
      '{"1":1,"b":"x"}',
      '{"__proto__":1,"b":"x"}',
      '{"a\\"":1,"b":"x"}',
      `{"a":${'['.repeat(40)}${']'.repeat(40)}}`,
    ];
    for (const body of outside) {
      const text = `${body.slice(0, -1)},"hash":"${'0'.repeat(64)}"}`;
      expect(readCanonicalLine(text), body).toBeUndefined();
    }
    const good = agentLine(base);
    expect(readCanonicalLine(good)).toBeDefined();
    // Not an agent line: no hash, hash not last, not 64 lowercase hex digits, something after the brace.
    expect(readCanonicalLine(fastCanonicalJson(base))).toBeUndefined();
    expect(readCanonicalLine(`{"a":1,"hash":"${'0'.repeat(64)}","b":"x"}`)).toBeUndefined();
    expect(readCanonicalLine(good.replace(/"hash":"(.)/, '"hash":"A'))).toBeUndefined();
    expect(readCanonicalLine(`${good} `)).toBeUndefined();
    // A second hash: JSON.parse keeps the last, which is not what the text without it says.
    expect(readCanonicalLine(`{"a":1,"hash":"${'1'.repeat(64)}","hash":"${'0'.repeat(64)}"}`)).toBeUndefined();
  });
});

describe('withMembers', () => {
  it('writes the event with members added exactly as the canonical serialisation of the whole would', () => {
    const ingest = fc.record({ gateway: fc.string(), integrity: fc.constantFrom('verified', 'broken'), peer: fc.string({ unit: 'binary' }).filter(isWellFormed) });
    const tags = fc.option(fc.array(fc.string(), { minLength: 1, maxLength: 3 }), { nil: undefined });
    const withoutOurs = event.filter((e) => !('ingest' in e) && !('tags' in e));
    fc.assert(
      fc.property(withoutOurs, ingest, tags, (e, ing, tg) => {
        const line = readCanonicalLine(agentLine(e));
        if (line === undefined) throw new Error('an agent line in the subset was not read');
        const members: [string, string][] = [
          ['hash', JSON.stringify(line.hash)],
          ['ingest', fastCanonicalJson(ing)],
          ...(tg === undefined ? [] : [['tags', fastCanonicalJson(tg)] as [string, string]]),
        ];
        const whole = { ...e, hash: line.hash, ingest: ing, ...(tg === undefined ? {} : { tags: tg }) };
        expect(withMembers(line, members)).toBe(fastCanonicalJson(whole));
      }),
      { numRuns: 3000 },
    );
  });

  it('adds members to an event with one member or none before them, and refuses a key the event has', () => {
    const only = readCanonicalLine(agentLine({ z: 1 }));
    expect(only && withMembers(only, [['hash', '"h"'], ['ingest', '{}']])).toBe('{"hash":"h","ingest":{},"z":1}');
    const before = readCanonicalLine(agentLine({ a: 1 }));
    expect(before && withMembers(before, [['hash', '"h"']])).toBe('{"a":1,"hash":"h"}');
    const has = readCanonicalLine(agentLine({ a: 1, ingest: { x: 1 } }));
    expect(has && withMembers(has, [['hash', '"h"'], ['ingest', '{}']])).toBeUndefined();
  });
});
