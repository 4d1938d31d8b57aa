/** Limits on what one event, batch or body may be (DESIGN §2). All configurable. */
export interface Limits {
  /** Largest event, in bytes of its UTF-8 JSON text. */
  readonly maxEventBytes: number;
  /** Deepest JSON nesting inside one event (the event object itself is depth 1). */
  readonly maxDepth: number;
  /** Most events in one batch (HTTP body or MQTT payload). */
  readonly maxBatchEvents: number;
  /** Largest HTTP body, in bytes, after decompression. */
  readonly maxBodyBytes: number;
  /**
   * Bytes a chained event (one with `seq` and `hash`) may have over
   * `maxEventBytes`: its agent checked the event there as received, then
   * added id, source, time, agent, epoch, seq, prev and hash. 0 (the default)
   * where events are first taken in; the gateway allows CHAIN_ALLOWANCE_BYTES.
   */
  readonly chainAllowanceBytes?: number;
}

/** What an agent adds to an event after its size check (≈ 300 B; room for long ids and sources). */
export const CHAIN_ALLOWANCE_BYTES = 1024;

export const DEFAULT_LIMITS: Limits = Object.freeze({
  maxEventBytes: 64 * 1024, // 64 KiB
  maxDepth: 32,
  maxBatchEvents: 1000,
  maxBodyBytes: 8 * 1024 * 1024, // 8 MiB
});

/**
 * Depth of a JSON value, stopping as soon as `limit` is exceeded so hostile
 * nesting costs at most `limit` frames. Returns `limit + 1` when too deep.
 */
export function jsonDepth(value: unknown, limit: number): number {
  if (value === null || typeof value !== 'object') return 0;
  // Iterative walk: recursion depth must not depend on the input. Two flat stacks and `for…in`, not
  // tuples and Object.values: this runs on every event, on both sides (≈150 bytes of garbage each before).
  let max = 0;
  const objects: object[] = [value];
  const depths: number[] = [1];
  while (objects.length > 0) {
    const v = objects.pop() as Record<string, unknown>;
    const d = depths.pop() as number;
    if (d > max) {
      max = d;
      if (max > limit) return limit + 1;
    }
    if (Array.isArray(v)) {
      for (const c of v as unknown[]) {
        if (c !== null && typeof c === 'object') {
          objects.push(c);
          depths.push(d + 1);
        }
      }
    } else {
      for (const key in v) {
        if (!Object.hasOwn(v, key)) continue;
        const c = v[key];
        if (c !== null && typeof c === 'object') {
          objects.push(c);
          depths.push(d + 1);
        }
      }
    }
  }
  return max;
}
