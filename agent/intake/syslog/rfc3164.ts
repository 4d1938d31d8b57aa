import type { SyslogHeader } from './syslog-message.js';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

// "Nov 26 13:15:16", "Nov  6 13:15:16", with an optional year ("Nov 26 2026 13:15:16", Cisco) or fraction.
const BSD_TIME = /^([A-Z][a-z]{2}) {1,2}(\d{1,2}) (?:(\d{4}) )?(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))? /;
// rsyslog's RSYSLOG_ForwardFormat and others put an RFC 3339 time where the BSD one goes.
const ISO_TIME = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})) /i;
// TAG: "app:", "app[123]:" (RFC 3164 §5.3 — in practice longer than 32 characters and not only alphanumerics).
const TAG = /^([^\s[\]:]{1,64})(?:\[([^\]\s]{1,128})\])?:(?: |$)/;
// After a host the next word is the TAG even without its colon (RFC 3164 §4.1.3: any non-alphanumeric
// character ends it; rsyslog ends it at a colon or a space): rsyslog forwards a message it received as
// RFC 5424 as "host app msg".
const BARE_TAG = /^([^\s[\]:]{1,64})(?:\[([^\]\s]{1,128})\])?(?: |$)/;

/**
 * The BSD syslog format (RFC 3164), read leniently as receivers do: `TIMESTAMP
 * HOSTNAME TAG: MSG`, where any part may be missing. Never fails: what cannot
 * be recognised stays in the message. A timestamp without a year or zone is
 * taken in the agent's local zone, in the current year — or the previous one
 * when that would put it more than a week in the future (a December message
 * read in January).
 */
export function parse3164(text: string, from: number, now: Date): SyslogHeader & { format: 'rfc3164' } {
  const out: SyslogHeader & { format: 'rfc3164' } = { format: 'rfc3164', message: '' };
  let rest = text.slice(from);
  let hadTime = false;
  const bsd = BSD_TIME.exec(rest);
  if (bsd) {
    const time = bsdTime(bsd, now);
    if (time !== undefined) {
      out.time = time;
      hadTime = true;
      rest = rest.slice(bsd[0].length);
    }
  } else {
    const iso = ISO_TIME.exec(rest);
    if (iso && !Number.isNaN(Date.parse(iso[1] as string))) {
      out.time = new Date(Date.parse(iso[1] as string)).toISOString();
      hadTime = true;
      rest = rest.slice(iso[0].length);
    }
  }
  if (hadTime && !TAG.test(rest)) {
    // The word after the time is the host unless it already looks like the tag (local /dev/log messages have no host).
    const host = /^([^\s:[\]]{1,255}) /.exec(rest);
    if (host) {
      out.host = host[1] as string;
      rest = rest.slice(host[0].length);
    }
  }
  const tag = TAG.exec(rest) ?? (out.host === undefined ? null : BARE_TAG.exec(rest));
  if (tag) {
    out.app = tag[1] as string;
    if (tag[2] !== undefined) out.procid = tag[2];
    rest = rest.slice(tag[0].length);
  }
  out.message = rest;
  return out;
}

function bsdTime(m: RegExpExecArray, now: Date): string | undefined {
  const month = MONTHS.indexOf(m[1] as string);
  const day = Number(m[2]);
  if (month < 0 || day < 1 || day > 31) return undefined;
  const [h, mi, s] = [Number(m[4]), Number(m[5]), Number(m[6])];
  const ms = m[7] === undefined ? 0 : Math.floor(Number(`0.${m[7]}`) * 1000);
  const build = (year: number) => new Date(year, month, day, h, mi, s, ms);
  let date = build(m[3] === undefined ? now.getFullYear() : Number(m[3]));
  const ahead = (d: Date) => d.getTime() > now.getTime() + 7 * 86_400_000;
  if (m[3] === undefined && ahead(date)) date = build(now.getFullYear() - 1);
  // "Feb 29" without a year was written in a leap year: the latest one not ahead of now (else it rolled into March).
  if (m[3] === undefined && month === 1 && day === 29) {
    let year = now.getFullYear();
    while (build(year).getDate() !== 29 || ahead(build(year))) year -= 1;
    date = build(year);
  }
  // new Date() rolls "Feb 31" over into March: such a date was not a date.
  if (Number.isNaN(date.getTime()) || date.getDate() !== day || h > 23 || mi > 59 || s > 60) return undefined;
  return date.toISOString();
}
