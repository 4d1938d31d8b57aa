import type { Alert } from './alert.js';

export interface VolumeWatchOptions {
  /** ms of one window (`alerts.volumeDrop.window`). */
  windowMs: number;
  /** A source alerts when its window count falls under this fraction of the window before (`alerts.volumeDrop.below`). */
  below: number;
  raise: (alert: Alert) => void;
  /** Sources tracked at most (default 100 000); more are not counted until one is forgotten. */
  maxSources?: number;
  /** Called once per window in which sources went untracked, with how many events of theirs were not counted. */
  onUntracked?: (events: number) => void;
  clock?: () => number;
}

/** A tracked source: its accepted events two windows back, in the window before and in this one. */
interface Counts {
  earlier: number;
  previous: number;
  current: number;
}

/**
 * The `volume-drop` alert (DESIGN §1; docs/config.md `alerts.volumeDrop`):
 * per source, the events accepted in each window are compared when it ends
 * with the two windows before, and a source that fell silent after a window
 * with events, or under `below ×` the lower of those two counts, raises one
 * alert for that window. The lower of two: a surge is no baseline — an
 * agent's backlog delivered at once after an outage (or a file read from
 * its start) made one window many times the usual, and the usual volume
 * after it read as a drop, for every agent that had caught up. A source is tracked while it has events in the current or
 * the previous window: one that went silent is forgotten right after its
 * alert, so memory follows the active sources, and never exceeds
 * `maxSources` (a tracked source is never evicted, so the cap cannot cause
 * a false alert; a source over it is simply not watched until room frees).
 *
 * `count()` is on the commit path: one Map lookup and an add, per source
 * per commit (reportCommit sums a commit's events per source first).
 */
export class VolumeWatch {
  private readonly sources = new Map<string, Counts>();
  private readonly maxSources: number;
  private readonly clock: () => number;
  private windowEnd: number;
  private untracked = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: VolumeWatchOptions) {
    this.maxSources = options.maxSources ?? 100_000;
    this.clock = options.clock ?? Date.now;
    this.windowEnd = this.clock() + options.windowMs;
  }

  /** Sources tracked now. */
  get size(): number {
    return this.sources.size;
  }

  /** Adds `n` accepted events of `source` to the current window. */
  count(source: string, n: number): void {
    const counts = this.sources.get(source);
    if (counts !== undefined) counts.current += n;
    else if (this.sources.size < this.maxSources) this.sources.set(source, { earlier: 0, previous: 0, current: n });
    else this.untracked += n;
  }

  /** Checks the window's end every second at most (the window is ≥ 1 s); the timer does not hold the process. */
  start(): void {
    this.timer ??= setInterval(() => this.check(), Math.min(this.options.windowMs, 1000)).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Ends the window if its time has come. After a stall longer than a window
   * (a suspended host) the next window starts now: the time missed is not
   * read as windows in which every source fell silent.
   */
  check(): void {
    const now = this.clock();
    if (now < this.windowEnd) return;
    this.endWindow(now);
    this.windowEnd += this.options.windowMs;
    if (this.windowEnd <= now) this.windowEnd = now + this.options.windowMs;
  }

  private endWindow(now: number): void {
    const { below, windowMs } = this.options;
    let at: string | undefined;
    for (const [source, counts] of this.sources) {
      const { earlier, previous, current } = counts;
      if (previous > 0 && (current === 0 || current < below * Math.min(previous, earlier))) {
        at ??= new Date(now).toISOString();
        this.options.raise({
          kind: 'volume-drop',
          source,
          windowMs,
          earlier,
          previous,
          current,
          detail: `source ${source}: ${current} event(s) in the last ${windowMs} ms, down from ${previous} in the window before and ${earlier} in the one before that`,
          at,
        });
      }
      // Silent for a whole window: forgotten; it is tracked again when it sends.
      if (current === 0) this.sources.delete(source);
      else {
        counts.earlier = previous;
        counts.previous = current;
        counts.current = 0;
      }
    }
    if (this.untracked > 0) {
      this.options.onUntracked?.(this.untracked);
      this.untracked = 0;
    }
  }
}
