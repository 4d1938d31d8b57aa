import type { Logger } from 'pino';
import type { AgentMetrics } from '../../metrics.js';
import type { FileId } from './checkpoint.js';
import { HandleBudget } from './handle-budget.js';
import { defaultMaxOpenFiles } from './open-file-limit.js';
import { finishGoneParked, parkable, reopenParked, type ParkedFile } from './parked-file.js';
import type { FollowedIds, ResumeContext } from './resume.js';
import type { TrackedFile } from './tracked-file.js';
import type { WatchedPath } from './watched-path.js';

/** Default of `closeInactive` (FileSpec.closeInactiveMs), Filebeat's `close_inactive`. */
const CLOSE_INACTIVE_MS = 5 * 60_000;

export interface FileHandlesOptions {
  /** Most files held open at once (intake.maxOpenFiles); default: a quarter of the open-file limit. */
  maxOpenFiles?: number | undefined;
  now: () => number;
  logger?: Logger | undefined;
  metrics?: AgentMetrics | undefined;
}

/**
 * The file intake's descriptors: the files open now, the current files closed while idle (parked, still
 * followed), and the budget that makes paths wait their turn for a handle. Before, every followed file
 * stayed open for as long as the agent ran: a glob over thousands of files took every descriptor the
 * process had, and its listeners and push failed with EMFILE (docs/intake-files.md, Open files).
 */
export class FileHandles {
  /** Open files by identity: current ones and rotated ones being read to their end. */
  readonly open = new Map<FileId, TrackedFile>();
  /** Current files closed while idle, by identity, with their path. */
  private readonly parked = new Map<FileId, WatchedPath>();
  /** Open or parked: what the resume and gone logic must take as followed. */
  readonly followed: FollowedIds = {
    has: (id) => this.open.has(id) || this.parked.has(id),
    keys: () => [...this.open.keys(), ...this.parked.keys()],
  };
  readonly budget: HandleBudget;

  constructor(private readonly options: FileHandlesOptions) {
    this.budget = new HandleBudget({
      limit: options.maxOpenFiles ?? defaultMaxOpenFiles(),
      open: () => this.open.size,
      now: options.now,
      logger: options.logger,
      metrics: options.metrics,
    });
  }

  /** Closes the current file of `wp` when it is read to its end (see parkable); true when it did. */
  async park(wp: WatchedPath): Promise<boolean> {
    const file = wp.current;
    if (file === undefined) return false;
    const st = await file.handle.stat({ bigint: true }).catch(() => undefined);
    const parked = st && parkable(file, st);
    if (parked === undefined) return false;
    wp.current = undefined;
    wp.parked = parked;
    this.open.delete(file.id);
    this.parked.set(file.id, wp);
    await file.close();
    return true;
  }

  /** Filebeat's close_inactive: a current file read to its end that has not grown for `closeInactive` is closed until it changes. */
  async closeInactive(wp: WatchedPath, now: number): Promise<void> {
    const file = wp.current;
    if (file === undefined || !file.atEof || now - file.lastGrowth < (wp.spec.closeInactiveMs ?? CLOSE_INACTIVE_MS)) return;
    if (await this.park(wp)) this.options.logger?.debug({ path: wp.path, offset: file.offset }, 'file inactive: closed until it changes');
  }

  /**
   * Makes room for the paths waiting for a handle: closes current files read to their end, the longest
   * quiet first (each is opened again in its turn when it changes), until every path in line can open.
   */
  async makeRoom(paths: Iterable<WatchedPath>): Promise<void> {
    let short = this.budget.shortfall;
    if (short === 0) return;
    const atEnd = [...paths].filter((wp) => wp.current?.atEof === true);
    atEnd.sort((a, b) => (a.current?.lastGrowth ?? 0) - (b.current?.lastGrowth ?? 0));
    for (const wp of atEnd) {
      if (short <= 0) break;
      if (await this.park(wp)) short -= 1;
    }
  }

  /**
   * Opens the parked file of `wp` again (reopenParked) as its current file, or finishes it when it is gone
   * (finishGoneParked); 'retry' when the path changed between the look and the open (the next look tries
   * again). `id`: the identity at the path now.
   */
  async reopen(ctx: ResumeContext, wp: WatchedPath, parked: ParkedFile, id: FileId | undefined): Promise<'opened' | 'gone' | 'retry'> {
    const file = await reopenParked(ctx, wp, parked, id === parked.id);
    if (file === 'retry') return 'retry';
    wp.parked = undefined;
    this.parked.delete(parked.id);
    if (file === undefined) {
      finishGoneParked(ctx, wp, parked, wp.path);
      return 'gone';
    }
    wp.current = file;
    for (const f of wp.files()) this.open.set(f.id, f);
    return 'opened';
  }

  /** Closes every open file; the gauges go back to none open and none waiting (a reload leaves no stale ones). */
  async close(): Promise<void> {
    await Promise.all([...this.open.values()].map((f) => f.close()));
    this.open.clear();
    this.budget.prune(() => false);
    this.budget.report();
  }
}
