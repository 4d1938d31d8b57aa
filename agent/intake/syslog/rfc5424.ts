import { rfc3339Ms } from '../../../protocols/index.js';
import type { StructuredData, SyslogHeader } from './syslog-message.js';

/**
 * RFC 5424 after the PRI: `VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP
 * PROCID SP MSGID SP STRUCTURED-DATA [SP MSG]`. `-` is the nil value.
 * Returns undefined when the text does not follow the grammar, so the caller
 * can fall back to the lenient BSD reading instead of losing the message.
 */
export function parse5424(text: string, from: number): (SyslogHeader & { format: 'rfc5424' }) | undefined {
  const header = /^([1-9]\d{0,2}) (\S+) (\S{1,255}) (\S{1,48}) (\S{1,128}) (\S{1,32}) /.exec(text.slice(from));
  if (!header) return undefined;
  const [whole, , timestamp, host, app, procid, msgid] = header as unknown as [string, string, string, string, string, string, string];
  let time: string | undefined;
  if (timestamp !== '-') {
    const ms = rfc3339Ms(timestamp);
    // RFC 5424 §6.2.3 requires a zone ("Z" or ±hh:mm); without one the instant is unknown.
    if (Number.isNaN(ms) || !/(Z|[+-]\d{2}:\d{2})$/i.test(timestamp) || !/^\d{4}-\d{2}-\d{2}T/i.test(timestamp)) return undefined;
    time = new Date(ms).toISOString();
  }
  const sd = parseStructuredData(text, from + whole.length);
  if (sd === undefined) return undefined;
  let message = sd.rest < text.length ? text.slice(sd.rest + (text[sd.rest] === ' ' ? 1 : 0)) : '';
  // A BOM marks the message as UTF-8 (§6.4); it is not part of the text.
  if (message.charCodeAt(0) === 0xfeff) message = message.slice(1);
  const out: SyslogHeader & { format: 'rfc5424' } = { format: 'rfc5424', message };
  if (time !== undefined) out.time = time;
  if (host !== '-') out.host = host;
  if (app !== '-') out.app = app;
  if (procid !== '-') out.procid = procid;
  if (msgid !== '-') out.msgid = msgid;
  if (sd.data !== undefined) out.structuredData = sd.data;
  return out;
}

/**
 * STRUCTURED-DATA = "-" / 1*SD-ELEMENT; SD-ELEMENT = "[" SD-ID *(SP
 * PARAM-NAME="PARAM-VALUE") "]", where `\"`, `\\` and `\]` are escapes in
 * values. A repeated param name collects its values in an array.
 */
export function parseStructuredData(text: string, at: number): { data: StructuredData | undefined; rest: number } | undefined {
  if (text[at] === '-' && (at + 1 === text.length || text[at + 1] === ' ')) return { data: undefined, rest: at + 1 };
  if (text[at] !== '[') return undefined;
  // Maps, made objects at the end with Object.fromEntries (which defines keys): assigning `obj[name]` with a
  // sender's name `__proto__` would set the object's prototype instead, and the element would vanish.
  const data = new Map<string, Map<string, string | string[]>>();
  let i = at;
  while (text[i] === '[') {
    const id = /^[^\s=\]"]{1,32}/.exec(text.slice(i + 1, i + 34));
    if (!id) return undefined;
    const params = new Map<string, string | string[]>();
    i += 1 + id[0].length;
    while (text[i] === ' ') {
      const name = /^[^\s=\]"]{1,32}/.exec(text.slice(i + 1, i + 34));
      if (!name || text[i + 1 + name[0].length] !== '=' || text[i + 2 + name[0].length] !== '"') return undefined;
      i += 3 + name[0].length;
      let value = '';
      for (;;) {
        const c = text[i];
        if (c === undefined) return undefined;
        if (c === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\' || text[i + 1] === ']')) {
          value += text[i + 1];
          i += 2;
          continue;
        }
        i += 1;
        if (c === '"') break;
        value += c;
      }
      const prev = params.get(name[0]);
      params.set(name[0], prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value]);
    }
    if (text[i] !== ']') return undefined;
    i += 1;
    // §6.3.2: an SD-ID appears once; a repeat is merged rather than dropped.
    data.set(id[0], new Map([...(data.get(id[0]) ?? []), ...params]));
  }
  const out: StructuredData = Object.fromEntries([...data].map(([id, params]) => [id, Object.fromEntries(params)]));
  return { data: out, rest: i };
}
