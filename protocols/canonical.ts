import canonicalize from 'canonicalize';
import { hash } from 'node:crypto';
import { defineErrors } from './errors.js';

export const CanonicalErrors = defineErrors({
  METEORZX_NOT_CANONICALIZABLE: {
    description: 'A value cannot be written as RFC 8785 canonical JSON (NaN, Infinity, a lone surrogate, a cycle).',
  },
});

/** RFC 8785 (JCS) canonical JSON of a JSON value. Throws a typed error for values JSON cannot hold. */
export function canonicalJson(value: unknown): string {
  let out: string | undefined;
  try {
    out = canonicalize(value);
  } catch (err) {
    throw CanonicalErrors.METEORZX_NOT_CANONICALIZABLE(`cannot canonicalize: ${(err as Error).message}`, { cause: err });
  }
  if (out === undefined) throw CanonicalErrors.METEORZX_NOT_CANONICALIZABLE('cannot canonicalize: not a JSON value');
  return out;
}

// One-shot crypto.hash (Node ≥ 20.12): about twice as fast as a Hash object for the small inputs hashed per event.
export function sha256Hex(text: string | Uint8Array): string {
  return hash('sha256', text, 'hex');
}
