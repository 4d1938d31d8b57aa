import { readPemSync } from '../common/read-at-most.js';
import { Agent, request, setGlobalDispatcher, type Dispatcher } from 'undici';
import { CommonErrors } from '../common/errors.js';
import { certificateWithKey, pemCertificates } from '../common/tls-server.js';
import { tlsCertificateError } from '../common/tls-trust.js';
import { MeteorError } from '../protocols/errors.js';
import type { TlsOptions } from './commands/tls-options.js';

/**
 * The HTTP client of `meteorzx query|verify|status|send`: one place that
 * turns a bad URL, a refused connection or an error answer into one line.
 */

export interface ApiResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface ApiRequest {
  method?: 'GET' | 'POST';
  /** Path under the base URL, with its query: `/v1/events?limit=10`. */
  path: string;
  token?: string | undefined;
  body?: Buffer | string;
  contentType?: string;
  /** Per-request timeout, ms (default 60 s: verify of a large store takes a while). */
  timeoutMs?: number;
  /** Connections to use instead of undici's global pool: one that trusts a private CA (`meteorzx pull --ca`). */
  dispatcher?: Dispatcher;
  /** How to trust the server when no trusted CA signed its certificate (default: NODE_EXTRA_CA_CERTS). */
  untrustedHint?: string;
}

/** A base URL (scheme, host, port, optional prefix) from what the user typed; `/v1/...` paths are stripped. */
export function baseUrl(input: string): URL {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw CommonErrors.METEORZX_USAGE(`not a URL: "${input}" (expected e.g. http://127.0.0.1:7400)`, { userError: true });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw CommonErrors.METEORZX_USAGE(`not an http(s) URL: "${input}"`, { userError: true });
  }
  url.pathname = url.pathname.replace(/\/v1\/.*$/, '').replace(/\/+$/, '');
  url.search = '';
  return url;
}

const NETWORK_WHY: Record<string, string> = {
  ECONNREFUSED: 'connection refused (is it running, and is this the right port?)',
  ENOTFOUND: 'unknown host',
  EAI_AGAIN: 'host name lookup failed',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
  UND_ERR_BODY_TIMEOUT: 'answer stalled',
  UND_ERR_SOCKET: 'connection closed unexpectedly',
  // https:// to a plain HTTP listener: OpenSSL's own text is a source path and a line break.
  ERR_SSL_WRONG_VERSION_NUMBER: 'the server does not speak TLS (is it http://?)',
};

function networkError(err: unknown, target: string, untrustedHint = 'pass --ca FILE, or set NODE_EXTRA_CA_CERTS, to a PEM file of the CA that signs it'): MeteorError {
  const tls = tlsCertificateError(err);
  if (tls !== undefined) {
    return CommonErrors.METEORZX_GATEWAY_UNREACHABLE(`cannot reach ${target}: ${tls.text}${tls.untrusted ? ` (${untrustedHint})` : ''}`, { userError: true, cause: err });
  }
  const why = networkWhy(err);
  // A TLS listener closes on the plain HTTP it cannot read: say what the likely mistake is.
  const hint = target.startsWith('http:') && (why === NETWORK_WHY.UND_ERR_SOCKET || why === NETWORK_WHY.ECONNRESET) ? ' (if it speaks TLS, use https://)' : '';
  return CommonErrors.METEORZX_GATEWAY_UNREACHABLE(`cannot reach ${target}: ${why}${hint}`, { userError: true, cause: err });
}

/** What a network error from undici or node:net means, in words; its own message for any other. */
export function networkWhy(err: unknown): string {
  const code = (err as { code?: string }).code ?? ((err as { cause?: { code?: string } }).cause?.code);
  return (code !== undefined && NETWORK_WHY[code]) || (err as Error).message;
}

export async function call(base: URL, req: ApiRequest): Promise<ApiResponse> {
  const target = new URL(base.toString());
  const [pathname, search] = req.path.split('?');
  target.pathname = `${base.pathname.replace(/\/+$/, '')}${pathname ?? ''}`;
  target.search = search ?? '';
  const headers: Record<string, string> = {};
  if (req.token) headers.authorization = `Bearer ${req.token}`;
  if (req.contentType) headers['content-type'] = req.contentType;
  try {
    const timeout = req.timeoutMs ?? 60_000;
    const res = await request(target, {
      method: req.method ?? 'GET',
      headers,
      ...(req.body === undefined ? {} : { body: req.body }),
      headersTimeout: timeout,
      bodyTimeout: timeout,
      ...(req.dispatcher === undefined ? {} : { dispatcher: req.dispatcher }),
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body };
  } catch (err) {
    throw networkError(err, target.origin, req.untrustedHint);
  }
}

/**
 * The `{error, code}` of an error answer as a one-line user error. A 401
 * ends with `tokenHint`: where the token for that server comes from (an
 * agent's pull listener wants its pull.token, not a gateway token).
 */
export function answerError(res: ApiResponse, what: string, tokenHint = 'pass --token or set METEORZX_TOKEN'): MeteorError {
  const text = res.body.subarray(0, 64 * 1024).toString('utf8').trim();
  let detail = text.slice(0, 300);
  let code = 'METEORZX_HTTP_ERROR';
  try {
    // Parsed whole: cut first, a long error (a gateway relaying an agent's TLS error) showed as raw JSON.
    const parsed = JSON.parse(text) as { error?: unknown; code?: unknown };
    if (typeof parsed.error === 'string') detail = parsed.error.slice(0, 1000);
    if (typeof parsed.code === 'string') code = parsed.code;
  } catch {
    // Not our JSON error shape (a proxy's page): show its start as it is.
  }
  const hint = res.status === 401 ? ` (${tokenHint})` : '';
  return new MeteorError(code, `${what}: HTTP ${res.status}: ${detail || 'no detail'}${hint}`, { userError: true, status: res.status });
}

/**
 * Makes every later call() trust --ca and present --cert/--key (the command's TLS options): one set
 * of connections for the process, which runs one command. Without any, undici's defaults stay.
 */
export function useTlsOptions(options: TlsOptions): void {
  const files = readTlsFiles(options);
  if (files.ca === undefined && files.cert === undefined) return;
  setGlobalDispatcher(new Agent({ connect: files }));
}

/** The PEM files of --ca, --cert and --key, read: one usage line for a missing one or half a pair. */
export function readTlsFiles(options: TlsOptions): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw CommonErrors.METEORZX_USAGE(`${options.cert === undefined ? '--key' : '--cert'} needs ${options.cert === undefined ? '--cert' : '--key'}: give the client certificate and its key together`, { userError: true });
  }
  const read = (flag: string, file: string | undefined): Buffer | undefined => {
    if (file === undefined) return undefined;
    try {
      return readPemSync(file);
    } catch (err) {
      throw CommonErrors.METEORZX_USAGE(`${flag} ${file}: cannot read it: ${(err as Error).message}`, { userError: true, cause: err });
    }
  };
  const ca = read('--ca', options.ca);
  const cert = read('--cert', options.cert);
  const key = read('--key', options.key);
  // Node takes a --ca without a certificate in silence (the server was then "not signed by a trusted CA", with
  // the hint to pass --ca), and a key of another certificate surfaced as OpenSSL's "key values mismatch".
  const usage = (message: string) => CommonErrors.METEORZX_USAGE(message, { userError: true });
  if (ca !== undefined && (pemCertificates(ca)?.length ?? 0) === 0) throw usage(`--ca ${options.ca ?? ''}: holds no PEM certificate`);
  if (cert !== undefined && key !== undefined) {
    const pair = certificateWithKey(cert, key);
    if (pair === 'not-its-key') throw usage(`--key ${options.key ?? ''}: is not the key of --cert ${options.cert ?? ''}`);
    if (typeof pair === 'string') throw usage(`--cert ${options.cert ?? ''} and --key ${options.key ?? ''}: not a PEM certificate and its unencrypted PEM key`);
  }
  return { ...(ca === undefined ? {} : { ca }), ...(cert === undefined || key === undefined ? {} : { cert, key }) };
}

/** The token from --token, else METEORZX_TOKEN. */
export function tokenFrom(option: string | undefined): string | undefined {
  return option ?? (process.env.METEORZX_TOKEN || undefined);
}
