import type { Facility, Severity } from './priority.js';

/** SD-ID → params (a repeated param name gives an array). */
export type StructuredData = Record<string, Record<string, string | string[]>>;

/** What a header parser reads after the PRI. */
export interface SyslogHeader {
  format: 'rfc5424' | 'rfc3164';
  /** The header's time as RFC 3339 UTC; absent when the message has none (the buffer stamps receipt time). */
  time?: string;
  host?: string;
  app?: string;
  procid?: string;
  msgid?: string;
  structuredData?: StructuredData;
  message: string;
}

/** One parsed syslog message. */
export interface SyslogMessage extends SyslogHeader {
  priority: number;
  facility: Facility;
  severity: Severity;
  /** Set when the message had no valid PRI (RFC 3164 §4.3.3: taken as user.notice). */
  noPriority?: true;
}
