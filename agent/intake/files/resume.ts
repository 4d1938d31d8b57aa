import { basename, dirname } from 'node:path';
import type { AuditEvent } from '../../../protocols/index.js';
import type { ExtraOp } from '../../buffer/types.js';
import { open, type FileHandle } from 'node:fs/promises';
import { fileIdOf, fileKey, fingerprint, fingerprintMatches, parseFileRecord, type FileId, type FileRecord, type PathRecord } from './checkpoint.js';

// File mtimes come from a coarse kernel clock: a file written just after a commit can look a little older.
const MTIME_SLACK_MS = 1000;
// Looks for a copytruncate copy while the directory changes under them (openTruncatedCopy).
const COPY_ATTEMPTS = 3;
import { intakeErrorEvent } from '../intake-error.js';
import { findByIdentity, findCopy, isGenerationName, rotatedSiblings } from './rotation.js';
import { TrackedFile } from './tracked-file.js';
import type { WatchedPath } from './watched-path.js';

/** The identities the intake follows: open, or closed while idle (parked-file.ts). */
export interface FollowedIds {
  has(id: FileId): boolean;
  keys(): Iterable<FileId>;
}

/** What resuming needs from the intake. */
export interface ResumeContext {
  intake: string;
  getMeta(key: string): Promise<string | undefined>;
  /** Identities already followed, open or parked (a file is read through one handle only). */
  open: FollowedIds;
  now(): number;
  /** Queues an event to go with the next commit (a loss that must not be silent). */
  notice(event: AuditEvent): void;
  /** How opening the file at a followed path went: the error (EACCES, EMFILE…), or undefined once it opened. */
  opening?(path: string, err: (Error & { code?: string }) | undefined): void;
}

/**
 * The mtime (ms) from which a file counts as changed since `since`. A clock now behind `since` went back
 * after it (a fast clock corrected, often while the agent was down): a file written since then can carry
 * an older mtime, so mtimes tell nothing, and every file counts. Generations the agent saw all have a
 * record of their own.
 */
function changedAfter(ctx: ResumeContext, since: number): number {
  return ctx.now() < since ? Number.NEGATIVE_INFINITY : since - MTIME_SLACK_MS;
}

async function fileRecord(ctx: ResumeContext, id: FileId): Promise<FileRecord | undefined> {
  return parseFileRecord(await ctx.getMeta(fileKey(id)));
}

/**
 * Whether the file open as `fh` (identity `id`, `size` bytes) is the one its
 * checkpoint was written for. A record alone is not enough: a record may
 * outlive its file for a while (until a look at the directory finds it
 * gone) and filesystems reuse inode numbers, so it may name an earlier file
 * that had this identity.
 */
async function checkpointed(ctx: ResumeContext, id: FileId, fh: FileHandle, size: number): Promise<boolean> {
  const record = await fileRecord(ctx, id);
  return record !== undefined && size >= record.offset && (await fingerprintMatches(fh, record.fp));
}

/**
 * Whether the file at `path` is the one the record of `id` was written for:
 * it has that identity and the record is its own (see checkpointed), not
 * that of an earlier file whose inode it got.
 */
export async function holdsRecord(ctx: ResumeContext, id: FileId, path: string): Promise<boolean> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (fh === undefined) return false;
  try {
    const st = await fh.stat({ bigint: true });
    return fileIdOf(st) === id && (await checkpointed(ctx, id, fh, Number(st.size)));
  } finally {
    await fh.close();
  }
}

/**
 * Opens the file now at `wp.path` and decides where to read from: its own
 * checkpoint when it is the file we read before (same identity, same first
 * bytes); 0 when it was truncated meanwhile (after draining the copy
 * copytruncate left, if found) or when it follows a rotation; `startAt` for
 * a file never seen, on the first scan only (a file appearing later is new
 * and read whole). With `since` (when the path was last looked at, ms), a
 * truncation also adopts the generations no look saw (adoptRecentSiblings).
 */
export async function openCurrent(ctx: ResumeContext, wp: WatchedPath, hadPath: boolean, firstScan: boolean, since?: number): Promise<TrackedFile | undefined> {
  const file = await TrackedFile.open(wp.path, wp.spec.maxLineBytes, ctx.now()).catch((err: Error) => void ctx.opening?.(wp.path, err));
  if (file === undefined) return undefined;
  ctx.opening?.(wp.path, undefined);
  if (ctx.open.has(file.id)) {
    // Already followed under another name (a glob matched a rotated file we are draining).
    await file.close();
    return undefined;
  }
  const record = await fileRecord(ctx, file.id);
  if (record !== undefined) {
    if (file.size >= record.offset && (await fingerprintMatches(file.handle, record.fp))) {
      file.seek(record.offset);
      return file;
    }
    const known = [record, ...wp.files().map((f) => f.record(f.offset))];
    const copy = await openTruncatedCopy(ctx, wp, record, new Set([...ctx.open.keys(), ...wp.files().map((f) => f.id), file.id]));
    if (copy !== undefined) wp.draining.push(copy);
    // A second copytruncate before this look left a generation in between; see FileIntake.truncated.
    if (since !== undefined) await adoptRecentSiblings(ctx, wp, known, since);
    file.seek(0);
    return file;
  }
  if (hadPath || !firstScan || wp.spec.startAt === 'beginning') file.seek(0);
  else file.seek(file.size);
  return file;
}

/**
 * Reopens the rotated-away identities a path record lists (renamed to
 * app.log.1 while the agent was down, or still being drained when it
 * stopped), found by inode next to the path under one of its generation
 * names, each at its checkpoint.
 */
export async function reopenRotated(ctx: ResumeContext, wp: WatchedPath, record: PathRecord, currentId: FileId | undefined): Promise<void> {
  const ids = [...(record.current === undefined ? [] : [record.current]), ...record.draining];
  for (const id of new Set(ids)) {
    if (id === currentId || ctx.open.has(id) || wp.draining.some((f) => f.id === id)) continue;
    const saved = await fileRecord(ctx, id);
    let found = await findByIdentity(saved === undefined ? [dirname(wp.path)] : [dirname(wp.path), dirname(saved.path)], id);
    // Under a name that is no generation of the path, the inode is another file's: the listed file was
    // deleted while the agent was down and the filesystem gave its inode to a file created since (ext4
    // does so at once). Taken for it, that file was read from 0 (unchecked when the listed file had no
    // checkpoint, else as "truncated then renamed") as this path's rotated file. The listed file is gone.
    if (found !== undefined && !isGenerationName(basename(found), basename(wp.path))) found = undefined;
    const file = found === undefined ? undefined : await TrackedFile.open(found, wp.spec.maxLineBytes, ctx.now()).catch(() => undefined);
    if (file !== undefined && file.id === id && saved === undefined) {
      // Listed but never checkpointed: nothing of it was ever appended (every batch writes the checkpoint).
      file.seek(0);
      file.draining = true;
      wp.draining.push(file);
      continue;
    }
    if (file !== undefined && file.id === id && saved !== undefined) {
      if (file.size >= saved.offset && (await fingerprintMatches(file.handle, saved.fp))) {
        file.seek(saved.offset);
      } else {
        // Truncated (copytruncate) and then renamed while the agent was away: its old lines are in the copy.
        const exclude = new Set([...ctx.open.keys(), ...wp.files().map((f) => f.id), file.id]);
        const copy = await openTruncatedCopy(ctx, wp, saved, exclude);
        if (copy !== undefined) wp.draining.push(copy);
        file.seek(0);
      }
      file.draining = true;
      wp.draining.push(file);
      continue;
    }
    await file?.close();
    if (saved !== undefined && saved.size > saved.offset) {
      ctx.notice(
        intakeErrorEvent({
          intake: ctx.intake,
          file: saved.path,
          offset: saved.offset,
          bytes: saved.size - saved.offset,
          reason: 'a rotated file with unread lines is gone (deleted, compressed or moved out of its directory) before it was read to its end',
        }),
      );
    }
    // Nothing more will be read from it: finished, its record goes once looks confirm it gone (or with the path).
    wp.done.add(id);
  }
}

/**
 * After a truncation (copytruncate), the lines between our checkpoint and
 * the truncation live only in the copy logrotate made: find it by its first
 * bytes and read it from our checkpoint. Returns it opened as draining; when
 * there is none but lines were known unread, queues a loss notice.
 */
export async function openTruncatedCopy(
  ctx: ResumeContext,
  wp: WatchedPath,
  record: Pick<FileRecord, 'offset' | 'size' | 'fp' | 'path'>,
  exclude: ReadonlySet<FileId>,
): Promise<TrackedFile | undefined> {
  for (let attempt = 0; attempt < COPY_ATTEMPTS; attempt += 1) {
    // Also at offset 0: the fingerprint taken when the file was opened names its first bytes all the same.
    const copyPath = await findCopy(wp.path, record.fp, record.offset + 1, exclude);
    if (copyPath === undefined) break;
    const copy = await TrackedFile.open(copyPath, wp.spec.maxLineBytes, ctx.now()).catch(() => undefined);
    if (copy === undefined) continue;
    // findCopy checked the file at that name; a second copytruncate may have renamed it away (app.log.1 to
    // app.log.2) and put its own copy there before this open. Taken for the first copy, the second one was
    // read from the first one's offset (nothing), then passed over as read: its lines lost without a notice.
    if (!exclude.has(copy.id) && copy.size > record.offset && (await fingerprintMatches(copy.handle, record.fp))) {
      copy.seek(record.offset);
      copy.draining = true;
      // A copy never grows: it is closed as soon as it is read to its end.
      copy.complete = true;
      return copy;
    }
    await copy.close();
  }
  if (record.size > record.offset) {
    ctx.notice(
      intakeErrorEvent({
        intake: ctx.intake,
        file: record.path,
        offset: record.offset,
        bytes: record.size - record.offset,
        reason: 'the file was truncated before these bytes were read, and no rotated copy of it was found',
      }),
    );
  }
  return undefined;
}

/**
 * Rotated files the agent never saw: a rotation just before a crash, then
 * another one while it was down (rename then copytruncate) leaves a
 * generation whose identity no checkpoint names. At start, a rotated
 * generation of the path (see rotatedSiblings) with no checkpoint of its own
 * that changed after the path record was last written is read: from the
 * offset of a known file it is a copy of (same first bytes), else from its
 * start.
 */
export async function adoptUnseenRotations(ctx: ResumeContext, wp: WatchedPath, record: PathRecord): Promise<void> {
  if (record.checkedAt === undefined) return;
  const known: FileRecord[] = [];
  for (const id of new Set([...(record.current === undefined ? [] : [record.current]), ...record.draining])) {
    const saved = await fileRecord(ctx, id);
    if (saved !== undefined) known.push(saved);
  }
  await adoptRecentSiblings(ctx, wp, known, record.checkedAt);
}

/**
 * Opens, as rotated files of `wp` to read to their end, its rotated
 * generations (rotatedSiblings) that no checkpoint is of (see
 * checkpointed), that no file open now is, and that changed since `since`
 * (ms): generations the agent never saw at the path. Each is read from the offset of a `known` file it is a
 * copy of (same first bytes), else from its start. Returns them.
 */
export async function adoptRecentSiblings(ctx: ResumeContext, wp: WatchedPath, known: readonly FileRecord[], since: number): Promise<TrackedFile[]> {
  const adopted: TrackedFile[] = [];
  const taken = new Set([...ctx.open.keys(), ...wp.files().map((f) => f.id)]);
  const after = changedAfter(ctx, since);
  for (const sibling of await rotatedSiblings(wp.path)) {
    if (taken.has(sibling.id) || sibling.mtimeMs < after) continue;
    const file = await TrackedFile.open(sibling.path, wp.spec.maxLineBytes, ctx.now()).catch(() => undefined);
    if (file === undefined || taken.has(file.id) || (await checkpointed(ctx, file.id, file.handle, file.size))) {
      await file?.close();
      continue;
    }
    let from = 0;
    for (const k of known) {
      if (k.offset > 0 && k.offset <= file.size && (await fingerprintMatches(file.handle, k.fp))) from = Math.max(from, k.offset);
    }
    file.seek(from);
    file.draining = true;
    wp.draining.push(file);
    taken.add(file.id);
    adopted.push(file);
  }
  return adopted;
}

/**
 * Checkpoints at their end the rotated generations already next to a path
 * followed for the first time: they predate the agent and are not read, and
 * with a checkpoint they are never taken for generations it missed. Returns
 * the records to write, and every sibling not open that has a record of its
 * own (written now or before): finished files, whose records are kept only
 * while they are on disk (WatchedPath.done). With `since` (at a rotation or
 * truncation seen live: the last look, ms), a generation with no record of
 * its own that changed since then is left alone: no look saw it at the path,
 * and it is for adoptRecentSiblings to read, not to be checkpointed unread.
 */
export async function markSiblingsSeen(ctx: ResumeContext, path: string, since?: number): Promise<{ ops: ExtraOp[]; finished: FileId[] }> {
  const ops: ExtraOp[] = [];
  const finished: FileId[] = [];
  const after = since === undefined ? Number.POSITIVE_INFINITY : changedAfter(ctx, since);
  for (const sibling of await rotatedSiblings(path)) {
    if (ctx.open.has(sibling.id)) continue;
    const fh = await open(sibling.path, 'r').catch(() => undefined);
    if (fh === undefined) continue;
    try {
      // A record of an earlier file with this (reused) inode is replaced, so it cannot hide this one later.
      if (await checkpointed(ctx, sibling.id, fh, sibling.size)) {
        finished.push(sibling.id);
        continue;
      }
      if (sibling.mtimeMs >= after) continue;
      finished.push(sibling.id);
      const record: FileRecord = { path: sibling.path, offset: sibling.size, size: sibling.size, fp: await fingerprint(fh, sibling.size) };
      ops.push({ key: fileKey(sibling.id), value: JSON.stringify(record) });
    } finally {
      await fh.close();
    }
  }
  return { ops, finished };
}
