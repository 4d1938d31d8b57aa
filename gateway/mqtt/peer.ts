import type { Client } from 'aedes';

interface SocketLike {
  remoteAddress?: string;
  remotePort?: number;
}

/** `clientId@ip:port` for logs and custody records; WebSocket clients take the address of their upgrade request. */
export function clientPeer(client: Client): string {
  const conn = client.conn as unknown as SocketLike;
  const sock: SocketLike = conn.remoteAddress !== undefined ? conn : ((client.req?.socket as SocketLike | undefined) ?? {});
  const addr = sock.remoteAddress === undefined ? 'unknown' : `${sock.remoteAddress}:${sock.remotePort ?? 0}`;
  return client.id ? `${client.id}@${addr}` : addr;
}
