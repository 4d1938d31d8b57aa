import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { isMeteorError, type AuditEvent } from '../../../protocols/index.js';
import type { AgentBuffer } from '../../buffer/types.js';
import { appendFitting } from '../append-fitting.js';
import { refusedRecord } from '../intake-error.js';
import { bindError, type BoundAddress } from './bind-error.js';
import { peerOf, type SyslogSink } from './syslog-sink.js';

export interface UdpListenerOptions {
  host: string;
  port: number;
  buffer: AgentBuffer;
  sink: SyslogSink;
  /** Events parsed but not yet durable; past it datagrams are dropped (UDP cannot be slowed down). */
  maxPendingEvents?: number;
  /** Events per append. */
  maxBatchEvents?: number;
  /** Kernel receive buffer, bytes (absorbs bursts while a commit is in progress). */
  receiveBufferBytes?: number;
}

/**
 * Syslog over UDP (RFC 5426): one datagram, one message. UDP has no way to
 * tell a sender to slow down, so, like rsyslog, this listener drops (and
 * counts, by reason) what it cannot take: oversize datagrams, datagrams
 * arriving while the buffer is full, and datagrams beyond a bounded number
 * of events waiting for their group commit. Datagrams arriving together go
 * to the buffer in one append.
 */
export class UdpListener {
  private socket: Socket | undefined;
  private batch: AuditEvent[] = [];
  private pending = 0;
  private bufferFull = false;
  private flushScheduled = false;
  private readonly inFlight = new Set<Promise<void>>();
  private bound: BoundAddress | undefined;

  constructor(private readonly options: UdpListenerOptions) {}

  async start(): Promise<BoundAddress> {
    const { host, port } = this.options;
    const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', recvBufferSize: this.options.receiveBufferBytes ?? 4 * 1024 * 1024 });
    this.socket = socket;
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err) => reject(bindError(err, `udp://${host}:${port}`)));
      socket.bind(port, host, () => resolve());
    });
    socket.on('error', (err) => this.options.sink.options.logger?.error({ err }, 'syslog udp socket error'));
    socket.on('message', (msg, rinfo) => this.onMessage(msg, peerOf(rinfo.address, rinfo.port)));
    const address = socket.address();
    this.bound = { protocol: 'udp', host: address.address, port: address.port };
    return this.bound;
  }

  /** Stops receiving and waits for the appends in progress (their datagrams were already received). */
  async close(): Promise<void> {
    const socket = this.socket;
    this.socket = undefined;
    if (socket !== undefined) await new Promise<void>((resolve) => socket.close(() => resolve()));
    this.flush();
    await Promise.all([...this.inFlight]);
  }

  private onMessage(msg: Buffer, peer: string): void {
    const sink = this.options.sink;
    // A trailing LF or CRLF (logger and many senders end a datagram with one) is framing, not counted, as on TCP.
    const lf = msg.length > 0 && msg[msg.length - 1] === 0x0a;
    const framing = lf ? (msg.length > 1 && msg[msg.length - 2] === 0x0d ? 2 : 1) : 0;
    if (msg.length - framing > sink.options.maxMessageBytes) {
      sink.dropped('oversize', 1, { peer, bytes: msg.length, limit: sink.options.maxMessageBytes });
      return;
    }
    if (this.bufferFull) {
      sink.dropped('buffer-full', 1, { peer });
      return;
    }
    if (this.pending >= (this.options.maxPendingEvents ?? 10_000)) {
      sink.dropped('overload', 1, { peer, pending: this.pending });
      return;
    }
    const events = sink.toEvents([msg], { transport: 'udp', peer });
    this.batch.push(...events);
    this.pending += events.length;
    if (this.batch.length >= (this.options.maxBatchEvents ?? 500)) this.flush();
    else if (!this.flushScheduled) {
      // Datagrams already queued in the socket are read before this runs, so they share the append.
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.batch.length === 0) return;
    const events = this.batch;
    this.batch = [];
    const done = this.append(events).finally(() => {
      this.pending -= events.length;
      this.inFlight.delete(done);
    });
    this.inFlight.add(done);
  }

  private async append(events: AuditEvent[]): Promise<void> {
    const { buffer, sink } = this.options;
    try {
      const tooLarge = await appendFitting(
        events,
        (batch) => sink.options.meter.timeAppend(batch.length, () => buffer.append(batch)),
        (event, error) => refusedRecord('syslog', event, error),
      );
      if (tooLarge.length > 0) {
        sink.options.meter.invalid(tooLarge.length);
        sink.options.logger?.warn({ refused: tooLarge }, 'syslog messages the buffer cannot store: buffered as intake errors');
      }
      sink.options.meter.eventsIn(events.length);
    } catch (err) {
      const code = isMeteorError(err) ? err.code : 'append-failed';
      if (code === 'METEORZX_BUFFER_FULL' || code === 'METEORZX_BUFFER_REJECTED') {
        sink.dropped('buffer-full', events.length, {});
        this.waitForSpace();
      } else {
        sink.dropped('append-failed', events.length, { err });
      }
    }
  }

  /** Drops everything until the buffer has room; reported as the intake's blocked state. */
  private waitForSpace(): void {
    if (this.bufferFull) return;
    this.bufferFull = true;
    this.options.sink.options.meter.blocked(true);
    void this.options.buffer.waitForSpace().finally(() => {
      this.bufferFull = false;
      this.options.sink.options.meter.blocked(false);
    });
  }

  get address(): BoundAddress | undefined {
    return this.bound;
  }
}
