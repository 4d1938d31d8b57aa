import type { Logger } from 'pino';
import type { TlsServerOptions } from '../../../common/tls-server.js';
import type { Limits } from '../../../protocols/index.js';
import type { AgentBuffer } from '../../buffer/types.js';
import { createIntakeMeter, type IntakeMeter } from '../intake-meter.js';
import type { Intake } from '../types.js';
import type { BoundAddress } from './bind-error.js';
import { SyslogSink } from './syslog-sink.js';
import { TcpListener } from './tcp-listener.js';
import { UdpListener } from './udp-listener.js';

export interface SyslogIntakeOptions {
  /** One or more `udp://`, `tcp://` or `tls://` addresses. */
  listen: readonly { protocol: 'udp' | 'tcp' | 'tls'; host: string; port: number }[];
  /** The certificate of the `tls://` listeners (common/tls-server.ts). */
  tls?: TlsServerOptions;
  buffer: AgentBuffer;
  limits: Limits;
  /** Largest message (UDP datagram, TCP frame), bytes; longer ones are dropped and counted. */
  maxMessageBytes: number;
  /** TCP connections at once, per listener. */
  maxConnections: number;
  /** Event type instead of syslog.<facility>.<severity>. */
  type?: string;
  meter?: IntakeMeter;
  logger?: Logger;
  /** Clock for RFC 3164 timestamps, which have no year. */
  now?: () => Date;
}

/**
 * The syslog intake (issue 6): RFC 5424 and RFC 3164 messages over UDP and
 * TCP, parsed into the envelope (docs/intake-syslog.md). One listener per
 * configured address; all share parsing, limits and metrics.
 */
export class SyslogIntake implements Intake {
  readonly name = 'syslog';
  private readonly listeners: (UdpListener | TcpListener)[] = [];
  private closed: Promise<void> | undefined;

  constructor(private readonly options: SyslogIntakeOptions) {
    const sink = new SyslogSink({
      limits: options.limits,
      maxMessageBytes: options.maxMessageBytes,
      meter: options.meter ?? createIntakeMeter(undefined, this.name),
      ...(options.type === undefined ? {} : { type: options.type }),
      ...(options.logger === undefined ? {} : { logger: options.logger }),
      ...(options.now === undefined ? {} : { now: options.now }),
    });
    for (const address of options.listen) {
      const common = { host: address.host, port: address.port, buffer: options.buffer, sink };
      if (address.protocol === 'udp') this.listeners.push(new UdpListener(common));
      else {
        const tls = address.protocol === 'tls' ? options.tls : undefined;
        if (address.protocol === 'tls' && tls === undefined) throw new Error('a tls:// syslog listener needs its certificate (tls)');
        this.listeners.push(new TcpListener({ ...common, maxConnections: options.maxConnections, ...(tls === undefined ? {} : { tls }) }));
      }
    }
  }

  async start(): Promise<void> {
    try {
      for (const l of this.listeners) await l.start();
    } catch (err) {
      await this.close();
      throw err;
    }
    this.options.logger?.info({ listen: this.addresses().map(format) }, 'syslog listening');
  }

  /** The bound addresses (real ports when configured with port 0). */
  addresses(): BoundAddress[] {
    return this.listeners.flatMap((l) => (l.address === undefined ? [] : [l.address]));
  }

  describe(): Record<string, unknown> {
    return { intake: this.name, listen: this.addresses().map(format) };
  }

  close(): Promise<void> {
    this.closed ??= Promise.all(this.listeners.map((l) => l.close().catch(() => undefined))).then(() => undefined);
    return this.closed;
  }
}

function format(a: BoundAddress): string {
  return `${a.protocol}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}
