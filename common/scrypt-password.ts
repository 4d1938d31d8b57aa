import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

/**
 * Checking an MQTT login's password, shared by the gateway's `auth.mqtt`
 * and the edge agent's `intake.mqtt.users` (the agent may not import gateway
 * code). A stored password is plain text or a scrypt hash in the format of
 * docs/mqtt.md, "Password hashes":
 *
 *   scrypt$N=16384,r=8,p=1$<salt, base64>$<key, base64>
 *
 * The key length is the decoded key's length. Pure node:crypto, so the
 * agent bundle pays nothing for it.
 */
export const SCRYPT_PREFIX = 'scrypt$';

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

export interface ParsedScryptHash {
  params: ScryptParams;
  salt: Buffer;
  key: Buffer;
}

function scryptAsync(password: Buffer, salt: Buffer, keylen: number, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // maxmem must cover 128·N·r bytes, or node refuses the larger parameter sets.
    const maxmem = 128 * params.N * params.r * 2 + 1024 * 1024;
    scrypt(password, salt, keylen, { N: params.N, r: params.r, p: params.p, maxmem }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

// OWASP's minimum for scrypt; one check costs ~16 MiB and ~30 ms, paid once per CONNECT.
const DEFAULT_PARAMS: ScryptParams = { N: 16384, r: 8, p: 1 };
const KEY_BYTES = 32;
const SALT_BYTES = 16;

/** Hashes a password into the stored format above (for operators writing configs, and tests). */
export async function hashPassword(password: string, params: ScryptParams = DEFAULT_PARAMS): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptAsync(Buffer.from(password, 'utf8'), salt, KEY_BYTES, params);
  return `${SCRYPT_PREFIX}N=${params.N},r=${params.r},p=${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Parses a stored scrypt hash; undefined when the text is not one (then it is a plain password). */
export function parseScryptHash(stored: string): ParsedScryptHash | undefined {
  if (!stored.startsWith(SCRYPT_PREFIX)) return undefined;
  const parts = stored.split('$');
  if (parts.length !== 4) return undefined;
  const [, paramText, saltText, keyText] = parts as [string, string, string, string];
  const params: Partial<ScryptParams> = {};
  for (const pair of paramText.split(',')) {
    const [k, v] = pair.split('=');
    const n = Number(v);
    if ((k === 'N' || k === 'r' || k === 'p') && Number.isSafeInteger(n) && n > 0) params[k] = n;
    else return undefined;
  }
  if (params.N === undefined || params.r === undefined || params.p === undefined) return undefined;
  // scrypt's own rule: N is a power of two above 1. Checked here so `config check` can name it.
  if (params.N < 2 || (params.N & (params.N - 1)) !== 0) return undefined;
  const salt = Buffer.from(saltText, 'base64');
  const key = Buffer.from(keyText, 'base64');
  if (salt.length === 0 || key.length < 16) return undefined;
  return { params: params as ScryptParams, salt, key };
}

/** True when `stored` starts like a hash but cannot be parsed: a config mistake worth naming at start. */
export function isMalformedScryptHash(stored: string): boolean {
  return stored.startsWith(SCRYPT_PREFIX) && parseScryptHash(stored) === undefined;
}

const sha256 = (b: Buffer | string): Buffer => createHash('sha256').update(b).digest();

/**
 * Compares in constant time. Plain passwords are compared as SHA-256
 * digests, so the time taken does not depend on their lengths either.
 */
export async function verifyScryptPassword(stored: string, given: Buffer | string): Promise<boolean> {
  const givenBuf = typeof given === 'string' ? Buffer.from(given, 'utf8') : given;
  const parsed = parseScryptHash(stored);
  if (parsed === undefined) return timingSafeEqual(sha256(stored), sha256(givenBuf));
  const key = await scryptAsync(givenBuf, parsed.salt, parsed.key.length, parsed.params);
  return timingSafeEqual(key, parsed.key);
}
