import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import { createSecureContext, createServer as createTlsServer, type SecureContextOptions, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { CommonErrors } from './errors.js';
import { PEM_TOO_LARGE, readPem, readPemSync } from './read-at-most.js';

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
  const read = async (file: string): Promise<Buffer> => {
    try {
      return await readPem(file);
    } catch (err) {
      if (err instanceof RangeError) throw CommonErrors.METEORZX_CONFIG_INVALID(`${file}: ${err.message}`, { userError: true });
      throw err;
    }
  };
  const [cert, key, ca] = await Promise.all([read(files.cert), read(files.key), files.ca === undefined ? undefined : read(files.ca)]);
  return {
    cert,
    key,
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    ...(ca === undefined ? {} : { ca }),
    ...(files.requestClientCert ? { requestCert: true, rejectUnauthorized: true } : {}),
  };
}

/** The TLS files of a client section (push.http, push.mqtt, pullFrom[i]): a private CA, and a client certificate with its key. */
export interface TlsClientFiles {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
}

/** A client section's PEM files, read: what an undici Agent's or MQTT.js's `connect` takes. */
export interface TlsClientPem {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/**
 * The PEM files a client section names, read (each at most MAX_PEM_BYTES): push.http, push.mqtt,
 * pullFrom[i], alerts.webhookTls. checkTlsFiles has checked them at start.
 */
export function readClientTls(files: TlsClientFiles): TlsClientPem {
  return {
    ...(files.ca === undefined ? {} : { ca: readPemSync(files.ca) }),
    ...(files.cert === undefined ? {} : { cert: readPemSync(files.cert) }),
    ...(files.key === undefined ? {} : { key: readPemSync(files.key) }),
  };
}

/**
 * The TLS sections of a config, each with its dotted path (`intake.http.tls`, `push.http`); absent ones
 * undefined. A listener's section (TlsServerFiles) always has cert and key; a client's may have any.
 */
export type TlsSections = readonly (readonly [string, TlsServerFiles | TlsClientFiles | undefined])[];

/**
 * Reads the PEM files of every listed TLS section and checks what a
 * listener or client would only find out later, or never say: each file is
 * there and readable; a certificate and its key are PEM and belong
 * together; `ca` holds a CA certificate (Node silently ignores one that is
 * not PEM, and then refuses every peer). Throws the first problem, naming
 * the key and the file. An expired certificate is only a warning (`warn`),
 * as for nginx or Mosquitto: refusing to start would stop every other
 * intake and the buffer with it, and a peer that checks will refuse the
 * handshake anyway. Resolves to a digest of all the files' contents, so a
 * reload can tell a renewed certificate.
 */
export async function checkTlsFiles(sections: TlsSections, options: { now?: Date; warn?: (message: string) => void } = {}): Promise<string> {
  const now = options.now ?? new Date();
  const digest = createHash('sha256');
  for (const [at, files] of sections) {
    if (files === undefined) continue;
    const fail = (key: string, file: string, why: string) =>
      CommonErrors.METEORZX_CONFIG_INVALID(`${at}.${key}: ${file}: ${why}`, { userError: true });
    const read = async (key: 'cert' | 'key' | 'ca', file: string | undefined): Promise<Buffer | undefined> => {
      if (file === undefined) return undefined;
      try {
        return await readPem(file);
      } catch (err) {
        if (err instanceof RangeError) throw fail(key, file, PEM_TOO_LARGE);
        const code = (err as NodeJS.ErrnoException).code;
        throw fail(key, file, code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : `cannot read it (${code ?? String(err)})`);
      }
    };
    const cert = await read('cert', files.cert);
    const key = await read('key', files.key);
    const ca = await read('ca', files.ca);
    if (cert !== undefined && key !== undefined && files.cert !== undefined && files.key !== undefined) {
      const pair = certificateWithKey(cert, key);
      if (pair === 'no-certificate') throw fail('cert', files.cert, 'holds no PEM certificate');
      if (pair === 'no-key') throw fail('key', files.key, 'holds no PEM private key (or one that needs a passphrase)');
      if (pair === 'not-its-key') throw fail('key', files.key, `is not the key of ${at}.cert (${files.cert})`);
      const leaf = pair;
      if (new Date(leaf.validTo) < now) options.warn?.(`${at}.cert: ${files.cert}: expired on ${new Date(leaf.validTo).toISOString()}; peers that check it will refuse the handshake`);
    }
    if (files.ca !== undefined && ca !== undefined) {
      const cas = pemCertificates(ca);
      if (cas === undefined || cas.length === 0) throw fail('ca', files.ca, 'holds no PEM certificate');
      if (!cas.some((c) => c.ca || c.checkIssued(c))) throw fail('ca', files.ca, 'holds no CA certificate (basicConstraints CA:TRUE, or self-signed)');
    }
    try {
      createSecureContext({ ...(cert === undefined ? {} : { cert }), ...(key === undefined ? {} : { key }), ...(ca === undefined ? {} : { ca }) });
    } catch (err) {
      throw fail(files.cert === undefined ? 'ca' : 'cert', files.cert ?? files.ca ?? '', (err as Error).message);
    }
    digest.update(`${at}\0`).update(cert ?? '').update('\0').update(key ?? '').update('\0').update(ca ?? '').update('\0');
  }
  return digest.digest('hex');
}

/**
 * A PEM certificate and its private key, checked to belong together: the certificate, or what is wrong
 * (the config check above and the CLI's --cert/--key word it each their own way).
 */
export function certificateWithKey(cert: Buffer, key: Buffer): X509Certificate | 'no-certificate' | 'no-key' | 'not-its-key' {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    return 'no-certificate';
  }
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(key));
  } catch {
    return 'no-key';
  }
  return matches ? leaf : 'not-its-key';
}

/** Every certificate of a PEM bundle; undefined when one of its blocks does not parse. */
export function pemCertificates(pem: Buffer): X509Certificate[] | undefined {
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  try {
    return blocks.map((block) => new X509Certificate(block));
  } catch {
    return undefined;
  }
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
