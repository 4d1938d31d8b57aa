import { decodePriority, DEFAULT_PRIORITY, readPriority } from './priority.js';
import { parse3164 } from './rfc3164.js';
import { parse5424 } from './rfc5424.js';
import type { SyslogMessage } from './syslog-message.js';

/**
 * Parses one syslog message (one datagram or one TCP frame, without its
 * framing). `<PRI>` followed by a version number and a space is RFC 5424;
 * anything else — or a 5424 header that breaks the grammar — is read as BSD
 * syslog (RFC 3164), which never fails, so no message is lost to parsing.
 */
export function parseSyslog(raw: Buffer | string, now: Date = new Date()): SyslogMessage {
  let text = typeof raw === 'string' ? raw : raw.toString('utf8');
  // Framing leftovers: a trailing newline (UDP senders often add one) or NUL.
  text = text.replace(/[\r\n\0]+$/, '');
  const pri = readPriority(text);
  const priority = decodePriority(pri?.priority ?? DEFAULT_PRIORITY);
  const from = pri?.rest ?? 0;
  const header = (pri && /^[1-9]\d{0,2} /.test(text.slice(from)) ? parse5424(text, from) : undefined) ?? parse3164(text, from, now);
  const message: SyslogMessage = { ...priority, ...header };
  if (pri === undefined) message.noPriority = true;
  return message;
}
