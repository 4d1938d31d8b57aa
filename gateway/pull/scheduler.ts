import { createHash } from 'node:crypto';

export interface Schedulable {
  readonly url: string;
  run(): Promise<unknown>;
}

export interface ScheduleEntry {
  connector: Schedulable;
  /** ms between runs. */
  every: number;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * Fires each connector on its own interval. The first run of each comes at
 * a stable offset inside its interval, hashed from the URL, so a gateway
 * with a hundred agents on `every: 1h` does not hit them all at once after
 * every restart (and the same agent keeps its slot across restarts). The
 * next run is timed from the end of the previous one, and a connector that
 * is still running when its tick comes is not started twice: its own lock
 * coalesces the request.
 */
export class PullScheduler {
  private readonly handles = new Map<string, unknown>();
  private stopped = false;

  constructor(
    private readonly entries: readonly ScheduleEntry[],
    private readonly timers: Timers = realTimers,
  ) {}

  start(): void {
    for (const entry of this.entries) this.arm(entry, staggerOffset(entry.connector.url, entry.every));
  }

  close(): void {
    this.stopped = true;
    for (const handle of this.handles.values()) this.timers.clearTimeout(handle);
    this.handles.clear();
  }

  private arm(entry: ScheduleEntry, delay: number): void {
    if (this.stopped) return;
    const handle = this.timers.setTimeout(() => {
      entry.connector
        .run()
        .catch(() => undefined)
        .finally(() => this.arm(entry, entry.every));
    }, delay);
    this.handles.set(entry.connector.url, handle);
  }
}

/** A stable offset in [0, every) for `url`: the first 4 bytes of its SHA-256 as a fraction. */
export function staggerOffset(url: string, every: number): number {
  const n = createHash('sha256').update(url).digest().readUInt32BE(0);
  return Math.floor((n / 0x1_0000_0000) * every);
}
