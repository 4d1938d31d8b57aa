import { watch, type BigIntStats, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { isDynamicPattern } from 'tinyglobby';
import type { AuditEvent, Limits } from '../../../protocols/index.js';
import type { AgentBuffer, ExtraOp } from '../../buffer/types.js';
import type { AgentMetrics } from '../../metrics.js';
import { AppendAbortedError, durableAppend } from '../durable-append.js';
import { createIntakeMeter, type IntakeMeter } from '../intake-meter.js';
import { intakeErrorEvent } from '../intake-error.js';
import type { Intake } from '../types.js';
import { fileIdOf, fileKey, parsePathRecord, pathKey, type FileId, type FileRecord } from './checkpoint.js';
import { discover, patternIndexer } from './discover.js';
import { GoneRecords } from './gone-records.js';
import { FileHandles } from './file-handles.js';
import { parkedUnchanged } from './parked-file.js';
import type { FileSpec } from './file-spec.js';
import { linesToEvents } from './line-events.js';
import type { Line } from './line-splitter.js';
import { pathRecordKeys, tieUnlistedFiles, unlistedGonePaths } from './legacy-sweep.js';
import { adoptRecentSiblings, adoptUnseenRotations, markSiblingsSeen, openCurrent, openTruncatedCopy, reopenRotated, type ResumeContext } from './resume.js';
import type { TrackedFile } from './tracked-file.js';
import { INDEX_KEY, PathIndex } from './path-index.js';
import { waitingPathRecords } from './waiting-path.js';
import { WatchedPath } from './watched-path.js';
import { StagedMeta } from './staged-meta.js';
import { AppendWindow } from './append-window.js';

export interface FileIntakeOptions {
  files: readonly FileSpec[];
  buffer: AgentBuffer;
  limits: Limits;
  logger?: Logger;
  meter?: IntakeMeter;
  /** Where the handle gauges go (meteorzx_agent_files_open, _open_limit, _waiting). */
  metrics?: AgentMetrics;
  /** Most files held open at once (intake.maxOpenFiles); default: a quarter of the open-file limit. */
  maxOpenFiles?: number;
  /** Where relative paths start. Default: process.cwd(). */
  cwd?: string;
  /** How often each followed path is stat'ed for growth, rotation and truncation, ms (fs.watch only hurries it). */
  pollMs?: number;
  /** How often globs are expanded again to find new files, ms. */
  discoverMs?: number;
  /** A path whose looks found nothing to do for this long (ms, default 5 s) is looked at every `idleLookMs` only… */
  idleAfterMs?: number;
  /** …(default 2 s), and at once when its directory's watch reports a change under its name. */
  idleLookMs?: number;
  /** How long a rotated-away file is still read after it stopped growing, ms (a writer may not have reopened yet); over every entry's `rotateWaitMs` (tests). */
  rotateWaitMs?: number;
  /** Most lines per append (one group commit, one checkpoint). */
  maxBatchLines?: number;
  /** Most bytes read from one file before appending what was read. */
  maxBatchBytes?: number;
  now?: () => number;
}

const READ_CHUNK = 64 * 1024;
/** Appends of lines in flight at once (AppendWindow), and their bytes: files read in one poll share group commits. */
const APPENDS_IN_FLIGHT = 64;
const BYTES_IN_FLIGHT = 8 * 1024 * 1024;
/** ms between looks at an unchanged file that read its first bytes again anyway (TrackedFile.lookedUnchanged). */
const FULL_LOOK_MS = 5000;
/** Defaults of `idleAfterMs` and `idleLookMs` (FileIntake.lookLater). */
const IDLE_AFTER_MS = 5000;
const IDLE_LOOK_MS = 2000;

/**
 * Follows log files (DESIGN §3, issue 6): each line becomes an event, and
 * the file's read offset — keyed by identity (dev+inode), not name — is
 * written in the same buffer batch as the events it produced, so a crash
 * neither loses nor repeats a line. Rotation by rename (the old file is read
 * to its end through its open handle), by copytruncate (the copy is read
 * from our offset, the truncated file from 0), deletion and re-creation are
 * followed by polling; fs.watch only wakes the poll early. When the buffer is
 * full, reading stops until there is space. See docs/intake-files.md.
 */
export class FileIntake implements Intake {
  readonly name = 'files';
  private readonly paths = new Map<string, WatchedPath>();
  /** Open files (current and rotated ones) by identity: `handles.open`. */
  private readonly openFiles: Map<FileId, TrackedFile>;
  private readonly handles: FileHandles;
  /** Paths found that wait for a handle before they are followed, with their spec and whether the first scan found them. */
  private readonly pending = new Map<string, { index: number; firstScan: boolean }>();
  private readonly notices: AuditEvent[] = [];
  private readonly watchers = new Map<string, FSWatcher>();
  private readonly abort = new AbortController();
  private readonly meter: IntakeMeter;
  private readonly now: () => number;
  private readonly resume: ResumeContext;
  private readonly index = new PathIndex();
  /** Records of one discovery, written together (staged-meta.ts); every read of the intake's records goes through it. */
  private readonly staged: StagedMeta;
  private readonly window = new AppendWindow(APPENDS_IN_FLIGHT, BYTES_IN_FLIGHT);
  private readonly gone: GoneRecords;
  private loop: Promise<void> | undefined;
  private closed: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private lastDiscover = 0;
  /** Where relative paths start. */
  private readonly cwd: string;
  /** The spec that names or matches a path discovery did not find (from the index, or an earlier agent's records); -1 for none. */
  private readonly specIndexFor: (path: string) => number;
  /** Paths whose last poll failed, with the clock ms of the last error logged for them. */
  private readonly failing = new Map<string, number>();
  /** Paths whose file could not be opened, with the error code last reported (reported once until it opens or fails otherwise). */
  private readonly unopened = new Map<string, string>();

  constructor(private readonly options: FileIntakeOptions) {
    this.cwd = options.cwd ?? process.cwd();
    this.specIndexFor = patternIndexer(
      options.files.map((f) => f.path),
      this.cwd,
    );
    this.meter = options.meter ?? createIntakeMeter(undefined, this.name);
    this.now = options.now ?? Date.now;
    this.handles = new FileHandles({ maxOpenFiles: options.maxOpenFiles, now: this.now, logger: options.logger, metrics: options.metrics });
    this.openFiles = this.handles.open;
    this.staged = new StagedMeta((key) => options.buffer.getMeta(key));
    this.resume = {
      intake: this.name,
      getMeta: (key) => this.staged.get(key),
      open: this.handles.followed,
      now: this.now,
      notice: (event) => this.notices.push(event),
      opening: (path, err) => this.opening(path, err),
    };
    this.gone = new GoneRecords({
      paths: this.paths,
      openFiles: this.handles.followed,
      resume: this.resume,
      index: this.index,
      literals: new Set(options.files.filter((f) => !isDynamicPattern(f.path)).map((f) => resolve(this.cwd, f.path))),
      now: this.now,
      commit: (paths, more) => this.commitMeta(paths, [], more),
      forgotten: (wp) => {
        this.failing.delete(wp.path);
        this.handles.budget.prune((key) => key !== wp.path);
        this.unwatchDir(dirname(wp.path));
      },
      logger: options.logger,
    });
  }

  async start(): Promise<void> {
    const { buffer } = this.options;
    this.index.load(await buffer.getMeta(INDEX_KEY));
    // An earlier agent's records that nothing lists any more (see legacy-sweep.ts): its gone paths are
    // followed like those of the index, and its finished files listed with their path, so the looks find them.
    const records = await pathRecordKeys(buffer);
    const { paths: legacy, cursor } = await unlistedGonePaths(records, new Set(this.index), (path) => this.specIndexFor(path) >= 0);
    await this.scan(true, legacy);
    const tied = await tieUnlistedFiles(buffer, records, this.paths);
    if (legacy.length > 0 || tied > 0) this.options.logger?.info({ paths: legacy.length, files: tied }, 'records an earlier agent left: looking whether they are gone');
    // Checkpoints for every file now followed (rotated ones adopted at start included), so a crash before
    // their first batch still finds them listed with a record.
    await this.commitMeta([...this.paths.values()], [...this.paths.values()].flatMap((wp) => wp.files()), [cursor]);
    this.loop = this.run();
  }

  describe(): Record<string, unknown> {
    const following = [...this.paths.values()].filter((wp) => !wp.idle).map((wp) => wp.path);
    return { intake: this.name, paths: this.options.files.map((f) => f.path), following };
  }

  /** Stops reading; an append in progress finishes (or is given up, unacknowledged); handles are closed. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.abort.abort();
      this.wakeUp?.();
      await this.loop;
      for (const w of this.watchers.values()) w.close();
      await this.handles.close();
    })();
    return this.closed;
  }

  private get closing(): boolean {
    return this.abort.signal.aborted;
  }

  private async run(): Promise<void> {
    const pollMs = this.options.pollMs ?? 250;
    while (!this.closing) {
      let busy = false;
      try {
        // Below zero: the clock went back since the last scan. Waiting for it to pass that scan's time again
        // stopped discovery (new files, gone looks) for the length of the step.
        const sinceDiscover = this.now() - this.lastDiscover;
        if (sinceDiscover >= (this.options.discoverMs ?? 1000) || sinceDiscover < 0) {
          await this.scan(false);
          await this.gone.lookAll();
        }
        await this.balance();
        for (const wp of [...this.paths.values()]) {
          const now = this.now();
          // Below the last look: the clock went back; look now rather than wait for it to catch up.
          if (now < wp.pollAt && wp.pollAt - now <= (this.options.idleLookMs ?? IDLE_LOOK_MS)) continue;
          try {
            const quiet = await this.checkPath(wp);
            let read = false;
            for (const file of wp.files()) if (await this.pump(wp, file)) read = true;
            if (read) busy = true;
            await this.finishDrained(wp);
            // Closed with an append in flight, it would be parked at the checkpoint before that append, and read again.
            if (!this.window.busy(wp)) await this.handles.closeInactive(wp, now);
            this.failing.delete(wp.path);
            this.lookLater(wp, quiet && !read && wp.draining.length === 0, now);
          } catch (err) {
            // One path's I/O error (EIO, an NFS ESTALE) must not stop the others: it is tried again next poll.
            if (this.closing || err instanceof AppendAbortedError) throw err;
            this.pathFailed(wp, err);
          }
        }
        // Every checkpoint moved before anything looks at them again (balance, rotations, the gone looks).
        await this.window.drain();
        if (this.notices.length > 0 || this.index.changed) await this.commitMeta([]);
        this.handles.budget.report();
      } catch (err) {
        // A failed append rewound its file: read again next poll. Those still in flight settle first.
        await this.window.drain().catch(() => undefined);
        if (this.closing || err instanceof AppendAbortedError) break;
        this.meter.error('read');
        this.options.logger?.error({ err }, 'file intake: poll failed; retrying');
      }
      if (!busy) await this.sleep(pollMs);
    }
  }

  /**
   * Polling every path every `pollMs` cost an idle agent a stat per file per poll: with 500 quiet files,
   * a quarter of a core. A path whose looks found nothing to do for `idleAfterMs` is looked at every
   * `idleLookMs`, as Filebeat backs off an idle harvester, and at once when the watch on its directory
   * reports a change under its name (watchDir): a write is then read as soon as before. Where the watch
   * says nothing (NFS written from another host), a quiet file's next lines wait `idleLookMs` at most.
   */
  private lookLater(wp: WatchedPath, quiet: boolean, now: number): void {
    if (!quiet) {
      wp.quietSince = undefined;
      wp.pollAt = 0;
      return;
    }
    wp.quietSince ??= now;
    wp.pollAt = now - wp.quietSince >= (this.options.idleAfterMs ?? IDLE_AFTER_MS) ? now + (this.options.idleLookMs ?? IDLE_LOOK_MS) : 0;
  }

  /** Counts a path's failed poll; logs it when it starts failing, then at most once a minute while it goes on. */
  private pathFailed(wp: WatchedPath, err: unknown): void {
    this.meter.error('read');
    const now = this.now();
    const last = this.failing.get(wp.path);
    if (last !== undefined && now - last >= 0 && now - last < 60_000) return;
    this.failing.set(wp.path, now);
    this.options.logger?.error({ err, path: wp.path }, 'file intake: reading this path failed; retrying at each poll');
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
    });
  }

  /**
   * Expands the globs; starts following paths not followed yet (and, at start, the paths of the index and
   * `legacy` ones). A path with a record and nothing to read (gone while the agent was down) is kept, idle,
   * until the looks forget it or it comes back.
   */
  private async scan(firstScan: boolean, legacy: readonly string[] = []): Promise<void> {
    this.lastDiscover = this.now();
    const found = await discover(
      this.options.files.map((f) => f.path),
      this.cwd,
    );
    // A path neither matched nor followed any more has no open failure to remember.
    for (const path of this.unopened.keys()) if (!found.has(path) && !this.paths.has(path)) this.unopened.delete(path);
    if (firstScan) {
      // Paths followed before the restart keep their spec only if a pattern still names them literally or matched them before.
      for (const path of [...this.index, ...legacy]) if (!found.has(path)) found.set(path, this.specIndexFor(path));
    }
    await this.together(async () => {
      for (const [path, index] of found) await this.follow(path, index, firstScan);
    });
  }

  /** Runs `work` with the records it writes held back, then writes them in one batch (StagedMeta). */
  private async together(work: () => Promise<void>): Promise<void> {
    this.staged.hold();
    try {
      await work();
    } finally {
      await this.commitMeta([], [], this.staged.release());
    }
  }

  /** Follows, in their turn, paths that waited for a handle (HandleBudget). */
  private async admitPending(): Promise<void> {
    await this.together(async () => {
      for (const path of this.handles.budget.next()) {
        const waited = this.pending.get(path);
        if (waited !== undefined) await this.follow(path, waited.index, waited.firstScan);
      }
    });
  }

  /**
   * Starts following `path` (found by discovery, or at start in the index), with the spec at `index`, unless
   * it has a file to open and no handle is free: it then waits its turn (pending), and is read from where
   * it would have been had it been opened at once (`firstScan`: startAt applies).
   */
  private async follow(path: string, index: number, firstScan: boolean): Promise<void> {
    const waited = this.pending.get(path);
    if (this.paths.has(path) || index < 0) {
      this.pending.delete(path);
      return;
    }
    if (waited !== undefined && !this.handles.budget.mayOpen(path)) return;
    const first = waited?.firstScan ?? firstScan;
    const record = parsePathRecord(await this.staged.get(pathKey(path)));
    const st = await stat(path, { bigint: true }).catch(() => undefined);
    const opens = st !== undefined || record?.current !== undefined || (record?.draining.length ?? 0) > 0;
    const spec = this.options.files[index] as FileSpec;
    if (waited === undefined && opens && !this.handles.budget.mayOpen(path)) {
      this.pending.set(path, { index, firstScan: first });
      // Recorded now, listed in the index: a restart before its turn resumes it where it starts now.
      if (record === undefined && st !== undefined) {
        const ops = await waitingPathRecords(this.resume, path, first && spec.startAt === 'end');
        if (ops.length > 0) this.index.add(path);
        await this.commitMeta([], [], ops);
      }
      return;
    }
    this.pending.delete(path);
    const wp = new WatchedPath(path, spec);
    // What changed beside the path before now is for the start's own checks (adoptUnseenRotations, markSiblingsSeen).
    wp.checkedAt = this.now();
    for (const id of record?.done ?? []) wp.done.add(id);
    // Generations may have been deleted while the agent was down.
    wp.lookForGone = wp.done.size > 0;
    if (record !== undefined) await reopenRotated(this.resume, wp, record, st && fileIdOf(st));
    // A path that waited for a handle has the records written when it was found (waitingPathRecords):
    // `startAt: end` is the end when it was found, and lines written while it waited are read.
    if (st !== undefined) wp.current = await openCurrent(this.resume, wp, record !== undefined, first);
    // Generations no look saw: those made while the agent was down (first scan), or while the path waited
    // for its first turn (its record was written when it was found). Before, a path found while the agent
    // ran that was rotated twice while it waited had its middle generation never read, then marked seen.
    if (record !== undefined && (first || waited !== undefined)) await adoptUnseenRotations(this.resume, wp, record);
    for (const f of wp.files()) this.openFiles.set(f.id, f);
    if (wp.idle && record === undefined) return;
    this.paths.set(path, wp);
    this.watchDir(dirname(path));
    this.index.add(path);
    if (record === undefined) await this.commitMeta([wp], [], await this.markSeen(wp));
    // What its turn found (rotated away while it waited, a generation never seen) is on record before any line.
    else if (waited !== undefined) await this.commitMeta([wp], wp.files());
    if (wp.idle) {
      wp.lookForGone = true;
      return;
    }
    this.options.logger?.info({ path, files: wp.files().map((f) => ({ id: f.id, offset: f.offset, draining: f.draining })) }, 'following file');
  }

  /**
   * Lets the paths waiting for a handle (intake.maxOpenFiles) take their turn: files read to their end are
   * closed to make room (FileHandles.makeRoom), then the first in line are looked at in this poll.
   */
  private async balance(): Promise<void> {
    const { budget } = this.handles;
    // In line: paths found and not followed yet, and followed ones with no open current file (parked, or new at the path).
    budget.prune((key) => {
      const wp = this.paths.get(key);
      return this.pending.has(key) || (wp !== undefined && wp.current === undefined);
    });
    await this.handles.makeRoom(this.paths.values());
    for (const key of budget.next()) {
      const wp = this.paths.get(key);
      if (wp !== undefined) wp.pollAt = 0;
    }
    if (this.pending.size > 0) await this.admitPending();
  }

  /**
   * A file at a followed path that cannot be opened (EACCES: a log readable by its owner only) is tried
   * again at each discovery; it is logged and counted once, not every second, and read once it opens.
   * ENOENT is a file gone between the look and the open: nothing to report.
   */
  private opening(path: string, err: (Error & { code?: string }) | undefined): void {
    if (err === undefined) {
      if (this.unopened.delete(path)) this.options.logger?.info({ path }, 'file can be opened now: following it');
      return;
    }
    const code = err.code ?? 'unknown';
    if (code === 'ENOENT' || this.unopened.get(path) === code) return;
    this.unopened.set(path, code);
    this.meter.error('open');
    this.options.logger?.warn({ path, code, err: err.message }, 'file cannot be opened: not followed until it can be');
  }

  /**
   * Notices a rename, a deletion, a new file at the path, or a truncation of the current file. True when
   * the look found nothing to do: the file as at the last look and read to its end, or still no file.
   */
  private async checkPath(wp: WatchedPath): Promise<boolean> {
    const since = wp.checkedAt;
    wp.checkedAt = this.now();
    const st = await stat(wp.path, { bigint: true }).catch(() => undefined);
    const id = st && fileIdOf(st);
    // What a path that waited for a handle missed changed since it started waiting (a look that found no
    // file at the path meanwhile, between logrotate's rename and create, moved `since` past it).
    const unseenSince = Math.min(since, wp.waitedSince ?? since);
    const parked = wp.parked;
    if (parked !== undefined) {
      if (parkedUnchanged(parked, st)) return true;
      // Changed while closed: opened again in its turn; until then no look has seen it (`since` stays).
      if (!this.handles.budget.mayOpen(wp.path)) {
        // The bytes it was seen to get exist: deleted before its turn, a notice names them (finishGoneParked).
        if (st !== undefined && id === parked.id) parked.size = Math.max(parked.size, Number(st.size));
        this.waiting(wp, since, st);
        return true;
      }
      const known = [...wp.files().map((f) => f.record(f.offset)), { path: wp.path, offset: parked.offset, size: parked.size, fp: parked.fp }];
      const reopened = await this.handles.reopen(this.resume, wp, parked, id);
      if (reopened !== 'retry') await this.waitOver(wp, known, id);
      if (reopened === 'retry') {
        wp.checkedAt = since;
        return false;
      }
      if (reopened === 'gone') {
        this.options.logger?.info({ path: wp.path, id: parked.id }, 'file gone while closed: its checkpoint is deleted once the looks confirm it');
        await this.commitMeta([wp]);
      }
    }
    const current = wp.current;
    if (current !== undefined && current.id !== id) {
      const known = wp.files().map((f) => f.record(f.offset));
      wp.retire(this.now());
      this.options.logger?.info({ path: wp.path, id: current.id, reason: id === undefined ? 'gone' : 'replaced' }, 'file rotated: reading it to its end');
      // A generation that appeared since the last look and that no poll saw at the path holds lines nobody
      // read: logrotate's `create`, finding the log recreated by a writer before it could create it, moves
      // that file aside as `<name>-YYYYMMDDHH.backup`.
      await this.adoptUnseen(wp, known, unseenSince);
      // Other generations present now were seen live: a restart must not take them for missed ones.
      await this.commitMeta([wp], wp.files(), await this.markSeen(wp, unseenSince));
      // logrotate deletes the oldest generation as it rotates.
      wp.lookForGone = true;
      wp.lastListing = undefined;
    }
    if (wp.current === undefined && (id === undefined || this.handles.followed.has(id))) {
      // Nothing to open at the path: a place in line would keep a handle from the paths behind it.
      this.handles.budget.leave(wp.path);
      await this.waitOver(wp, wp.files().map((f) => f.record(f.offset)), id);
    }
    if (st === undefined || id === undefined) return wp.idle;
    if (wp.current === undefined) {
      if (this.handles.followed.has(id)) return false;
      if (!this.handles.budget.mayOpen(wp.path)) {
        this.waiting(wp, since, st);
        return true;
      }
      await this.waitOver(wp, wp.files().map((f) => f.record(f.offset)), id);
      const file = await openCurrent(this.resume, wp, true, false, since);
      if (file === undefined) return false;
      wp.current = file;
      this.openFiles.set(file.id, file);
      for (const f of wp.draining) this.openFiles.set(f.id, f);
      await this.commitMeta([wp], wp.files());
      return false;
    }
    const size = Number(st.size);
    const file = wp.current;
    if (file.lookedUnchanged(st, this.now(), FULL_LOOK_MS)) return file.quietNow;
    if (!(await file.unchanged(size))) {
      await this.truncated(wp, file, size, since);
      return false;
    }
    file.rememberLook(st, this.now());
    // Not grown and read to its end: quiet, though this look read the first bytes again (every fullLookMs).
    const quiet = size <= file.size && file.atEof && file.readPos >= size;
    if (size > file.size) file.size = size;
    const adopted = await this.grewFromEmpty(wp, file);
    return quiet && !adopted;
  }

  /**
   * A look told the path to wait for a handle: no look has seen it since `since` (checkedAt stays), and
   * the file at the path now (`st`) is one it has not read.
   */
  private waiting(wp: WatchedPath, since: number, st: BigIntStats | undefined): void {
    wp.checkedAt = since;
    wp.waitedSince ??= since;
    if (st === undefined) return;
    const id = fileIdOf(st);
    if (wp.parked?.id !== id) wp.seenWaiting.set(id, Math.max(wp.seenWaiting.get(id) ?? 0, Number(st.size)));
  }

  /**
   * A path that waited for a handle has its turn (or nothing at the path to wait for any more). Rotated
   * again while it waited, the files that were at the path meanwhile are generations now (`app.log.1`, …)
   * that no look opened: they are read from 0 (or from where a `known` file they are a copy of stopped),
   * as generations no poll saw (adoptRecentSiblings). Before, the turn opened only the file at the path
   * then, and the next rotation checkpointed those generations at their end as seen, unread. A file seen
   * at the path while it waited that is neither at the path now (`atPath`), followed nor on record was
   * deleted (or compressed, or moved away) before its turn: a notice names the bytes the looks saw in it.
   */
  private async waitOver(wp: WatchedPath, known: readonly FileRecord[], atPath: FileId | undefined): Promise<void> {
    const since = wp.waitedSince;
    if (since === undefined) return;
    wp.waitedSince = undefined;
    await this.adoptUnseen(wp, known, since);
    for (const [id, size] of wp.seenWaiting) {
      if (size === 0 || id === atPath || this.handles.followed.has(id) || (await this.staged.get(fileKey(id))) !== undefined) continue;
      this.notices.push(
        intakeErrorEvent({
          intake: this.name,
          file: wp.path,
          offset: 0,
          bytes: size,
          reason: 'a file at the path was rotated away and deleted (or compressed, or moved out of its directory) while the path waited for a handle (intake.maxOpenFiles), before it was read',
        }),
      );
    }
    wp.seenWaiting.clear();
  }

  /**
   * The current file, empty since a truncation (or since it was opened), has its first bytes: a generation
   * written and copytruncated meanwhile (logrotate ran again while no poll looked, e.g. while the buffer
   * was full) left a file that looks merely grown, and its lines only in a copy no poll saw. Reads such
   * copies (adoptRecentSiblings); true when there were any.
   */
  private async grewFromEmpty(wp: WatchedPath, file: TrackedFile): Promise<boolean> {
    const since = file.emptySince;
    if (since === undefined || file.fp.len === 0) return false;
    file.emptySince = undefined;
    const known = wp.files().map((f) => f.record(f.offset));
    if ((await this.adoptUnseen(wp, known, since)) === 0) return false;
    await this.commitMeta([wp], wp.files(), await this.markSeen(wp, since));
    wp.lookForGone = true;
    wp.lastListing = undefined;
    return true;
  }

  /** `since`: when the path was last looked at (ms); a generation that changed since then was never seen at it. */
  private async truncated(wp: WatchedPath, file: TrackedFile, size: number, since: number): Promise<void> {
    this.options.logger?.info({ path: wp.path, offset: file.offset, size }, 'file truncated (copytruncate?): reading it from 0');
    const known = wp.files().map((f) => f.record(f.offset));
    const copy = await openTruncatedCopy(this.resume, wp, file.record(file.offset), new Set(this.openFiles.keys()));
    if (copy !== undefined) {
      wp.draining.push(copy);
      this.openFiles.set(copy.id, copy);
      this.options.logger?.info({ path: copy.path, from: copy.offset }, 'reading the rest of the lines from the rotated copy');
    }
    file.seek(0);
    file.size = size;
    await file.resetFingerprint(this.now());
    // Two copytruncates between two looks (no poll while a read waits for buffer space), or the second one
    // while this one is handled (logrotate run twice a few ms apart): the second copy holds a generation
    // that never was at the path while we looked. It is looked for after the new first bytes are taken:
    // a copy made before it is found here, one made after is followed by a truncation the next look sees
    // (or by first bytes where the file was empty: grewFromEmpty). Looked for before, a copy made
    // meanwhile was checkpointed at its end below as seen, unread: 80 of 37,830 lines lost, no notice.
    await this.adoptUnseen(wp, known, since);
    await this.commitMeta([wp], wp.files(), await this.markSeen(wp, since));
    wp.lookForGone = true;
    wp.lastListing = undefined;
  }

  /** Reads one batch from `file` and appends it with its checkpoint. True when bytes were read. */
  private async pump(wp: WatchedPath, file: TrackedFile): Promise<boolean> {
    const maxLines = this.options.maxBatchLines ?? 1000;
    const maxBytes = this.options.maxBatchBytes ?? 1024 * 1024;
    const { lines, bytes } = await file.readBatch(maxLines, maxBytes, READ_CHUNK, this.now(), () => this.closing);
    // Read, then check: a copytruncate between the last poll and this read would have given us the new
    // content at the old offset. What was read before a truncation is valid; what was read after is caught here.
    if (bytes > 0 && file === wp.current && !(await file.unchanged((await file.stat()).size))) {
      file.rewind();
      await this.truncated(wp, file, (await file.stat()).size, wp.checkedAt);
      return true;
    }
    // The older lines of a copy no poll saw go first: what was read here is read again after them.
    if (bytes > 0 && file === wp.current && (await this.grewFromEmpty(wp, file))) {
      file.rewind();
      return true;
    }
    if (file.draining && bytes === 0 && this.drained(wp, file)) {
      const last = file.flushPartial();
      if (last !== undefined) lines.push(last);
    }
    for (let i = 0; i < lines.length && !this.closing; i += maxLines) await this.append(wp, file, lines.slice(i, i + maxLines));
    return bytes > 0;
  }

  private drained(wp: WatchedPath, file: TrackedFile): boolean {
    return file.complete || this.now() - file.lastGrowth >= (this.options.rotateWaitMs ?? wp.spec.rotateWaitMs ?? 5000);
  }

  /**
   * Starts the append of `lines` with the file's checkpoint (AppendWindow): it is durable, and the
   * checkpoint moved, once the poll drains the window. Until then the file's offset is behind what was read.
   */
  private async append(wp: WatchedPath, file: TrackedFile, lines: readonly Line[]): Promise<void> {
    // data.file is the followed path, also for lines read from its rotated copy.
    const { events, invalid } = linesToEvents(lines, { ...wp.spec, limits: this.options.limits }, { intake: this.name, file: wp.path });
    const end = (lines[lines.length - 1] as Line).end;
    const bytes = end - (lines[0] as Line).start;
    await this.window.add(wp, bytes, async () => {
      // Taken when the append starts (not when the window had room for it), so each goes with one append.
      const notices = this.notices.splice(0);
      let appended: number;
      try {
        appended = await this.durable([...notices, ...events], [{ key: fileKey(file.id), value: JSON.stringify(file.record(end)) }, wp.extra(this.now()), ...this.index.extra()]);
      } catch (err) {
        // Not durable: forget what was read so it is read again (after a restart, from the checkpoint).
        file.rewind();
        this.notices.unshift(...notices);
        throw err;
      }
      file.offset = end;
      this.meter.eventsIn(appended);
      if (invalid > 0) this.meter.invalid(invalid);
    }, () => file.rewind());
  }

  /**
   * Closes rotated files that were read to the end and stopped growing; records that they are done: the
   * record of a file already unlinked is deleted in that same batch, that of a file still on disk is kept
   * (listed in the path's `done`) until the looks (GoneRecords) find it gone, or forget the path.
   */
  private async finishDrained(wp: WatchedPath): Promise<void> {
    const done = wp.draining.filter((f) => f.atEof && f.readPos === f.offset && !f.hasPartial && this.drained(wp, f));
    if (done.length === 0) return;
    const unlinked = new Set<TrackedFile>();
    for (const f of done) {
      // No link left: no name will ever lead to this file again, so nothing can resume it or mistake it.
      if ((await f.stat().catch(() => undefined))?.nlink === 0) unlinked.add(f);
      else wp.done.add(f.id);
      wp.remove(f);
    }
    const kept = done.filter((f) => !unlinked.has(f));
    await this.commitMeta([wp], kept, [...unlinked].map((f) => ({ key: fileKey(f.id), value: null })));
    for (const f of done) {
      this.openFiles.delete(f.id);
      await f.close();
      this.options.logger?.info({ path: f.path, id: f.id, offset: f.offset, recordDeleted: unlinked.has(f) }, 'rotated file read to its end: closed');
    }
    if (wp.idle) {
      // Nothing left to read and nothing at the path: it may be gone for good (a dated log, a process's log).
      wp.missing.delete(wp.path);
      wp.lookForGone = true;
    }
  }

  /** Reads the rotated generations of `wp` that no poll saw at the path (adoptRecentSiblings); how many. */
  private async adoptUnseen(wp: WatchedPath, known: readonly FileRecord[], since: number): Promise<number> {
    const adopted = await adoptRecentSiblings(this.resume, wp, known, since);
    for (const f of adopted) {
      this.openFiles.set(f.id, f);
      this.options.logger?.warn({ path: f.path, id: f.id, from: f.offset }, 'a rotated file no poll saw at the path: reading it');
    }
    return adopted.length;
  }

  /**
   * Checkpoints the path's rotated generations not yet known (markSiblingsSeen), but for those changed since
   * `since` (the last look) that it has not read; lists every finished one in `done`.
   */
  private async markSeen(wp: WatchedPath, since?: number): Promise<ExtraOp[]> {
    const { ops, finished } = await markSiblingsSeen(this.resume, wp.path, since);
    for (const id of finished) wp.done.add(id);
    return ops;
  }

  /** Writes path records, file records and pending notices without lines (a rotation seen, a truncation). */
  private async commitMeta(paths: readonly WatchedPath[], files: readonly TrackedFile[] = [], more: readonly ExtraOp[] = []): Promise<void> {
    const records = [...more, ...files.map((f) => ({ key: fileKey(f.id), value: JSON.stringify(f.record(f.offset)) })), ...paths.map((wp) => wp.extra(this.now()))];
    if (this.staged.held) {
      // With the notices and the index, in the batch that ends the hold.
      this.staged.stage(records);
      return;
    }
    const notices = this.notices.splice(0);
    const extra = [...records, ...this.index.extra()];
    if (extra.length === 0 && notices.length === 0) return;
    let appended: number;
    try {
      appended = await this.durable(notices, extra);
    } catch (err) {
      this.notices.unshift(...notices);
      throw err;
    }
    if (appended > 0) this.meter.eventsIn(appended);
  }

  private async durable(events: readonly AuditEvent[], extra: readonly ExtraOp[]): Promise<number> {
    // Read before the first await, with the ops just built: appends run concurrently (AppendWindow), and
    // one that carried an older index must not mark a newer change written.
    const writesIndex = extra.some((x) => x.key === INDEX_KEY) ? this.index.version : undefined;
    const appended = await durableAppend(events, extra, {
      buffer: this.options.buffer,
      intake: this.name,
      meter: this.meter,
      signal: this.abort.signal,
      ...(this.options.logger ? { logger: this.options.logger } : {}),
    });
    if (writesIndex !== undefined) this.index.written(writesIndex);
    return appended;
  }

  /** Closes the watcher of a directory no followed path is in any more. */
  private unwatchDir(dir: string): void {
    for (const wp of this.paths.values()) if (dirname(wp.path) === dir) return;
    this.watchers.get(dir)?.close();
    this.watchers.delete(dir);
  }

  private watchDir(dir: string): void {
    if (this.watchers.has(dir)) return;
    try {
      // Only a hint to poll now; polling stays the source of truth (fs.watch misses events on some filesystems).
      const w = watch(dir, { persistent: false }, (_event, name) => {
        // A quiet path named by the event is looked at in this poll; without a name, every path in the directory.
        const named = name === null ? undefined : this.paths.get(join(dir, name));
        if (named !== undefined) named.pollAt = 0;
        else if (name === null) for (const wp of this.paths.values()) if (dirname(wp.path) === dir) wp.pollAt = 0;
        this.wakeUp?.();
      });
      w.on('error', () => w.close());
      this.watchers.set(dir, w);
    } catch {
      // Directory gone or no inotify watches left: polling alone still works.
    }
  }
}
