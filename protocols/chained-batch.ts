import { isUtf8 } from 'node:buffer';
import { decodeArrayItem, jsonArrayRanges, type BatchItem, type DecodeOptions } from './batch.js';
import type { Limits } from './limits.js';

/**
 * Bytes a chained event takes at the least as an item of a JSON array:
 * `{"hash":"<64 hex>","seq":1,"agent":"a","epoch":"e"},` is 107. A payload
 * of N chained events is at least N × this long, so an MQTT payload read
 * past `limits.maxBatchEvents` (readChainedBatch) is read to at most its
 * bytes / this many items: the work stays proportional to its bytes, as for
 * any payload the packet cap lets in.
 */
export const MIN_CHAINED_ITEM_BYTES = 100;

const HASH = /^[0-9a-f]{64}$/;

/** Whether `value` is an event of `agent`'s buffer: its id as `agent`, a seq, an epoch and a hash. */
export function isChainedBy(value: unknown, agent: string): boolean {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const e = value as { agent?: unknown; seq?: unknown; epoch?: unknown; hash?: unknown };
  return (
    e.agent === agent &&
    typeof e.seq === 'number' &&
    Number.isSafeInteger(e.seq) &&
    e.seq >= 1 &&
    typeof e.epoch === 'string' &&
    e.epoch !== '' &&
    typeof e.hash === 'string' &&
    HASH.test(e.hash)
  );
}

/** An agent's batch over `limits.maxBatchEvents`, read in slices of at most that many items. */
export interface ChainedBatch {
  /** Items in the payload. */
  count: number;
  /** Each slice is parsed only when reached, so at most one slice of parsed events is held at a time. */
  slices: Iterable<BatchItem[]>;
}

/**
 * An MQTT payload on `<prefix>/<agent>/events` with more items than
 * `limits.maxBatchEvents`, read anyway when it is an agent's batch: a JSON
 * array whose first item is a chained event of `agent`. MQTT 3.1.1 cannot
 * refuse one publish, so the gateway acknowledges whatever it does with it;
 * an agent whose `push.batch.maxEvents` was above the gateway's limit counted
 * such a batch delivered while the gateway kept one rejection record and no
 * event — a silent loss, and through a Mosquitto bridge the agent cannot be
 * told in any way. Refusing by closing the connection would make a bridge
 * (or any QoS 1 client) resend the same publish for ever. Past the limit
 * only the agent's chained events are taken (any other item is rejected
 * alone), and no more than the payload's bytes could hold of them (see
 * MIN_CHAINED_ITEM_BYTES). Undefined when the payload is not such a batch.
 */
export function readChainedBatch(payload: Uint8Array, limits: Limits, agent: string, options: DecodeOptions = {}): ChainedBatch | undefined {
  const maxItems = Math.floor(payload.byteLength / MIN_CHAINED_ITEM_BYTES);
  if (maxItems <= limits.maxBatchEvents || !isUtf8(payload)) return undefined;
  const ranges = jsonArrayRanges(payload, maxItems);
  if (ranges === undefined || ranges.length < 2) return undefined;
  const first = decodeArrayItem(payload, ranges[0] as number, ranges[1] as number, 0, limits, false);
  if (first.error !== undefined || !isChainedBy(first.value, agent)) return undefined;
  return { count: ranges.length / 2, slices: slices(payload, ranges, limits, agent, options.keepText === true) };
}

function* slices(payload: Uint8Array, ranges: readonly number[], limits: Limits, agent: string, keepText: boolean): Generator<BatchItem[]> {
  const count = ranges.length / 2;
  const per = limits.maxBatchEvents;
  for (let from = 0; from < count; from += per) {
    const slice: BatchItem[] = [];
    for (let i = from; i < Math.min(count, from + per); i += 1) {
      const item = decodeArrayItem(payload, ranges[2 * i] as number, ranges[2 * i + 1] as number, i, limits, keepText);
      if (item.error !== undefined || isChainedBy(item.value, agent)) slice.push(item);
      else slice.push({ index: i, bytes: item.bytes, error: notChained(per, agent) });
    }
    yield slice;
  }
}

function notChained(max: number, agent: string): string {
  return `batch has more than ${max} events (maxBatchEvents); past that only chained events of agent "${agent}" are taken, and this is not one`;
}
