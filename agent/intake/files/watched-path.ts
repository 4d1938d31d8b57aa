import { pathKey, type FileId, type PathRecord } from './checkpoint.js';
import type { FileSpec } from './file-spec.js';
import type { ParkedFile } from './parked-file.js';
import type { TrackedFile } from './tracked-file.js';

/**
 * A path being followed (a literal config path, or one a glob matched) and
 * the files that came from it: the one now at the path, and rotated-away
 * ones still being read to their end.
 */
export class WatchedPath {
  current: TrackedFile | undefined;
  /** The current file while it is closed (idle, or its handle given to a path that waited); never with `current`. */
  parked: ParkedFile | undefined;
  readonly draining: TrackedFile[] = [];
  /** When the path was last looked at (ms): a file that appeared beside it since then was never seen at it. */
  checkedAt = 0;
  /** Finished files whose `file!` record is kept while they may still be on disk (PathRecord.done). */
  readonly done = new Set<FileId>();
  /**
   * Of `done`, those the last look at the directory did not find, and the path itself when the last look
   * did not find it while nothing was left to read: deleted (forgotten) if the next look does not either.
   */
  readonly missing = new Set<FileId | string>();
  /**
   * Look at the directory for gone `done` files, and for the path when nothing is left to read, at each
   * discovery (set after a rotation, a truncation, a start, the last file finished), until two looks in a
   * row find the same files and no suspect: logrotate deletes the oldest generation after it has renamed
   * the others and run its postrotate script.
   */
  lookForGone = false;
  /** The identities the last look found (sorted, joined), to tell when the directory has settled. */
  lastListing: string | undefined;
  /** Clock ms of the next look when nothing prompts one (a file deleted by hand, or late). */
  nextLookAt = 0;
  /** Clock ms before which the poll passes this path by (a quiet path: FileIntake.lookLater); 0: every poll. */
  pollAt = 0;
  /** Clock ms since which every look found nothing to do; undefined while something happens. */
  quietSince: number | undefined;
  /**
   * While the path waits for a handle (intake.maxOpenFiles) with no file open at it: the last look before
   * it started waiting (ms). Rotated meanwhile, the files it missed are the generations changed since then.
   */
  waitedSince: number | undefined;
  /** The files looks saw at the path while it waited, with the most bytes seen in each: named if gone at its turn. */
  readonly seenWaiting = new Map<FileId, number>();

  constructor(
    readonly path: string,
    readonly spec: FileSpec,
  ) {}

  /** Every open file of this path, the rotated ones first (they hold the older lines). */
  files(): TrackedFile[] {
    return this.current === undefined ? [...this.draining] : [...this.draining, this.current];
  }

  /** Moves the current file to the draining list (it was renamed, deleted or replaced). */
  retire(now: number): TrackedFile | undefined {
    const file = this.current;
    if (file === undefined) return undefined;
    file.draining = true;
    file.lastGrowth = now;
    this.draining.push(file);
    this.current = undefined;
    return file;
  }

  remove(file: TrackedFile): void {
    const i = this.draining.indexOf(file);
    if (i >= 0) this.draining.splice(i, 1);
    if (this.current === file) this.current = undefined;
  }

  get idle(): boolean {
    return this.current === undefined && this.parked === undefined && this.draining.length === 0;
  }

  /** The `path!` checkpoint: written with every batch from this path, so it always matches the file records. */
  extra(now: number): { key: string; value: string } {
    const record: PathRecord = { draining: this.draining.map((f) => f.id), checkedAt: now };
    const current = this.current?.id ?? this.parked?.id;
    if (current !== undefined) record.current = current;
    if (this.done.size > 0) record.done = [...this.done];
    return { key: pathKey(this.path), value: JSON.stringify(record) };
  }
}
