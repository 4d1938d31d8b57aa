import type { Logger } from 'pino';
import type { AuditEvent, Limits } from '../../../protocols/index.js';
import type { IntakeMeter } from '../intake-meter.js';
import { parseSyslog } from './parse.js';
import { syslogEvent, type SyslogOrigin } from './syslog-event.js';

/** What the UDP and TCP listeners share: parsing, limits, metrics, rate-limited warnings. */
export class SyslogSink {
  private lastWarn = new Map<string, number>();

  constructor(
    readonly options: {
      limits: Limits;
      maxMessageBytes: number;
      type?: string;
      meter: IntakeMeter;
      logger?: Logger;
      now?: () => Date;
    },
  ) {}

  /** Parses messages into events; counts the ones that became intake error events. */
  toEvents(messages: readonly Buffer[], origin: SyslogOrigin): AuditEvent[] {
    const now = this.options.now?.() ?? new Date();
    const events: AuditEvent[] = [];
    let invalid = 0;
    for (const raw of messages) {
      if (raw.length === 0) continue;
      const { ok, event } = syslogEvent(parseSyslog(raw, now), origin, {
        limits: this.options.limits,
        ...(this.options.type === undefined ? {} : { type: this.options.type }),
      });
      if (!ok) invalid += 1;
      events.push(event);
    }
    if (invalid > 0) this.options.meter.invalid(invalid);
    return events;
  }

  /** Counts a drop and logs it, at most once per 10 s per reason (a flood must not flood the log too). */
  dropped(reason: string, count: number, detail: Record<string, unknown>, message = 'syslog: messages dropped (see meteorzx_agent_intake_dropped_total)'): void {
    this.options.meter.dropped(reason, count);
    const now = Date.now();
    if (now - (this.lastWarn.get(reason) ?? 0) < 10_000) return;
    this.lastWarn.set(reason, now);
    this.options.logger?.warn({ reason, count, ...detail }, message);
  }

  /** A TCP frame announced more octets than maxMessageBytes: counted as a drop, logged, and its connection closed. */
  framingError(detail: { peer: string; octets: number; limit: number }): void {
    this.dropped('framing-error', 1, detail, 'syslog tcp: framing error, octet count over maxMessageBytes; connection closed');
  }
}

/** `ip:port`, with brackets around an IPv6 address. */
export function peerOf(address: string | undefined, port: number | undefined): string {
  const host = address ?? 'unknown';
  return `${host.includes(':') ? `[${host}]` : host}:${port ?? 0}`;
}
