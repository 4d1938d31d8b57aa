import { hash } from 'node:crypto';

/**
 * SHA-256 hex, the same digest as protocols' `sha256Hex`, through Node's
 * one-shot `crypto.hash` (Node ≥ 20.12): about twice as fast for the small
 * inputs the ledger hashes twice per event, because no Hash object is built.
 */
export function sha256(text: string): string {
  return hash('sha256', text, 'hex');
}
