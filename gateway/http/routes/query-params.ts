import { isRfc3339, rfc3339Ms } from '../../../protocols/index.js';
import { GatewayErrors } from '../../errors.js';

export type QueryString = Record<string, string | string[] | undefined>;

/**
 * Refuses a parameter the route does not take: ignored, a typo or an
 * unsupported filter (`from=`, `tag=`) answered every event as if it
 * filtered them.
 */
export function onlyParams(q: QueryString, known: readonly string[]): void {
  for (const name of Object.keys(q)) {
    if (!known.includes(name)) throw GatewayErrors.METEORZX_BAD_REQUEST(`unknown parameter "${name.slice(0, 40)}" (known: ${known.join(', ')})`);
  }
}

/** The single value of a parameter; a repeated parameter is a mistake, not a list. */
export function one(q: QueryString, name: string): string | undefined {
  const v = q[name];
  if (Array.isArray(v)) throw GatewayErrors.METEORZX_BAD_REQUEST(`${name}: given more than once`);
  return v === '' ? undefined : v;
}

/** A time bound: RFC 3339 or milliseconds since the epoch. Output: ms. */
export function timeParam(q: QueryString, name: string): number | undefined {
  const v = one(q, name);
  if (v === undefined) return undefined;
  if (/^\d{1,15}$/.test(v)) return Number(v);
  if (isRfc3339(v)) return rfc3339Ms(v);
  throw GatewayErrors.METEORZX_BAD_REQUEST(`${name}: expected an RFC 3339 time or ms since the epoch, got "${v.slice(0, 60)}"`);
}

export function intParam(q: QueryString, name: string, dflt: number, max: number): number {
  const v = one(q, name);
  if (v === undefined) return dflt;
  const n = /^\d{1,9}$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw GatewayErrors.METEORZX_BAD_REQUEST(`${name}: expected an integer from 1 to ${max}, got "${v.slice(0, 40)}"`);
  }
  return n;
}
