import { describe, expect, it } from 'vitest';
import { FrameDecoder } from '../../agent/intake/syslog/frame-decoder.js';
import { parseSyslog } from '../../agent/intake/syslog/parse.js';
import { decodePriority, readPriority } from '../../agent/intake/syslog/priority.js';

const NOW = new Date(2026, 10, 26, 13, 0, 0); // 26 Nov 2026, local time

describe('syslog priority', () => {
  it('decodes facility and severity', () => {
    expect(decodePriority(165)).toEqual({ priority: 165, facility: 'local4', severity: 'notice' });
    expect(decodePriority(34)).toEqual({ priority: 34, facility: 'auth', severity: 'crit' });
  });

  it('refuses values outside 0-191 and leading zeros', () => {
    expect(readPriority('<192>x')).toBeUndefined();
    expect(readPriority('<013>x')).toBeUndefined();
    expect(readPriority('<0>x')).toEqual({ priority: 0, rest: 3 });
  });
});

describe('RFC 5424', () => {
  it('reads a leap-second timestamp, not the whole header as text', () => {
    // Before: the header failed to parse and the BSD fallback kept it all as the message.
    expect(parseSyslog('<14>1 2016-12-31T23:59:60Z host app - - - leap')).toMatchObject({ format: 'rfc5424', time: '2016-12-31T23:59:59.999Z', host: 'host', app: 'app', message: 'leap' });
  });

  it('parses the RFC example with structured data, escapes and a BOM', () => {
    const m = parseSyslog(
      '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][x@1 a="b\\"c\\]d\\\\"] \uFEFFAn application event',
    );
    expect(m).toEqual({
      priority: 165,
      facility: 'local4',
      severity: 'notice',
      format: 'rfc5424',
      time: '2003-10-11T22:14:15.003Z',
      host: 'mymachine.example.com',
      app: 'evntslog',
      msgid: 'ID47',
      structuredData: { 'exampleSDID@32473': { iut: '3', eventSource: 'Application', eventID: '1011' }, 'x@1': { a: 'b"c]d\\' } },
      message: 'An application event',
    });
  });

  it('normalises the time to UTC and omits nil fields', () => {
    const m = parseSyslog('<13>1 2026-01-02T03:04:05.123456+01:00 host app 99 - - hi there\n');
    expect(m).toMatchObject({ time: '2026-01-02T02:04:05.123Z', host: 'host', app: 'app', procid: '99', message: 'hi there' });
    expect(m.msgid).toBeUndefined();
    expect(m.structuredData).toBeUndefined();
  });

  it('takes the all-nil message', () => {
    expect(parseSyslog('<14>1 - - - - - -')).toEqual({ priority: 14, facility: 'user', severity: 'info', format: 'rfc5424', message: '' });
  });

  it('collects a repeated param into an array', () => {
    expect(parseSyslog('<14>1 - h a - - [m@1 k="1" k="2"] x').structuredData).toEqual({ 'm@1': { k: ['1', '2'] } });
  });

  it('keeps an SD-ID or a param named __proto__ as data, not as a prototype', () => {
    const sd = parseSyslog('<13>1 - - - - - [__proto__ a="b"][x __proto__="1" y="2"][__proto__ c="d"] sd proto').structuredData;
    expect(JSON.stringify(sd)).toBe('{"__proto__":{"a":"b","c":"d"},"x":{"__proto__":"1","y":"2"}}');
    expect(Object.getPrototypeOf(sd)).toBe(Object.prototype);
  });

  it('falls back to a lenient reading when the header breaks the grammar, keeping the text', () => {
    const m = parseSyslog('<14>1 yesterday host app - - - hello');
    expect(m.format).toBe('rfc3164');
    expect(m.message).toBe('1 yesterday host app - - - hello');
    const unterminated = parseSyslog('<14>1 - h a - - [m@1 k="open');
    expect(unterminated.format).toBe('rfc3164');
  });
});

describe('RFC 3164', () => {
  it('parses the RFC example', () => {
    const m = parseSyslog("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8", NOW);
    expect(m).toEqual({
      priority: 34,
      facility: 'auth',
      severity: 'crit',
      format: 'rfc3164',
      time: new Date(2026, 9, 11, 22, 14, 15).toISOString(),
      host: 'mymachine',
      app: 'su',
      message: "'su root' failed for lonvick on /dev/pts/8",
    });
  });

  it('reads a pid, a space-padded day, and no host', () => {
    const m = parseSyslog('<13>Nov  6 02:03:04 app[123]: hello', NOW);
    expect(m).toMatchObject({ app: 'app', procid: '123', message: 'hello', time: new Date(2026, 10, 6, 2, 3, 4).toISOString() });
    expect(m.host).toBeUndefined();
  });

  it('ends a tag after the host at a space as well as at a colon (RFC 3164 §4.1.3, rsyslog)', () => {
    // rsyslog's default forwarding template (RSYSLOG_TraditionalForwardFormat) writes the TAG of a message it
    // received as RFC 5424 without a colon: "<36>Dec  7 18:27:58 vm rsapp five424 default".
    expect(parseSyslog('<36>Dec  7 18:27:58 vm rsapp five424 default', NOW)).toMatchObject({ host: 'vm', app: 'rsapp', message: 'five424 default' });
    expect(parseSyslog('<36>2026-12-07T18:27:58.005666+00:00 vm rsapp[42] hello', NOW)).toMatchObject({ host: 'vm', app: 'rsapp', procid: '42', message: 'hello' });
    // Without a host the word is not a tag: nothing says the header goes on.
    expect(parseSyslog('<13>free text, no header', NOW)).toMatchObject({ message: 'free text, no header' });
    expect(parseSyslog('<13>free text, no header', NOW).app).toBeUndefined();
  });

  it('puts a December message read in early January in the previous year', () => {
    const m = parseSyslog('<13>Dec 31 23:59:59 h a: x', new Date(2027, 0, 1, 0, 0, 5));
    expect(m.time).toBe(new Date(2026, 11, 31, 23, 59, 59).toISOString());
  });

  it('puts a BSD "Feb 29" in the latest leap year not ahead of now, instead of reading no time', () => {
    // 2026 has no Feb 29: the sender wrote it in 2024.
    expect(parseSyslog('<13>Feb 29 10:00:00 h a: x', new Date(2026, 11, 7)).time).toBe(new Date(2024, 1, 29, 10).toISOString());
    // In a leap year, that year's, once it is at most 7 days ahead; further ahead, the leap year before.
    expect(parseSyslog('<13>Feb 29 10:00:00 h a: x', new Date(2028, 2, 1)).time).toBe(new Date(2028, 1, 29, 10).toISOString());
    expect(parseSyslog('<13>Feb 29 10:00:00 h a: x', new Date(2028, 1, 25)).time).toBe(new Date(2028, 1, 29, 10).toISOString());
    expect(parseSyslog('<13>Feb 29 10:00:00 h a: x', new Date(2028, 0, 10)).time).toBe(new Date(2024, 1, 29, 10).toISOString());
    // With a year that has no Feb 29 it is still no date.
    expect(parseSyslog('<13>Feb 29 2026 10:00:00 h a: x', new Date(2026, 11, 7)).time).toBeUndefined();
  });

  it('accepts an RFC 3339 time in place of the BSD one', () => {
    expect(parseSyslog('<13>2026-11-26T13:15:16.5Z gw sshd[7]: ok', NOW)).toMatchObject({ time: '2026-11-26T13:15:16.500Z', host: 'gw', app: 'sshd', procid: '7' });
  });

  it('keeps a message with no PRI, taken as user.notice', () => {
    expect(parseSyslog('just text', NOW)).toMatchObject({ priority: 13, facility: 'user', severity: 'notice', noPriority: true, message: 'just text' });
  });

  it('refuses an impossible date and keeps the text', () => {
    const m = parseSyslog('<13>Feb 31 10:00:00 h a: x', NOW);
    expect(m.time).toBeUndefined();
    expect(m.message).toBe('Feb 31 10:00:00 h a: x');
  });
});

describe('FrameDecoder', () => {
  const text = (f: { messages: Buffer[] }) => f.messages.map((m) => m.toString());

  it('splits newline frames across chunks', () => {
    const d = new FrameDecoder(100);
    expect(text(d.push(Buffer.from('<13>a\r\n<13>b')))).toEqual(['<13>a']);
    expect(text(d.push(Buffer.from('c\n')))).toEqual(['<13>bc']);
  });

  it('reads octet-counted frames, detected per frame and mixed with newline frames', () => {
    const d = new FrameDecoder(100);
    const msg = '<13>1 - - - - - - a\nb'; // an octet-counted message may contain LF
    expect(text(d.push(Buffer.from(`${Buffer.byteLength(msg)} ${msg}<13>plain\n5 <13>x`)))).toEqual([msg, '<13>plain', '<13>x']);
  });

  it('waits for the rest of an octet-counted frame split anywhere, the count included', () => {
    const d = new FrameDecoder(100);
    expect(text(d.push(Buffer.from('1')))).toEqual([]);
    expect(text(d.push(Buffer.from('1 <13>hello')))).toEqual([]);
    expect(text(d.push(Buffer.from(' w')))).toEqual(['<13>hello w']);
  });

  it('skips an oversize newline frame without holding it, and goes on', () => {
    const d = new FrameDecoder(10);
    let r = d.push(Buffer.alloc(1000, 0x61));
    expect(r).toEqual({ messages: [], oversize: 1 });
    r = d.push(Buffer.from('aaa\nok\n3 abc'));
    expect(text(r)).toEqual(['ok', 'abc']);
  });

  it('takes a CRLF-framed message of exactly the limit, as an LF-framed one, even with the CR and LF in separate chunks', () => {
    const d = new FrameDecoder(10);
    expect(text(d.push(Buffer.from('0123456789\r\nabcdefghij\n')))).toEqual(['0123456789', 'abcdefghij']);
    expect(text(d.push(Buffer.from('ABCDEFGHIJ\r')))).toEqual([]);
    expect(d.push(Buffer.from('\nklmnopqrstu\r\nok\r\n'))).toEqual({ messages: [Buffer.from('ABCDEFGHIJ'), Buffer.from('ok')], oversize: 1 });
  });

  it('reports an octet count over the limit as a framing error and takes nothing after it', () => {
    const d = new FrameDecoder(10);
    const r = d.push(Buffer.from(`3 abc999999999 ${'x'.repeat(20)}\nok\n3 def`));
    expect(r).toEqual({ messages: [Buffer.from('abc')], oversize: 0, framingError: { octets: 999999999 } });
    expect(d.push(Buffer.from('ok\n3 ghi'))).toEqual({ messages: [], oversize: 0 });
    expect(d.end()).toBeUndefined();
  });

  it('gives the unterminated last message at the end of the stream', () => {
    const d = new FrameDecoder(100);
    d.push(Buffer.from('<13>last'));
    expect(d.end()?.toString()).toBe('<13>last');
  });
});
