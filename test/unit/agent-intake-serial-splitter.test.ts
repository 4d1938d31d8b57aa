import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, validateEvent } from '../../protocols/index.js';
import { LineSplitter, type SplitRecord } from '../../agent/intake/serial/line-splitter.js';
import { recordToEvent, type RecordContext } from '../../agent/intake/serial/serial-records.js';

const texts = (records: SplitRecord[]) => records.map((r) => (r.kind === 'discarded' ? `<discarded ${r.bytesSeen}>` : r.bytes.toString()));

describe('serial line splitter', () => {
  it('splits on a delimiter that arrives split across chunks', () => {
    const s = new LineSplitter('\r\n', 100);
    expect(texts(s.push(Buffer.from('one\r')))).toEqual([]);
    expect(texts(s.push(Buffer.from('\ntwo\r\nthr')))).toEqual(['one', 'two']);
    expect(texts(s.push(Buffer.from('ee\r\n')))).toEqual(['three']);
    expect(s.heldBytes).toBe(0);
  });

  it('keeps a partial last record until its delimiter, and hands it over at end()', () => {
    const s = new LineSplitter('\n', 100);
    expect(s.push(Buffer.from('abc'))).toEqual([]);
    expect(s.heldBytes).toBe(3);
    expect(s.end()).toEqual({ kind: 'line', bytes: Buffer.from('abc') });
    expect(s.end()).toBeUndefined();
  });

  it('cuts an overlong record, reports the whole length and discards its tail up to the delimiter', () => {
    const s = new LineSplitter('\n', 10);
    expect(s.push(Buffer.from('0123456789ABCDEF'))).toEqual([]);
    expect(s.inOverflow).toBe(true);
    // Memory stays at the kept head whatever the device sends.
    for (let i = 0; i < 100; i += 1) s.push(Buffer.alloc(1000, 0x41));
    expect(s.heldBytes).toBeLessThanOrEqual(10);
    const out = s.push(Buffer.from('XY\nnext\n'));
    expect(out).toEqual([
      { kind: 'truncated', bytes: Buffer.from('0123456789'), bytesSeen: 16 + 100_000 + 2, complete: true },
      { kind: 'line', bytes: Buffer.from('next') },
    ]);
    expect(s.inOverflow).toBe(false);
  });

  it('cuts an overlong record that ends in the same chunk', () => {
    const s = new LineSplitter('\n', 4);
    expect(s.push(Buffer.from('abcdefgh\nok\n'))).toEqual([
      { kind: 'truncated', bytes: Buffer.from('abcd'), bytesSeen: 8, complete: true },
      { kind: 'line', bytes: Buffer.from('ok') },
    ]);
  });

  it('hands over the head of a record that stalls (flushOverflow), then reports only the tail length', () => {
    const s = new LineSplitter('||', 5);
    s.push(Buffer.from('abcdefghij|'));
    expect(s.flushOverflow()).toEqual({ kind: 'truncated', bytes: Buffer.from('abcde'), bytesSeen: 10, complete: false });
    expect(s.flushOverflow()).toBeUndefined();
    expect(s.push(Buffer.from('|z||'))).toEqual([
      { kind: 'discarded', bytesSeen: 10 },
      { kind: 'line', bytes: Buffer.from('z') },
    ]);
  });

  it('does not count the \\r before a "\\n" delimiter against maxLineBytes (CRLF devices)', () => {
    const json = '{"type":"door.open","data":{"n":1}}';
    const ctx: RecordContext = { format: 'json', type: 'serial.line', source: undefined, port: '/dev/ttyX', stripCr: true, limits: DEFAULT_LIMITS };
    const [record] = new LineSplitter('\n', json.length, { crlf: true }).push(Buffer.from(`${json}\r\n`));
    expect(recordToEvent(record as SplitRecord, ctx)).toEqual({ event: { type: 'door.open', data: { n: 1 } } });
    // The \r and the \n in different chunks; one byte more is a cut record.
    const s = new LineSplitter('\n', 2, { crlf: true });
    expect(s.push(Buffer.from('hi\r'))).toEqual([]);
    expect(s.push(Buffer.from('\nhey\r\nab\r'))).toEqual([
      { kind: 'line', bytes: Buffer.from('hi\r') },
      { kind: 'truncated', bytes: Buffer.from('he'), bytesSeen: 4, complete: true },
    ]);
    expect(s.push(Buffer.from('c\n'))).toEqual([{ kind: 'truncated', bytes: Buffer.from('ab'), bytesSeen: 4, complete: true }]);
    // Without crlf the \r is a byte like any other.
    expect(new LineSplitter('\n', 2).push(Buffer.from('hi\r\n'))).toEqual([{ kind: 'truncated', bytes: Buffer.from('hi'), bytesSeen: 3, complete: true }]);
  });

  it('equals a plain split for any chunking, and never holds more than max + one chunk (property)', () => {
    const line = fc.string({ unit: fc.constantFrom('a', 'b', '\u00e9', '|'), maxLength: 30 });
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 10 }), (lines, cuts) => {
        const max = 12;
        const delimiter = '|#';
        const clean = lines.map((l) => l.replaceAll('|#', '|'));
        const stream = Buffer.from(clean.map((l) => `${l}${delimiter}`).join(''));
        const s = new LineSplitter(delimiter, max);
        const got: SplitRecord[] = [];
        let at = 0;
        let i = 0;
        while (at < stream.length) {
          const n = cuts[i % cuts.length] as number;
          got.push(...s.push(stream.subarray(at, at + n)));
          expect(s.heldBytes).toBeLessThanOrEqual(max + 9 + 2);
          at += n;
          i += 1;
        }
        const expected = clean.map((l) => {
          const b = Buffer.from(l);
          return b.length > max
            ? { kind: 'truncated', bytes: b.subarray(0, max), bytesSeen: b.length, complete: true }
            : { kind: 'line', bytes: b };
        });
        expect(got).toEqual(expected);
      }),
    );
  });
});

describe('serial records to events', () => {
  const ctx: RecordContext = { format: 'json', type: 'serial.line', source: undefined, port: '/dev/ttyX', stripCr: true, limits: DEFAULT_LIMITS };
  const line = (text: string): SplitRecord => ({ kind: 'line', bytes: Buffer.from(text) });

  it('takes a valid JSON event as it is and skips blank lines', () => {
    expect(recordToEvent(line('{"type":"door.open","data":{"n":1}}\r'), ctx)).toEqual({ event: { type: 'door.open', data: { n: 1 } } });
    expect(recordToEvent(line('  \r'), ctx)).toBeUndefined();
  });

  it('gives a JSON event without a source the configured one', () => {
    expect(recordToEvent(line('{"type":"t"}'), { ...ctx, source: 'meter-1' })?.event.source).toBe('meter-1');
  });

  it('turns bad JSON, bad UTF-8 and invalid events into a flagged error event with a capped sample', () => {
    const bad = recordToEvent(line(`{"type": ${'x'.repeat(5000)}`), ctx);
    expect(bad?.invalid).toMatch(/not valid JSON/);
    expect(bad?.event.type).toBe('meteorzx.intake.error');
    const data = bad?.event.data as Record<string, unknown>;
    expect(data).toMatchObject({ intake: 'serial', port: '/dev/ttyX', bytes: 5009, rawTruncated: true });
    expect((data.raw as string).length).toBe(1024);
    expect(recordToEvent({ kind: 'line', bytes: Buffer.from([0x7b, 0xff, 0x7d]) }, ctx)?.invalid).toBe('not valid UTF-8');
    expect(recordToEvent(line('{"type":"t","outcome":"maybe"}'), ctx)?.invalid).toMatch(/outcome/);
    expect(validateEvent(bad?.event).ok).toBe(true);
  });

  it('wraps a line, and shortens one whose escaped JSON would pass maxEventBytes', () => {
    const lineCtx: RecordContext = { ...ctx, format: 'line', source: 'plc-2' };
    expect(recordToEvent(line('hello'), lineCtx)).toEqual({ event: { type: 'serial.line', source: 'plc-2', data: { line: 'hello', port: '/dev/ttyX' } } });
    // Control characters escape to six bytes each in JSON.
    const out = recordToEvent({ kind: 'line', bytes: Buffer.alloc(60_000, 0x01) }, lineCtx);
    expect(out?.truncated).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(out?.event))).toBeLessThanOrEqual(DEFAULT_LIMITS.maxEventBytes);
    expect(out?.event.data).toMatchObject({ truncated: true, originalBytes: 60_000 });
  });

  it('flags a cut record: a line event with truncated and bytesSeen, a JSON one as an error event', () => {
    const cut: SplitRecord = { kind: 'truncated', bytes: Buffer.from('{"type":"x", "data": {'), bytesSeen: 10_485_760, complete: false };
    expect(recordToEvent(cut, { ...ctx, format: 'line' })?.event.data).toMatchObject({ truncated: true, originalBytes: 10_485_760, complete: false });
    const asJson = recordToEvent(cut, ctx);
    expect(asJson?.event.type).toBe('meteorzx.intake.error');
    expect(asJson?.event.data).toMatchObject({ truncated: true, originalBytes: 10_485_760, bytes: 10_485_760 });
  });
});
