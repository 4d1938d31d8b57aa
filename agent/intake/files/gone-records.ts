import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { ExtraOp } from '../../buffer/types.js';
import { fileKey, pathKey, type FileId } from './checkpoint.js';
import type { PathIndex } from './path-index.js';
import type { ResumeContext } from './resume.js';
import type { TrackedFile } from './tracked-file.js';
import { confirmGone, exists, finishedInDir } from './two-looks.js';
import type { WatchedPath } from './watched-path.js';

/** Between looks for gone finished files when no rotation prompts one, ms. */
const GONE_LOOK_MS = 60_000;

/** What the looks need from the file intake. */
export interface GoneRecordsHost {
  /** The followed paths, idle ones included; a forgotten path is removed from it. */
  readonly paths: Map<string, WatchedPath>;
  readonly openFiles: ReadonlyMap<FileId, TrackedFile>;
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
 * path with nothing left to read that two looks no longer find — one a glob matched, not one the
 * configuration names — is forgotten with the records of all its finished generations.
 */
export class GoneRecords {
  constructor(private readonly host: GoneRecordsHost) {}

  /** A path with nothing left to read that no configured path names literally: once gone, it is forgotten. */
  forgettable(wp: WatchedPath): boolean {
    return wp.idle && !this.host.literals.has(wp.path);
  }

  /**
   * Looks at every path due for a look (see look) and writes, in one batch, what the looks found: the
   * deleted records of finished files gone from the directory, with the path records that stop listing
   * them; and for each path forgotten, the deletion of its `path!` record, of its `files!paths` entry and
   * of the records of all its finished generations, gone or still on disk (with no record of the path,
   * such a generation is checkpointed as seen, not read, if the path comes back).
   */
  async lookAll(): Promise<void> {
    const { host } = this;
    const due = [...host.paths.values()].filter((wp) => (wp.done.size > 0 || this.forgettable(wp)) && (wp.lookForGone || host.now() >= wp.nextLookAt));
    const written: WatchedPath[] = [];
    const forgotten: WatchedPath[] = [];
    const deleted = new Map<WatchedPath, FileId[]>();
    const undo: (() => void)[] = [];
    for (const wp of due) {
      const { gone, pathGone, changed } = await this.look(wp);
      if (pathGone) {
        const done = [...wp.done];
        deleted.set(wp, [...gone, ...done]);
        forgotten.push(wp);
        wp.done.clear();
        host.index.delete(wp.path);
        undo.push(() => {
          for (const id of [...gone, ...done]) wp.done.add(id);
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
  private async look(wp: WatchedPath): Promise<{ gone: FileId[]; pathGone: boolean; changed: boolean }> {
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
    const candidates: string[] = [];
    const seen = new Set<string>();
    let settled: boolean | undefined = true;
    if (wp.done.size > 0) {
      const found = await finishedInDir(host.resume, dirname(wp.path), wp.done);
      // Not listed, not looked: a failed listing must not count anything as missing.
      settled = found && found.listing === wp.lastListing;
      if (found !== undefined) {
        candidates.push(...wp.done);
        for (const id of found.seen) seen.add(id);
        wp.lastListing = found.listing;
      }
    }
    if (this.forgettable(wp)) {
      const there = await exists(wp.path);
      if (there !== undefined) candidates.push(wp.path);
      if (there === true) seen.add(wp.path);
    }
    // Identities (`<dev>:<ino>`) and the path (absolute) share `missing`: they never look alike.
    const gone = confirmGone(candidates, seen, wp.missing);
    const pathGone = gone.includes(wp.path);
    const goneIds = gone.filter((k) => k !== wp.path);
    for (const id of goneIds) wp.done.delete(id);
    wp.lookForGone = wp.missing.size > 0 || (settled === undefined ? wp.lookForGone : !settled);
    return { gone: goneIds, pathGone, changed };
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
