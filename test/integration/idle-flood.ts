import { connect, type Socket } from 'node:net';

/**
 * TCP connections that never send a byte (slowloris style), each opened again
 * whenever the server closes it, until `stop`: the flood the listeners'
 * connection caps and headers timeouts are tested against.
 */
export class IdleFlood {
  /** The flood's connections open now. */
  readonly sockets = new Set<Socket>();
  private on = false;

  /** Opens `n` connections to `port` on loopback, each reopened when closed. */
  open(port: number, n: number): void {
    this.on = true;
    for (let i = 0; i < n; i += 1) this.idle(port);
  }

  /** Stops reopening and closes every connection. */
  stop(): void {
    this.on = false;
    for (const s of this.sockets) s.destroy();
  }

  private idle(port: number): void {
    const socket = connect(port, '127.0.0.1');
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.sockets.delete(socket);
      if (this.on) setTimeout(() => this.idle(port), 5);
    });
  }
}
