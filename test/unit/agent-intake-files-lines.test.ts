import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../protocols/index.js';
import { INTAKE_ERROR_TYPE, lineToEvent, linesToEvents } from '../../agent/intake/files/line-events.js';
import { completeUtf8Length, LineSplitter, type Line } from '../../agent/intake/files/line-splitter.js';

const origin = { intake: 'files', file: '/var/log/app.log' };

function line(text: string, extra: Partial<Line> = {}): Line {
  const bytes = Buffer.from(text);
  return { bytes, start: 0, end: bytes.length + 1, originalBytes: bytes.length, truncated: false, ...extra };
}

describe('LineSplitter', () => {
  it('cuts lines across chunks with the offset after each newline', () => {
    const s = new LineSplitter(100, 10);
    expect(s.push(Buffer.from('ab\ncd'))).toEqual([{ bytes: Buffer.from('ab'), start: 10, end: 13, originalBytes: 2, truncated: false }]);
    expect(s.hasPartial).toBe(true);
    const lines = s.push(Buffer.from('e\n\nf'));
    expect(lines.map((l) => [l.bytes.toString(), l.start, l.end])).toEqual([
      ['cde', 13, 17],
      ['', 17, 18],
    ]);
    expect(s.flush()).toMatchObject({ start: 18, end: 19, bytes: Buffer.from('f') });
    expect(s.flush()).toBeUndefined();
  });

  it('drops the \\r of a CRLF ending but keeps the offset exact', () => {
    const [l] = new LineSplitter(100, 0).push(Buffer.from('hi\r\n'));
    expect(l).toMatchObject({ bytes: Buffer.from('hi'), end: 4, originalBytes: 2 });
  });

  it('does not count the \\r of a CRLF ending against maxLineBytes', () => {
    const json = '{"type":"door.open","data":{"n":1}}';
    const crlf = new LineSplitter(json.length, 0).push(Buffer.from(`${json}\r\n`));
    expect(crlf).toEqual([{ bytes: Buffer.from(json), start: 0, end: json.length + 2, originalBytes: json.length, truncated: false }]);
    expect(linesToEvents(crlf, { format: 'json', type: 'log.line', limits: DEFAULT_LIMITS }, { intake: 'files', file: '/x' }).events[0]).toMatchObject({ type: 'door.open' });
    // The \r and the \n in different chunks; and one byte more is a cut line, its length without the \r.
    const s = new LineSplitter(2, 0);
    expect(s.push(Buffer.from('hi\r'))).toEqual([]);
    expect(s.push(Buffer.from('\nhey\r\n'))).toEqual([
      { bytes: Buffer.from('hi'), start: 0, end: 4, originalBytes: 2, truncated: false },
      { bytes: Buffer.from('he'), start: 4, end: 9, originalBytes: 3, truncated: true },
    ]);
  });

  it('keeps at most maxLineBytes of a line that never ends, then flags it when it does', () => {
    const s = new LineSplitter(1024, 0);
    const mib = Buffer.alloc(1024 * 1024, 0x61);
    for (let i = 0; i < 10; i++) {
      expect(s.push(mib)).toEqual([]);
      expect(s.pendingBytes).toBeLessThanOrEqual(1024);
    }
    const [l, next] = s.push(Buffer.from('\nok\n'));
    expect(l?.truncated).toBe(true);
    expect(l?.bytes.length).toBe(1024);
    expect(l?.originalBytes).toBe(10 * 1024 * 1024);
    expect(l?.end).toBe(10 * 1024 * 1024 + 1);
    expect(next).toMatchObject({ bytes: Buffer.from('ok'), start: 10 * 1024 * 1024 + 1, truncated: false });
  });

  it('never cuts a UTF-8 character in two', () => {
    const s = new LineSplitter(5, 0);
    const [l] = s.push(Buffer.from('abcdé€\n')); // é is 2 bytes at offsets 4-5: the limit falls inside it
    expect(l?.bytes.toString()).toBe('abcd');
    expect(completeUtf8Length(Buffer.from('€').subarray(0, 2))).toBe(0);
    expect(completeUtf8Length(Buffer.from('a€'))).toBe(4);
  });
});

describe('lineToEvent', () => {
  const json = { format: 'json' as const, type: 'log.line', limits: DEFAULT_LIMITS };
  const text = { format: 'line' as const, type: 'app.log', limits: DEFAULT_LIMITS };

  it('takes a JSON line as the event', () => {
    expect(lineToEvent(line('{"type":"auth.login","actor":"bob"}'), json, origin)).toEqual({ ok: true, event: { type: 'auth.login', actor: 'bob' } });
  });

  it('turns a bad JSON line into an intake error event with the reason and the raw text', () => {
    const r = lineToEvent(line('{"type": oops'), json, origin);
    expect(r.ok).toBe(false);
    expect(r.event.type).toBe(INTAKE_ERROR_TYPE);
    expect(r.event.data).toMatchObject({ intake: 'files', file: origin.file, raw: '{"type": oops' });
    expect(String(r.event.data?.reason)).toMatch(/not JSON/);
  });

  it('turns an invalid event into an intake error naming the field', () => {
    const r = lineToEvent(line('{"type":"x","outcome":"maybe"}'), json, origin);
    expect(r.ok).toBe(false);
    expect(String(r.event.data?.reason)).toMatch(/outcome/);
  });

  it('rejects a cut JSON line (it cannot be parsed) and caps the raw excerpt', () => {
    const r = lineToEvent(line('{"type":"' + 'a'.repeat(5000), { truncated: true, originalBytes: 900_000 }), json, origin);
    expect(r.ok).toBe(false);
    expect(String(r.event.data?.reason)).toMatch(/maxLineBytes/);
    expect(String(r.event.data?.raw).length).toBe(1024);
    expect(r.event.data?.bytes).toBe(900_000);
  });

  it('drops a UTF-8 BOM at the start of the file, and only there', () => {
    // Windows editors and PowerShell 5 (Out-File -Encoding utf8) start a file with EF BB BF.
    const bom = (text: string, start = 0): Line => {
      const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]);
      return { bytes, start, end: start + bytes.length + 1, originalBytes: bytes.length, truncated: false };
    };
    const json = { format: 'json' as const, type: 'log.line', limits: DEFAULT_LIMITS };
    const first = linesToEvents([bom('{"type":"door.open"}')], json, origin);
    expect(first).toEqual({ events: [{ type: 'door.open' }], invalid: 0 });
    expect(linesToEvents([bom('hello')], { ...json, format: 'line' }, origin).events[0]?.data).toMatchObject({ line: 'hello', offset: 0 });
    expect(linesToEvents([bom('')], json, origin)).toEqual({ events: [], invalid: 0 });
    // Further into the file U+FEFF is text (a zero-width no-break space), not a mark to drop.
    expect(linesToEvents([bom('hello', 40)], { ...json, format: 'line' }, origin).events[0]?.data).toMatchObject({ line: '\ufeffhello' });
  });

  it('wraps a text line with its file and offset', () => {
    expect(lineToEvent(line('hello', { start: 42 }), text, origin)).toEqual({
      ok: true,
      event: { type: 'app.log', data: { line: 'hello', file: origin.file, offset: 42 } },
    });
  });

  it('keeps a text line whole exactly when its event fits the limit, and cuts it to fit otherwise', () => {
    // Short lines take the bound (no serialising), long or escape-heavy ones the exact measure.
    const limits = { ...DEFAULT_LIMITS, maxEventBytes: 4096 };
    const budget = 4096 - 512;
    const chars = fc.constantFrom('a', ' ', '"', '\\', '\u0001', '\n', 'é', '中', '😀', '\u2028');
    fc.assert(
      // Escape-heavy lines too: mostly control characters, the 6-bytes-per-byte worst case.
      fc.property(fc.oneof(fc.array(chars, { maxLength: 1500, size: 'max' }), fc.array(fc.constantFrom('\u0001', '\u0001', '\u0001', 'a'), { maxLength: 800, size: 'max' })).map((cs) => cs.join('')), (textLine) => {
        const raw = Buffer.from(textLine);
        const r = lineToEvent({ bytes: raw, start: 0, end: raw.length + 1, truncated: false, originalBytes: raw.length }, { ...text, limits }, origin);
        const whole = { type: text.type, data: { line: textLine, file: origin.file, offset: 0 } };
        const fits = Buffer.byteLength(JSON.stringify(whole)) <= budget;
        expect(Buffer.byteLength(JSON.stringify(r.event))).toBeLessThanOrEqual(budget);
        if (fits) expect(r.event).toEqual(whole);
        else expect(r.event.data).toMatchObject({ truncated: true, originalBytes: raw.length });
      }),
      // Shrinking arrays this long takes minutes: the first counterexample is reported as found.
      { numRuns: 500, endOnFailure: true },
    );
  });

  it('cuts a text line whose escaped JSON would exceed the event limit, and flags it', () => {
    const limits = { ...DEFAULT_LIMITS, maxEventBytes: 4096 };
    // Control characters take 6 bytes each once escaped.
    const r = lineToEvent(line('\u0001'.repeat(4000)), { ...text, limits }, origin);
    expect(r.ok).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(r.event))).toBeLessThanOrEqual(4096);
    expect(r.event.data).toMatchObject({ truncated: true, originalBytes: 4000 });
  });
});
