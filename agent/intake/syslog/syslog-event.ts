import { formatIssues, validateEvent, type AuditEvent, type Limits } from '../../../protocols/index.js';
import { intakeErrorEvent } from '../intake-error.js';
import type { SyslogMessage } from './syslog-message.js';

export interface SyslogOrigin {
  transport: 'udp' | 'tcp' | 'tls';
  /** The sender's address, `ip:port` (`[ip6]:port`). */
  peer: string;
}

/**
 * The envelope for one syslog message (docs/intake-syslog.md): `type`
 * `syslog.<facility>.<severity>` unless configured, `time` from the header,
 * everything else under `data`. `source` is left to the buffer (the agent
 * id): the sender's host name is not a verified identity, so it is data.
 */
export function syslogEvent(msg: SyslogMessage, origin: SyslogOrigin, options: { type?: string; limits: Limits }): { ok: boolean; event: AuditEvent } {
  const data: Record<string, unknown> = {
    facility: msg.facility,
    severity: msg.severity,
    priority: msg.priority,
    format: msg.format,
    transport: origin.transport,
    peer: origin.peer,
  };
  if (msg.host !== undefined) data.host = msg.host;
  if (msg.app !== undefined) data.app = msg.app;
  if (msg.procid !== undefined) data.procid = msg.procid;
  if (msg.msgid !== undefined) data.msgid = msg.msgid;
  if (msg.structuredData !== undefined) data.structuredData = msg.structuredData;
  if (msg.noPriority) data.noPriority = true;
  data.message = msg.message;
  const event: AuditEvent = { type: options.type ?? `syslog.${msg.facility}.${msg.severity}`, data };
  if (msg.time !== undefined) event.time = msg.time;
  const checked = validateEvent(event, options.limits);
  if (checked.ok) return { ok: true, event };
  // E.g. a message near maxMessageBytes whose escaping pushes the event over maxEventBytes.
  return {
    ok: false,
    event: intakeErrorEvent({ intake: 'syslog', transport: origin.transport, peer: origin.peer, reason: formatIssues(checked.errors).slice(0, 1024) }, msg.message),
  };
}
