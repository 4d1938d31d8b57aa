import type { Logger } from 'pino';
import { Gauge } from 'prom-client';
import { perRegistry } from '../../../common/per-registry.js';
import type { AgentMetrics } from '../../metrics.js';

/** Between warnings while paths keep waiting for a handle, ms. */
const WARN_EVERY_MS = 60_000;

interface HandleGauges {
  open: Gauge;
  limit: Gauge;
  waiting: Gauge;
}

const handleGauges = perRegistry(
  (registers): HandleGauges => ({
    open: new Gauge({ name: 'meteorzx_agent_files_open', help: 'Files the file intake holds open now (followed and rotated ones being read to their end)', registers }),
    limit: new Gauge({ name: 'meteorzx_agent_files_open_limit', help: 'intake.maxOpenFiles: most followed files held open at once', registers }),
    waiting: new Gauge({ name: 'meteorzx_agent_files_waiting', help: 'Followed paths with something to read that wait for a handle (intake.maxOpenFiles reached)', registers }),
  }),
);

export interface HandleBudgetOptions {
  /** Most files held open at once (intake.maxOpenFiles). */
  limit: number;
  /** Files held open now. */
  open: () => number;
  now: () => number;
  logger?: Logger | undefined;
  metrics?: AgentMetrics | undefined;
}

/**
 * How many followed files the file intake holds open at once (`intake.maxOpenFiles`): a glob over
 * thousands of files under `ulimit -n 1024` took every descriptor, and the HTTP intake, the pull API and
 * the push then failed with EMFILE. A path that needs a handle when none is free waits in line, first
 * come first served, and the intake closes files read to their end to make room (FileIntake.balance); no
 * path is skipped. Rotated files being read to their end count but are never made to wait: their lines
 * exist nowhere else.
 */
export class HandleBudget {
  /** Paths waiting for a handle, in the order they asked. */
  private readonly waiting = new Set<string>();
  private warnedAt: number | undefined;
  private readonly gauges: HandleGauges | undefined;

  constructor(private readonly options: HandleBudgetOptions) {
    this.gauges = options.metrics && handleGauges(options.metrics.registry);
    this.gauges?.limit.set(options.limit);
  }

  get limit(): number {
    return this.options.limit;
  }

  private get free(): number {
    return this.options.limit - this.options.open();
  }

  /**
   * Whether the path `key` may open a file now. A handle is free and no path waits, or this one is among
   * the first in line there are free handles for: yes, and it leaves the line. Otherwise it joins the line
   * (or keeps its place) and is told no.
   */
  mayOpen(key: string): boolean {
    const free = this.free;
    if (free > 0) {
      if (!this.waiting.has(key) && this.waiting.size < free) return true;
      let place = 0;
      for (const k of this.waiting) {
        if (place++ >= free) break;
        if (k === key) {
          this.waiting.delete(key);
          return true;
        }
      }
    }
    this.waiting.add(key);
    return false;
  }

  /** Takes `key` out of the line: it has nothing to open any more (its file gone before its turn). */
  leave(key: string): void {
    this.waiting.delete(key);
  }

  /** Drops from the line the paths that no longer need a handle (forgotten, gone, or opened otherwise). */
  prune(stillWaits: (key: string) => boolean): void {
    for (const key of this.waiting) if (!stillWaits(key)) this.waiting.delete(key);
  }

  /** Handles to give back so that every path in line can open one (0 when none waits). */
  get shortfall(): number {
    return Math.max(0, this.waiting.size - Math.max(0, this.free));
  }

  /** The paths in line that may open now. */
  next(): string[] {
    const out: string[] = [];
    const free = this.free;
    for (const k of this.waiting) {
      if (out.length >= free) break;
      out.push(k);
    }
    return out;
  }

  /** Updates the gauges; warns when paths start waiting (then at most once a minute while they do), and says when none waits any more. */
  report(): void {
    const waiting = this.waiting.size;
    this.gauges?.open.set(this.options.open());
    this.gauges?.waiting.set(waiting);
    const { logger, limit } = this.options;
    if (waiting === 0) {
      if (this.warnedAt !== undefined) logger?.info({ limit }, 'no followed file waits for a handle any more');
      this.warnedAt = undefined;
      return;
    }
    const now = this.options.now();
    if (this.warnedAt !== undefined && now - this.warnedAt >= 0 && now - this.warnedAt < WARN_EVERY_MS) return;
    this.warnedAt = now;
    logger?.warn(
      { limit, open: this.options.open(), waiting },
      'intake.maxOpenFiles reached: files with lines to read wait for a handle (files read to their end are closed to make room; none is skipped)',
    );
  }
}
