import { monotonicFactory } from 'ulidx';
import { canonicalJson, sha256Hex } from './canonical.js';

const ulid = monotonicFactory();

/** A new ULID: time-ordered and unique; monotonic within one process. */
export function newId(now: number = Date.now()): string {
  // ulidx treats a seed time of 0 as absent and then fails; 1 ms after the epoch is as good.
  return ulid(Math.max(1, now));
}

/**
 * The id of an event that arrived without one (a device's MQTT publish):
 * the hash of its source and canonical payload, so a device's retry of the
 * same payload dedups too (DESIGN §2). The `d:` prefix says it was derived.
 */
export function deterministicId(source: string, payload: unknown): string {
  return `d:${sha256Hex(`${source}\n${canonicalJson(payload)}`)}`;
}
