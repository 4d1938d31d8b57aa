import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { bodyFormat, decodeBatch, decodePayload, DEFAULT_LIMITS, isMeteorError, parseCommand } from '../../../protocols/index.js';

const enc = (s: string) => Buffer.from(s, 'utf8');

describe('decodeBatch', () => {
  it('reads one JSON event, a JSON array and NDJSON', () => {
    expect(decodeBatch(enc('{"type":"a"}'), 'json').map((i) => i.value)).toEqual([{ type: 'a' }]);
    expect(decodeBatch(enc('[{"type":"a"},{"type":"b"}]'), 'json').map((i) => i.index)).toEqual([0, 1]);
    expect(decodeBatch(enc('{"type":"a"}\r\n\n{"type":"b"}\n'), 'ndjson').map((i) => i.value)).toEqual([{ type: 'a' }, { type: 'b' }]);
  });

  it('reads an RFC 7464 JSON text sequence (application/json-seq): records start at RS and may span lines', () => {
    expect(bodyFormat('application/json-seq')).toBe('json-seq');
    const body = enc('\u001e{"type":"a"}\n\u001e{\n  "type": "b"\n}\n\u001e{oops\n\u001e\n\u001e{"type":"c"}');
    const items = decodeBatch(body, bodyFormat('application/json-seq') ?? 'json', DEFAULT_LIMITS, { keepText: true });
    // Before the fix: json-seq was read as NDJSON, and every record (RS first) was malformed JSON.
    expect(items.map((i) => [i.index, i.value ?? i.error?.split(':')[0]])).toEqual([
      [0, { type: 'a' }],
      [1, { type: 'b' }],
      [2, 'malformed JSON'],
      [3, { type: 'c' }],
    ]);
    // The text kept is the JSON text alone, without its RS or LF: an agent's line is read from it as from NDJSON.
    expect(items[0]?.text).toBe('{"type":"a"}');
    expect(items[0]?.bytes).toBe(12);
  });

  it('rejects a bad NDJSON line alone, keeping its neighbours', () => {
    const body = Buffer.concat([enc('{"type":"a"}\n{oops\n'), Buffer.from([0xff, 0xfe, 0x0a]), enc(`{"type":"big","data":"${'x'.repeat(70_000)}"}\n{"type":"c"}`)]);
    const items = decodeBatch(body, 'ndjson');
    expect(items.map((i) => i.error === undefined)).toEqual([true, false, false, false, true]);
    expect(items[1]?.error).toMatch(/malformed JSON/);
    expect(items[2]?.error).toBe('invalid UTF-8');
    expect(items[3]?.error).toMatch(/maxEventBytes/);
    expect(items[4]?.value).toEqual({ type: 'c' });
  });

  it('throws typed errors for an unreadable or oversized body or batch', () => {
    expect(() => decodeBatch(enc('{oops'), 'json')).toThrowError(/not valid JSON/);
    expect(() => decodeBatch(Buffer.from([0x7b, 0xff, 0x7d]), 'json')).toThrowError(/UTF-8/);
    expect(() => decodeBatch(enc('x'.repeat(100)), 'json', { ...DEFAULT_LIMITS, maxBodyBytes: 10 })).toThrowError(/maxBodyBytes/);
    const many = Array.from({ length: 1001 }, () => '{"type":"a"}').join('\n');
    expect(() => decodeBatch(enc(many), 'ndjson')).toThrowError(/maxBatchEvents/);
    // A JSON array is counted as it is scanned, and nothing past the limit is read: not even the garbage there.
    const manyArray = `[${Array.from({ length: 1001 }, () => '{"type":"a"}').join(',')},${'{oops'.repeat(1000)}`;
    expect(() => decodeBatch(enc(manyArray), 'json')).toThrowError(/more than 1000 events \(maxBatchEvents\)/);
    expect(decodeBatch(enc(`[${Array.from({ length: 1000 }, () => '1').join(',')}]`), 'json')).toHaveLength(1000);
    try {
      decodeBatch(enc('{oops'), 'json');
    } catch (err) {
      expect(isMeteorError(err) && err.status).toBe(400);
    }
  });

  it('with jsonSequence, reads a JSON body that is a run of objects (Fluent Bit json_stream, gelf) one item per value', () => {
    const seq = { jsonSequence: true };
    // Fluent Bit's json_stream: records back to back, no separator; gelf: one per line. Both sent as application/json.
    expect(decodeBatch(enc('{"type":"a"}{"type":"b","data":{"s":"}{\\"]"}}'), 'json', DEFAULT_LIMITS, seq).map((i) => [i.index, i.value, i.bytes])).toEqual([
      [0, { type: 'a' }, 12],
      [1, { type: 'b', data: { s: '}{"]' } }, 33],
    ]);
    expect(decodeBatch(enc('\ufeff{"type":"a"}\n{"type":"b"}\n'), 'json', DEFAULT_LIMITS, seq).map((i) => i.value)).toEqual([{ type: 'a' }, { type: 'b' }]);
    // One value, an array and a broken body read as before.
    expect(decodeBatch(enc('[{"type":"a"}]'), 'json', DEFAULT_LIMITS, seq).map((i) => i.value)).toEqual([{ type: 'a' }]);
    for (const bad of ['{"type":"a"}{oops}', '{"type":"a"} 7 {"type":"b"}', '{"type":"a"}{"type":"b"', '{"type":"a"}}']) {
      expect(() => decodeBatch(enc(bad), 'json', DEFAULT_LIMITS, seq), bad).toThrowError(/not valid JSON/);
    }
    expect(() => decodeBatch(enc('{"type":"a"}'.repeat(1001)), 'json', DEFAULT_LIMITS, seq)).toThrowError(/maxBatchEvents/);
    // Without it (an MQTT payload), a run is not one event or an array.
    expect(() => decodeBatch(enc('{"type":"a"}{"type":"b"}'), 'json')).toThrowError(/not valid JSON/);
    expect(() => decodePayload(enc('{"type":"a"}{"type":"b"}'))).toThrowError(/not valid JSON/);
  });

  it('decodes MQTT payloads like JSON bodies', () => {
    expect(decodePayload(enc('[{"type":"a"},1]')).map((i) => i.value)).toEqual([{ type: 'a' }, 1]);
  });

  it('sizes each item of a JSON array by its bytes as sent, whatever strings and spacing it holds', () => {
    const blank = fc.constantFrom('', ' ', '\n', ' \t\r\n ');
    const tricky = fc.oneof(fc.jsonValue(), fc.string({ unit: 'binary' }), fc.constantFrom('a,b]', '\\', '"', '\\"]', '{"x":[1,2]}', 'é😀'));
    fc.assert(
      fc.property(fc.array(tricky, { maxLength: 20 }), blank, blank, (values, a, b) => {
        const texts = values.map((v) => JSON.stringify(v) as string);
        const body = enc(`${a}[${a}${texts.join(`${a},${b}`)}${b}]${a}`);
        const items = decodeBatch(body, 'json');
        expect(items.map((i) => i.bytes)).toEqual(texts.map((t) => Buffer.byteLength(t)));
      }),
      { numRuns: 1000 },
    );
    // Pretty-printed items count their inner whitespace too: the bytes the sender spent.
    const pretty = JSON.stringify([{ type: 'a', data: { k: [1, 2] } }, 'x'], null, 2);
    expect(decodeBatch(enc(pretty), 'json').map((i) => i.bytes)).toEqual([JSON.stringify({ type: 'a', data: { k: [1, 2] } }, null, 2).replace(/\n/g, '\n  ').length, 3]);
    // An item over maxEventBytes inside a batch is refused alone by validation, sized without re-serialising it.
    const big = `{"type":"big","data":"${'x'.repeat(70_000)}"}`;
    expect(decodePayload(enc(`[{"type":"a"},${big}]`)).map((i) => i.bytes)).toEqual([12, big.length]);
  });

  it('parses a JSON array item by item exactly as JSON.parse reads the whole body, errors included', () => {
    // What decoding the whole body at once gives: the values, or JSON.parse's error message.
    const whole = (body: Buffer): unknown => {
      let text = body.toString('utf8');
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      try {
        const v: unknown = JSON.parse(text);
        return Array.isArray(v) ? v : [v];
      } catch (err) {
        return `body is not valid JSON: ${(err as Error).message}`;
      }
    };
    const ours = (body: Buffer): unknown => {
      try {
        return decodeBatch(body, 'json').map((i) => i.value);
      } catch (err) {
        return (err as Error).message;
      }
    };
    const structural = fc.constantFrom('[', ']', '{', '}', ',', '"', '\\', ' ', '\n', ':', '1', '\ufeff');
    // Valid arrays, then the same texts with a structural character inserted or removed somewhere.
    const arrays = fc.tuple(fc.array(fc.jsonValue({ maxDepth: 3 }), { maxLength: 8 }), fc.constantFrom('', ' ', '\n ')).map(([vs, sp]) => `${sp}[${vs.map((v) => JSON.stringify(v)).join(`${sp},`)}]${sp}`);
    const mutated = fc.tuple(arrays, fc.nat(), structural, fc.boolean()).map(([t, at, ch, insert]) => {
      const k = t.length === 0 ? 0 : at % t.length;
      return insert ? t.slice(0, k) + ch + t.slice(k) : t.slice(0, k) + t.slice(k + 1);
    });
    for (const gen of [arrays, mutated]) {
      fc.assert(
        fc.property(gen, (text) => {
          const body = enc(text);
          expect(ours(body)).toEqual(whole(body));
        }),
        { numRuns: 3000 },
      );
    }
    for (const text of ['[', ']', '[]', ' [ ] ', '[,]', '[1,]', '[,1]', '[1,,2]', '[1 2]', '[1]x', '[}', '[{]}', '["a\\"]', '["\\"]', '\ufeff[1]', '[[]]]', '[1] [2]']) {
      expect(ours(enc(text)), text).toEqual(whole(enc(text)));
    }
  });

  it('never parses a JSON text larger than an event could be: such an item or body is refused unparsed, its neighbours kept', () => {
    // Before, a one-event body or an array item of 1 MiB of `{},{},…` went through JSON.parse whole (≈ 350,000 objects
    // built, then refused for its size): 16 agent intake requests of 8 MiB at once took the agent's RSS from 142 MB to 1.6 GB.
    const limits = { ...DEFAULT_LIMITS, chainAllowanceBytes: 1024 };
    const cap = limits.maxEventBytes + 1024;
    const big = `{"type":"big","data":{"a":[${Array.from({ length: 350_000 }, () => '{}').join(',')}]}}`;
    const parse = vi.spyOn(JSON, 'parse');
    const longest = (): number => Math.max(0, ...parse.mock.calls.map(([text]) => text.length));
    try {
      const one = decodeBatch(enc(big), 'json', limits);
      expect(one.map((i) => [i.index, i.error])).toEqual([[0, `event is ${big.length} bytes, over the limit of ${limits.maxEventBytes} (maxEventBytes)`]]);
      const array = decodeBatch(enc(`[{"type":"a"},${big},{"type":"c"}]`), 'json', limits);
      expect(array.map((i) => i.value ?? i.error?.replace(/\d+ bytes/, 'N bytes'))).toEqual([
        { type: 'a' },
        `event is N bytes, over the limit of ${limits.maxEventBytes} (maxEventBytes)`,
        { type: 'c' },
      ]);
      const run = decodeBatch(enc(`{"type":"a"}\n${big}\n{"type":"c"}`), 'json', limits, { jsonSequence: true });
      expect(run.map((i) => i.error === undefined)).toEqual([true, false, true]);
      // Unreadable large bodies are still a 400, told from the scan and the items' own parse.
      for (const bad of [`[{"type":"a"},${big}`, `${big}x`, `[{"type":"a"},{oops},${big}]`, `${big}${big}`]) {
        expect(() => decodeBatch(enc(bad), 'json', limits), bad.slice(0, 20)).toThrow(/body is not valid JSON/);
      }
      expect(longest()).toBeLessThanOrEqual(cap);
      // A large body that is one small event with blanks around it, or a large scalar, is read as before.
      expect(decodeBatch(enc(`${' '.repeat(200_000)}{"type":"a"}`), 'json', limits).map((i) => i.value)).toEqual([{ type: 'a' }]);
      expect(decodeBatch(enc(`"${'x'.repeat(200_000)}"`), 'json', limits)[0]?.value).toHaveLength(200_000);
    } finally {
      parse.mockRestore();
    }
  });

  it('names formats by content type', () => {
    expect(bodyFormat(undefined)).toBe('json');
    expect(bodyFormat('application/json; charset=utf-8')).toBe('json');
    expect(bodyFormat('application/x-ndjson')).toBe('ndjson');
    expect(bodyFormat('text/plain')).toBeUndefined();
  });

  it('never throws anything but its typed error on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.constantFrom('json' as const, 'ndjson' as const, 'json-seq' as const), (bytes, format) => {
        try {
          const items = decodeBatch(bytes, format);
          for (const i of items) expect(typeof i.error === 'string' || 'value' in i).toBe(true);
        } catch (err) {
          expect(isMeteorError(err)).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('parseCommand', () => {
  it('parses a pull command', () => {
    expect(parseCommand('{"op":"pull","after":120}')).toEqual({ op: 'pull', after: 120 });
    expect(parseCommand('{"op":"pull","after":1,"until":5,"epoch":"e"}')).toEqual({ op: 'pull', after: 1, until: 5, epoch: 'e' });
  });

  it('rejects anything else with a typed error', () => {
    for (const bad of ['', 'null', '[]', '{"op":"rm"}', '{"op":"pull"}', '{"op":"pull","after":-1}', '{"op":"pull","after":5,"until":5}']) {
      expect(() => parseCommand(bad), bad).toThrowError(/invalid command/);
    }
    fc.assert(
      fc.property(fc.string(), (s) => {
        try {
          parseCommand(s);
        } catch (err) {
          expect(isMeteorError(err)).toBe(true);
        }
      }),
    );
  });
});
