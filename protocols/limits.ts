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
}

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
  // Iterative walk: recursion depth must not depend on the input.
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, d] = stack.pop() as [unknown, number];
    if (v === null || typeof v !== 'object') continue;
    if (d > max) max = d;
    if (max > limit) return limit + 1;
    const children = Array.isArray(v) ? v : Object.values(v as Record<string, unknown>);
    for (const c of children) if (c !== null && typeof c === 'object') stack.push([c, d + 1]);
  }
  return max;
}
