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

/**
 * What a server answers a connection that sends nothing, read until it closes. A connection opened just
 * after a flood stopped may be refused at the cap unanswered (the server has not yet seen the flood's
 * connections close): such an empty answer is tried again, until `deadlineMs`.
 */
export async function silentAnswer(port: number, deadlineMs = 20_000): Promise<string> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    if (answer !== '' || Date.now() > deadline) return answer;
    await new Promise((r) => setTimeout(r, 100));
  }
}
