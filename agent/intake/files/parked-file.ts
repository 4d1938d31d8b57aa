import type { BigIntStats } from 'node:fs';
import { basename, dirname } from 'node:path';
import { intakeErrorEvent } from '../intake-error.js';
import { fileIdOf, type FileId, type Fingerprint } from './checkpoint.js';
import { openTruncatedCopy, type ResumeContext } from './resume.js';
import { findByIdentity, isGenerationName } from './rotation.js';
import { statKey, TrackedFile } from './tracked-file.js';
import type { WatchedPath } from './watched-path.js';

/**
 * The current file of a followed path, closed (`closeInactive`, or to give its handle to a path waiting
 * for one, intake.maxOpenFiles) with everything before `offset` durable and nothing after it on disk
 * when it was closed. What a look needs to tell whether it changed, and a reopen to go on as if it had
 * stayed open: a rotation, a truncation or a deletion while it was closed is handled as when it is open.
 */
export interface ParkedFile {
  id: FileId;
  /** Checkpoint: where reading goes on. */
  offset: number;
  /** Bytes known to exist (TrackedFile.record, raised by looks that saw it grow while it waited for a handle): what a gone file had unread. */
  size: number;
  fp: Fingerprint;
  emptySince: number | undefined;
  /** Size, mtime and ctime (ns) when it was closed: a look that finds them at the path has nothing to do. */
  stat: string;
}

/**
 * What to park of `file`, whose handle's stat is `st`; undefined when it must stay open: bytes on disk
 * it has not read (a look would find the path's stat unchanged and never read them), or unlinked (read
 * to its end through the handle, as a deleted file is).
 */
export function parkable(file: TrackedFile, st: BigIntStats): ParkedFile | undefined {
  if (!file.atEof || Number(st.size) !== file.readPos || st.nlink === 0n || fileIdOf(st) !== file.id) return undefined;
  const record = file.record(file.offset);
  return { id: file.id, offset: file.offset, size: record.size, fp: file.fp, emptySince: file.emptySince, stat: statKey(st) };
}

/** Whether a look's stat of the path (`st`) shows the parked file as it was closed. */
export function parkedUnchanged(parked: ParkedFile, st: BigIntStats | undefined): boolean {
  return st !== undefined && fileIdOf(st) === parked.id && statKey(st) === parked.stat;
}

/**
 * Opens a parked file again where it stopped: at the path when it is still there (a truncation is then
 * found by the look that follows, as for a file that stayed open), else by inode beside the path (renamed
 * while closed: logrotate `create`), to be read to its end. Undefined when it is in neither place (deleted
 * or moved away while closed), or when what has its inode beside the path is another file; 'retry' when
 * the path changed between the look and the open.
 */
export async function reopenParked(ctx: ResumeContext, wp: WatchedPath, parked: ParkedFile, atPath: boolean): Promise<TrackedFile | 'retry' | undefined> {
  const where = atPath ? wp.path : await findByIdentity([dirname(wp.path)], parked.id);
  if (where === undefined) return undefined;
  let file: TrackedFile;
  try {
    file = await TrackedFile.open(where, wp.spec.maxLineBytes, ctx.now());
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'retry';
    throw err;
  }
  if (file.id !== parked.id) {
    await file.close();
    return 'retry';
  }
  file.seek(parked.offset);
  file.size = parked.size;
  file.fp = parked.fp;
  file.emptySince = parked.emptySince;
  if (!atPath && !(await file.unchanged((await file.stat()).size))) {
    // Other bytes under a name that is no generation of the path: not the closed file, but one that got its
    // inode after it was deleted (ext4 reuses one at once). Taken for it, that file was read from 0 as this
    // path's rotated file, with a "truncated" notice for bytes that were not lost. The closed file is gone.
    if (!isGenerationName(basename(where), basename(wp.path))) {
      await file.close();
      return undefined;
    }
    // Truncated, then renamed, while closed: its old lines are in the copy copytruncate made (as at a restart, reopenRotated).
    const copy = await openTruncatedCopy(ctx, wp, file.record(file.offset), new Set([...ctx.open.keys(), ...wp.files().map((f) => f.id), file.id]));
    if (copy !== undefined) wp.draining.push(copy);
    file.seek(0);
    file.size = (await file.stat()).size;
    await file.resetFingerprint(ctx.now());
  }
  return file;
}

/**
 * A parked file found neither at its path nor beside it: deleted (or moved away) while closed. It is
 * finished as a deleted open file is: its record is listed in `done`, and deleted once the looks confirm
 * it gone (with the path, for a path a glob matched). Bytes it was known to hold past its checkpoint (a
 * last line without its newline) cannot be read any more: a notice says so.
 */
export function finishGoneParked(ctx: ResumeContext, wp: WatchedPath, parked: ParkedFile, path: string): void {
  if (parked.size > parked.offset) {
    ctx.notice(
      intakeErrorEvent({
        intake: ctx.intake,
        file: path,
        offset: parked.offset,
        bytes: parked.size - parked.offset,
        reason: 'the file was deleted (or moved out of its directory) while closed for inactivity, before these bytes were read',
      }),
    );
  }
  wp.done.add(parked.id);
  wp.lookForGone = true;
  wp.lastListing = undefined;
}
