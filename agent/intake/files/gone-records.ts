import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { ExtraOp } from '../../buffer/types.js';
import { fileKey, pathKey, type FileId } from './checkpoint.js';
import type { PathIndex } from './path-index.js';
import type { FollowedIds, ResumeContext } from './resume.js';
import { identitiesIn } from './rotation.js';
import { confirmGone, exists, finishedInDir } from './two-looks.js';
import type { WatchedPath } from './watched-path.js';

/** Between looks for gone finished files when no rotation prompts one, ms. */
const GONE_LOOK_MS = 60_000;

/** What the looks need from the file intake. */
export interface GoneRecordsHost {
  /** The followed paths, idle ones included; a forgotten path is removed from it. */
  readonly paths: Map<string, WatchedPath>;
  /** Identities followed, open or parked. */
  readonly openFiles: FollowedIds;
  readonly resume: ResumeContext;
  readonly index: PathIndex;
  /** Paths the configuration names literally (absolute): kept when they are gone. */
  readonly literals: ReadonlySet<string>;
  now(): number;
  /** Writes the path records of `paths` and the `more` ops in one batch (FileIntake.commitMeta). */
  commit(paths: readonly WatchedPath[], more: readonly ExtraOp[]): Promise<void>;
  /** A path was forgotten: its directory may need no watcher any more. */
  forgotten(wp: WatchedPath): void;
  logger?: Logger | undefined;
}

/**
 * How long records live once nothing is read from them (docs/intake-files.md, "How long a `file!` record
 * lives"): a finished file's record goes once two looks no longer find the file beside its path, and a
 * path with nothing left to read and no finished generation left that two looks no longer find — one a
 * glob matched, not one the configuration names — is forgotten.
 */
export class GoneRecords {
  constructor(private readonly host: GoneRecordsHost) {}

  /**
   * A path with nothing left to read, no finished generation left on disk, that no configured path names
   * literally: once gone, it is forgotten. While a generation is on disk its record stays, so the file
   * renamed back to the path is not read again.
   */
  forgettable(wp: WatchedPath): boolean {
    return wp.idle && wp.done.size === 0 && !this.host.literals.has(wp.path);
  }

  /**
   * Looks at every path due for a look (see look) and writes, in one batch, what the looks found: the
   * deleted records of finished files gone from the directory, with the path records that stop listing
   * them; and for each path forgotten (none of its generations left on disk), the deletion of its `path!`
   * record and of its `files!paths` entry.
   */
  async lookAll(): Promise<void> {
    const { host } = this;
    const due = [...host.paths.values()].filter((wp) => (wp.done.size > 0 || this.forgettable(wp)) && (wp.lookForGone || host.now() >= wp.nextLookAt));
    const written: WatchedPath[] = [];
    const forgotten: WatchedPath[] = [];
    const deleted = new Map<WatchedPath, FileId[]>();
    const undo: (() => void)[] = [];
    // One listing per directory per pass: paths kept while a generation is on disk (per-process logs) can be
    // thousands in one directory, and each look lists and stats all of it.
    const listings = new Map<string, Promise<Map<FileId, string> | undefined>>();
    const list = (dir: string): Promise<Map<FileId, string> | undefined> => {
      let listing = listings.get(dir);
      if (listing === undefined) listings.set(dir, (listing = identitiesIn(dir)));
      return listing;
    };
    for (const wp of due) {
      const { gone, pathGone, changed } = await this.look(wp, list);
      if (pathGone) {
        // Forgettable: the look found none of its finished generations left (gone holds the last ones).
        deleted.set(wp, gone);
        forgotten.push(wp);
        host.index.delete(wp.path);
        undo.push(() => {
          for (const id of gone) wp.done.add(id);
          host.index.add(wp.path);
          wp.lookForGone = true;
        });
      } else if (gone.length > 0 || changed) {
        deleted.set(wp, gone);
        written.push(wp);
        undo.push(() => {
          // Not written: they stay listed, and the next look deletes them.
          for (const id of gone) {
            wp.done.add(id);
            wp.missing.add(id);
          }
          wp.lookForGone = true;
        });
      }
    }
    if (deleted.size === 0) return;
    const ops: ExtraOp[] = [];
    for (const [wp, ids] of deleted) for (const id of ids) if (!this.listedElsewhere(id, wp, forgotten)) ops.push({ key: fileKey(id), value: null });
    for (const wp of forgotten) ops.push({ key: pathKey(wp.path), value: null });
    try {
      await host.commit(written, ops);
    } catch (err) {
      for (const u of undo) u();
      throw err;
    }
    for (const wp of written) {
      const gone = deleted.get(wp) ?? [];
      if (gone.length > 0) host.logger?.info({ path: wp.path, files: gone }, 'finished files gone: checkpoints deleted');
    }
    for (const wp of forgotten) {
      host.paths.delete(wp.path);
      host.forgotten(wp);
      host.logger?.info({ path: wp.path, files: deleted.get(wp) }, 'path gone: its records deleted');
    }
  }

  /**
   * One look at a path: which of its finished files are gone from its directory (found by identity, with
   * their own record), and, when it is forgettable, whether the path itself is gone. Due after each
   * rotation or truncation until the directory stops changing (logrotate deletes the oldest generation
   * after renaming the others and running postrotate), while something is suspect, and once a minute
   * otherwise (a generation deleted by hand, or compressed later).
   */
  private async look(wp: WatchedPath, list: (dir: string) => Promise<Map<FileId, string> | undefined>): Promise<{ gone: FileId[]; pathGone: boolean; changed: boolean }> {
    const { host } = this;
    wp.nextLookAt = host.now() + GONE_LOOK_MS;
    let changed = false;
    for (const id of [...wp.done]) {
      if (!host.openFiles.has(id)) continue;
      // Followed again (renamed back to a followed path): its record is live, and listed again when it is finished.
      wp.done.delete(id);
      wp.missing.delete(id);
      changed = true;
    }
    let settled: boolean | undefined = true;
    let gone: FileId[] = [];
    if (wp.done.size > 0) {
      const found = await finishedInDir(host.resume, dirname(wp.path), wp.done, list);
      // Not listed, not looked: a failed listing must not count anything as missing.
      settled = found && found.listing === wp.lastListing;
      if (found !== undefined) {
        // Identities (`<dev>:<ino>`) and the path (absolute) share `missing`: they never look alike.
        gone = confirmGone(wp.done, found.seen, wp.missing);
        for (const id of gone) wp.done.delete(id);
        wp.lastListing = found.listing;
      }
    }
    let pathGone = false;
    if (this.forgettable(wp)) {
      const there = await exists(wp.path);
      if (there !== undefined) pathGone = confirmGone([wp.path], there ? new Set([wp.path]) : new Set<string>(), wp.missing).length > 0;
    } else {
      // Missed while it was forgettable, then a file came, or a generation is found again: the two looks start over.
      wp.missing.delete(wp.path);
    }
    wp.lookForGone = wp.missing.size > 0 || (settled === undefined ? wp.lookForGone : !settled);
    return { gone, pathGone, changed };
  }

  /** Whether a path other than `wp` (and than those being forgotten) lists the file `id`, or it is open. */
  private listedElsewhere(id: FileId, wp: WatchedPath, forgotten: readonly WatchedPath[]): boolean {
    if (this.host.openFiles.has(id)) return true;
    for (const other of this.host.paths.values()) {
      if (other === wp || forgotten.includes(other)) continue;
      if (other.done.has(id) || other.files().some((f) => f.id === id)) return true;
    }
    return false;
  }
}
