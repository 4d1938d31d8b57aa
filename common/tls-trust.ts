import { X509Certificate } from 'node:crypto';

/**
 * Trusting a private CA for an https peer (an agent's pull listener): the
 * CA text a user gives (`meteorzx pull --ca`, `"ca"` in POST /v1/pull) is
 * checked before it reaches TLS, and a certificate TLS rejects is named as
 * such rather than as one more network error.
 */

/** Most bytes of CA PEM text accepted: a chain of a few certificates is ~2 KiB each. */
export const MAX_CA_PEM_BYTES = 64 * 1024;

const CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Why `pem` cannot serve as CA certificates, or undefined when every block in it is an X.509 certificate. */
export function caPemProblem(pem: string): string | undefined {
  const bytes = Buffer.byteLength(pem, 'utf8');
  if (bytes > MAX_CA_PEM_BYTES) return `is ${bytes} bytes; at most ${MAX_CA_PEM_BYTES} (PEM CA certificates)`;
  // Refused rather than passed on: a key has no business in a trust store, let alone in a request body or a log.
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) return 'holds a private key; give the CA certificate only';
  const blocks = pem.match(CERTIFICATE) ?? [];
  if (blocks.length === 0) return 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)';
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (err) {
      return `certificate ${i + 1} of ${blocks.length} does not parse: ${(err as Error).message}`;
    }
  }
  return undefined;
}

/** OpenSSL's verdicts that mean: no CA this side trusts signed the peer's certificate. */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
]);

/** Other verdicts on the peer's certificate: trusted or not, it does not fit. */
const REJECTED = new Set(['ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_REVOKED', 'CERT_SIGNATURE_FAILURE']);

/**
 * One line for an error TLS raised on the peer's certificate, or undefined
 * for any other error. `untrusted` says whether giving its CA would help.
 */
export function tlsCertificateError(err: unknown): { untrusted: boolean; text: string } | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth += 1) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== 'string') continue;
    if (UNTRUSTED.has(code)) return { untrusted: true, text: `TLS: the certificate is not signed by a trusted CA (${code}: ${e.message})` };
    if (REJECTED.has(code)) return { untrusted: false, text: `TLS: the certificate was rejected (${code}: ${e.message})` };
  }
  return undefined;
}
