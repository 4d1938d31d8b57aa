import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { createServer as createTlsServer, type SecureContextOptions, type Server as TlsServer, type TLSSocket } from 'node:tls';

/** A listener's `tls` section as configured (common/config/sections.ts tlsServerFields). */
export interface TlsServerFiles {
  cert: string;
  key: string;
  ca?: string | undefined;
  requestClientCert: boolean;
}

export type TlsServerOptions = SecureContextOptions & { requestCert?: boolean; rejectUnauthorized?: boolean; handshakeTimeout?: number };

/**
 * How long a connection may take to complete its TLS handshake, ms. A real
 * one takes a few round trips; Node's default of 120 s let a client that
 * sent a ClientHello (or nothing) hold a connection slot and some 60 KB of
 * memory for two minutes.
 */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** The options of a TLS listener from its PEM files: with requestClientCert, clients must present a certificate `ca` signed (mutual TLS). */
export async function tlsServerOptions(files: TlsServerFiles): Promise<TlsServerOptions> {
  const [cert, key, ca] = await Promise.all([readFile(files.cert), readFile(files.key), files.ca === undefined ? undefined : readFile(files.ca)]);
  return {
    cert,
    key,
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    ...(ca === undefined ? {} : { ca }),
    ...(files.requestClientCert ? { requestCert: true, rejectUnauthorized: true } : {}),
  };
}

/**
 * A TLS server (tls.createServer) that closes a connection whose handshake
 * failed or timed out. Node reports those as 'tlsClientError' and, unlike
 * https.Server, tls.Server then leaves the socket open: a client that
 * connected and sent nothing held it (and a connection slot) for ever.
 * `onRaw` sees every TCP connection as it is accepted, before its
 * handshake, so that a stop can close those still in one.
 */
export function createTlsListener(options: TlsServerOptions, onSecure: (socket: TLSSocket) => void, onRaw?: (socket: Socket) => void): TlsServer {
  const server = createTlsServer({ handshakeTimeout: HANDSHAKE_TIMEOUT_MS, ...options }, onSecure);
  server.on('tlsClientError', (_err, socket) => socket.destroy());
  if (onRaw !== undefined) server.on('connection', onRaw);
  return server;
}
