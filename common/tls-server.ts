import { readFile } from 'node:fs/promises';
import type { SecureContextOptions } from 'node:tls';

/** A listener's `tls` section as configured (common/config/sections.ts tlsServerFields). */
export interface TlsServerFiles {
  cert: string;
  key: string;
  ca?: string | undefined;
  requestClientCert: boolean;
}

export type TlsServerOptions = SecureContextOptions & { requestCert?: boolean; rejectUnauthorized?: boolean };

/** The options of a TLS listener from its PEM files: with requestClientCert, clients must present a certificate `ca` signed (mutual TLS). */
export async function tlsServerOptions(files: TlsServerFiles): Promise<TlsServerOptions> {
  const [cert, key, ca] = await Promise.all([readFile(files.cert), readFile(files.key), files.ca === undefined ? undefined : readFile(files.ca)]);
  return {
    cert,
    key,
    ...(ca === undefined ? {} : { ca }),
    ...(files.requestClientCert ? { requestCert: true, rejectUnauthorized: true } : {}),
  };
}
