import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bufferLines, linesBuffer } from '../../../protocols/index.js';

describe('lines to one Buffer and back', () => {
  it('linesBuffer writes what joining the lines as a string would', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'binary' })), fc.constantFrom(['', '\n', ''], ['[', ',', ']']), (lines, [open, sep, close]) => {
        expect(linesBuffer(lines, open, sep, close).equals(Buffer.from(open + lines.join(sep) + close))).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it('linesBuffer is exact on both of its ways: ASCII with a few wide characters (one pass), mostly wide ones (measured)', () => {
    const mostlyAscii = fc.array(
      fc.tuple(fc.string({ unit: fc.constantFrom('a', 'b', '"', '{', '0'), minLength: 40, maxLength: 80 }), fc.constantFrom('', 'é', '😀', '\u2028')).map(([a, w]) => a.slice(0, 7) + w + a.slice(7) + String(a.length)),
      { maxLength: 50 },
    );
    const wide = fc.array(fc.string({ unit: fc.constantFrom('é', '😀', '中', 'a'), maxLength: 30 }), { minLength: 1, maxLength: 20 });
    for (const gen of [mostlyAscii, wide]) {
      fc.assert(
        fc.property(gen, (lines) => {
          expect(linesBuffer(lines).equals(Buffer.from(lines.join('\n')))).toBe(true);
        }),
        { numRuns: 500 },
      );
    }
  });

  it('bufferLines decodes as toString + split would, invalid UTF-8 and lone bytes around newlines included', () => {
    const bytes = fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a));
    const text = fc.array(fc.string({ unit: 'binary' })).map((ls) => Buffer.from(ls.join('\n')));
    const withNewlines = fc.array(fc.constantFrom(0x0a, 0xc3, 0xa9, 0xe2, 0x82, 0xf0, 0x9f, 0x41, 0xff, 0x80), { maxLength: 60 }).map((a) => Buffer.from(a));
    for (const gen of [bytes, text, withNewlines]) {
      fc.assert(
        fc.property(gen, (buf) => {
          expect(bufferLines(buf)).toEqual(buf.toString('utf8').split('\n'));
        }),
        { numRuns: 1000 },
      );
    }
  });

  it('round-trips lines without newlines, the block codecs case', () => {
    const lines = ['{"a":"é😀"}', '', '{"b":1}'];
    expect(bufferLines(linesBuffer(lines))).toEqual(lines);
    expect(bufferLines(Buffer.alloc(0))).toEqual(['']);
  });
});
