import { createServer, type Server, type Socket } from 'node:net';
import { createTlsListener, type TlsServerOptions } from '../../../common/tls-server.js';
import type { AgentBuffer } from '../../buffer/types.js';
import { AppendAbortedError, durableAppend } from '../durable-append.js';
import { bindError, type BoundAddress } from './bind-error.js';
import { FrameDecoder } from './frame-decoder.js';
import { peerOf, type SyslogSink } from './syslog-sink.js';

export interface TcpListenerOptions {
  host: string;
  port: number;
  buffer: AgentBuffer;
  sink: SyslogSink;
  /** Connections at once; more are refused (closed at once) and counted. */
  maxConnections: number;
  /** A connection with no data for this long is closed, ms (not while it is paused for an append). */
  idleTimeoutMs?: number;
  /** Syslog over TLS (RFC 5425, `tls://`): the same framing inside a TLS session. */
  tls?: TlsServerOptions;
}

/**
 * Syslog over TCP (RFC 6587), newline or octet-counted framing detected per
 * frame. Each chunk read becomes one append, and the socket is paused until
 * that append is durable: when the buffer is full the socket stays paused,
 * the kernel's window fills and the sender blocks — backpressure without
 * memory growth. Plain TCP syslog has no application-level ack, so what a
 * sender wrote but the agent had not yet made durable is lost if the agent
 * dies (RELP would close that gap; see docs/intake-syslog.md).
 */
export class TcpListener {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly work = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private bound: BoundAddress | undefined;

  constructor(private readonly options: TcpListenerOptions) {
    const onConnection = (socket: Socket): void => this.onConnection(socket);
    // A TLS listener hands over a connection once its handshake is done (and, with requestClientCert, verified);
    // one still in its handshake is tracked too, so that close() does not wait for it.
    this.server = options.tls === undefined ? createServer(onConnection) : createTlsListener(options.tls, onConnection, (raw) => this.track(raw));
    this.server.maxConnections = options.maxConnections;
    // Node closes connections past maxConnections itself and reports each one here.
    this.server.on('drop', (data) => options.sink.dropped('connection-refused', 1, { peer: peerOf(data?.remoteAddress, data?.remotePort), limit: options.maxConnections }));
  }

  async start(): Promise<BoundAddress> {
    const { host, port } = this.options;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', (err) => reject(bindError(err, `${this.transport}://${host}:${port}`)));
      this.server.listen(port, host, () => resolve());
    });
    const address = this.server.address();
    this.bound = { protocol: this.transport, host: typeof address === 'object' && address ? address.address : host, port: typeof address === 'object' && address ? address.port : port };
    return this.bound;
  }

  private get transport(): 'tcp' | 'tls' {
    return this.options.tls === undefined ? 'tcp' : 'tls';
  }

  get address(): BoundAddress | undefined {
    return this.bound;
  }

  /** Stops accepting, lets appends in progress finish (one waiting for space gives up), then closes connections. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.abort.abort();
    await Promise.all([...this.work]);
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private onConnection(socket: Socket): void {
    const { sink } = this.options;
    const peer = peerOf(socket.remoteAddress, socket.remotePort);
    const decoder = new FrameDecoder(sink.options.maxMessageBytes);
    this.track(socket);
    const idleMs = this.options.idleTimeoutMs ?? 10 * 60_000;
    // Appends of this connection not yet durable: while there are any, the socket is paused on purpose.
    let pending = 0;
    socket.setTimeout(idleMs);
    socket.on('error', () => undefined);
    const take = (messages: Buffer[], oversize: number) => {
      if (oversize > 0) sink.dropped('oversize', oversize, { peer, limit: sink.options.maxMessageBytes });
      const events = sink.toEvents(messages, { transport: this.transport, peer });
      if (events.length === 0) return;
      // No more reads from this socket until these events are durable. Nor an idle timeout meanwhile: it is
      // we who do not read, and closing would lose what the kernel already accepted from the sender.
      socket.pause();
      if (pending++ === 0) socket.setTimeout(0);
      const done = durableAppend(events, undefined, {
        buffer: this.options.buffer,
        intake: 'syslog',
        meter: sink.options.meter,
        signal: this.abort.signal,
        ...(sink.options.logger ? { logger: sink.options.logger } : {}),
      })
        .then(
          (appended) => sink.options.meter.eventsIn(appended),
          (err: unknown) => {
            if (!(err instanceof AppendAbortedError)) sink.options.logger?.error({ err, peer }, 'syslog tcp append failed');
            socket.destroy();
          },
        )
        .finally(() => {
          this.work.delete(done);
          if (--pending > 0 || socket.destroyed) return;
          socket.setTimeout(idleMs);
          socket.resume();
        });
      this.work.add(done);
    };
    socket.on('data', (chunk: Buffer) => {
      const frames = decoder.push(chunk);
      take(frames.messages, frames.oversize);
      if (frames.framingError === undefined) return;
      // Where the next frame starts is unknown, and an octet-counted stream has no LF to resynchronise on:
      // close, so the sender sees the error and reconnects (the messages before it are being appended).
      sink.framingError({ peer, octets: frames.framingError.octets, limit: sink.options.maxMessageBytes });
      socket.destroy();
    });
    socket.on('end', () => {
      const last = decoder.end();
      if (last !== undefined) take([last], 0);
    });
    socket.on('timeout', () => {
      // Closed by us for being idle: a message sent without a final LF is its last, as when the sender closes.
      const last = decoder.end();
      if (last !== undefined) take([last], 0);
      socket.destroy();
    });
  }
}
