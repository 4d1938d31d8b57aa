/**
 * The PRI part of a syslog message: facility × 8 + severity (RFC 5424
 * §6.2.1; RFC 3164 uses the same numbers). Names are the ones rsyslog and
 * `logger -p` use, so `type: syslog.auth.warning` reads like a selector.
 */
export const FACILITIES = [
  'kern', 'user', 'mail', 'daemon', 'auth', 'syslog', 'lpr', 'news',
  'uucp', 'cron', 'authpriv', 'ftp', 'ntp', 'security', 'console', 'solaris-cron',
  'local0', 'local1', 'local2', 'local3', 'local4', 'local5', 'local6', 'local7',
] as const;

export const SEVERITIES = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'] as const;

export type Facility = (typeof FACILITIES)[number];
export type Severity = (typeof SEVERITIES)[number];

/** RFC 3164 §4.3.3: a message without a valid PRI is taken as user.notice. */
export const DEFAULT_PRIORITY = 13;

export interface Priority {
  priority: number;
  facility: Facility;
  severity: Severity;
}

export function decodePriority(priority: number): Priority {
  return {
    priority,
    facility: FACILITIES[priority >> 3] as Facility,
    severity: SEVERITIES[priority & 7] as Severity,
  };
}

/**
 * Reads `<PRI>` at the start of `text`: 1-3 digits, 0-191, no leading zero
 * except "0" itself. Returns the priority and where the rest starts, or
 * undefined when there is no valid PRI.
 */
export function readPriority(text: string): { priority: number; rest: number } | undefined {
  const m = /^<(0|[1-9]\d{0,2})>/.exec(text);
  if (!m) return undefined;
  const priority = Number(m[1]);
  if (priority > 191) return undefined;
  return { priority, rest: m[0].length };
}
