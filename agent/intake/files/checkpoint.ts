import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';

/**
 * What the file intake keeps in the buffer (`extra` keys, written in the
 * same atomic batch as the events they account for, DESIGN §3.1):
 *
 * - `file!<dev>:<ino>` → FileRecord: how far that file (by identity, not
 *   name) has been turned into durable events.
 * - `path!<path>` → PathRecord: which identity the watched path had, and
 *   which rotated-away identities still had lines to read, so a restart
 *   finds `app.log.1` (by inode) after a rename it did not see; and which
 *   finished ones keep their `file!` record while they may still be on disk.
 *
 * A `file!` record lives as long as its file may matter: while the file is
 * followed, and after it is finished while it is still beside the path (a
 * generation with no record would be taken for one never seen, and read
 * again). It is deleted once its finished file is gone: at once when the
 * file was already unlinked when finished, else when two looks at the
 * directory no longer find it, always in the same batch as the path record
 * that stops listing it; or with the path record itself, when a path that
 * has nothing left to read and that the configuration does not name is
 * gone on two looks (the path is forgotten, see gone-records.ts).
 *
 * Identity is dev+inode; the fingerprint (a hash of the file's first bytes)
 * tells a reused inode, or a file truncated and rewritten past our offset
 * (copytruncate), from the file we read.
 */

/** Bytes of a file's start that make its fingerprint. */
export const FINGERPRINT_BYTES = 1024;

export interface Fingerprint {
  /** Bytes hashed (< FINGERPRINT_BYTES while the file was shorter). */
  len: number;
  /** sha256 hex of those bytes. */
  sha: string;
}

export interface FileRecord {
  /** Path the file had when last read (for logs; the identity is the key). */
  path: string;
  /** Next byte to read: every line before it is durable. */
  offset: number;
  /** File size last seen (bytes known to exist), to tell whether a vanished file had unread lines. */
  size: number;
  fp: Fingerprint;
}

export interface PathRecord {
  /** Identity at the path, `<dev>:<ino>`; absent while the path does not exist. */
  current?: string;
  /** Rotated-away identities with lines still to read. */
  draining: string[];
  /** Finished identities (read to their end, closed) whose `file!` record is kept while they may be on disk. */
  done?: string[];
  /** Clock ms of the commit that wrote this record: rotated files changed after it may hold lines never seen. */
  checkedAt?: number;
}

export type FileId = string;

export function fileIdOf(stats: Pick<BigIntStats, 'dev' | 'ino'>): FileId {
  return `${stats.dev}:${stats.ino}`;
}

export function fileKey(id: FileId): string {
  return `file!${id}`;
}

// Buffer extra keys are at most 256 characters: long paths are keyed by their hash.
export function pathKey(path: string): string {
  return path.length <= 240 ? `path!${path}` : `path!#${createHash('sha256').update(path).digest('hex')}`;
}

export const EMPTY_FINGERPRINT: Fingerprint = Object.freeze({ len: 0, sha: sha256(Buffer.alloc(0)) });

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Fingerprint of the first min(upTo, FINGERPRINT_BYTES) bytes of an open file. */
export async function fingerprint(fh: FileHandle, upTo: number): Promise<Fingerprint> {
  const want = Math.max(0, Math.min(upTo, FINGERPRINT_BYTES));
  if (want === 0) return EMPTY_FINGERPRINT;
  const buf = Buffer.alloc(want);
  const { bytesRead } = await fh.read(buf, 0, want, 0);
  return { len: bytesRead, sha: sha256(buf.subarray(0, bytesRead)) };
}

/** True when the open file still starts with the bytes `fp` was taken from. */
export async function fingerprintMatches(fh: FileHandle, fp: Fingerprint): Promise<boolean> {
  if (fp.len === 0) return true;
  const now = await fingerprint(fh, fp.len);
  return now.len === fp.len && now.sha === fp.sha;
}

/**
 * One read of the file's start: undefined when it no longer starts with the
 * bytes of `fp`; otherwise the fingerprint, extended to up to `size` bytes
 * (the same read checks and extends, so a rewrite cannot slip in between).
 */
export async function checkFingerprint(fh: FileHandle, fp: Fingerprint, size: number): Promise<Fingerprint | undefined> {
  const want = Math.max(fp.len, Math.min(size, FINGERPRINT_BYTES));
  if (want === 0) return fp;
  const buf = Buffer.alloc(want);
  const { bytesRead } = await fh.read(buf, 0, want, 0);
  if (bytesRead < fp.len || sha256(buf.subarray(0, fp.len)) !== fp.sha) return undefined;
  return bytesRead === fp.len ? fp : { len: bytesRead, sha: sha256(buf.subarray(0, bytesRead)) };
}

export function parseFileRecord(raw: string | undefined): FileRecord | undefined {
  if (raw === undefined) return undefined;
  try {
    const v = JSON.parse(raw) as Partial<FileRecord>;
    if (typeof v.offset !== 'number' || typeof v.path !== 'string' || typeof v.fp?.len !== 'number' || typeof v.fp.sha !== 'string') return undefined;
    return { path: v.path, offset: v.offset, size: typeof v.size === 'number' ? v.size : v.offset, fp: { len: v.fp.len, sha: v.fp.sha } };
  } catch {
    return undefined;
  }
}

export function parsePathRecord(raw: string | undefined): PathRecord | undefined {
  if (raw === undefined) return undefined;
  try {
    const v = JSON.parse(raw) as Partial<PathRecord>;
    const draining = Array.isArray(v.draining) ? v.draining.filter((d): d is string => typeof d === 'string') : [];
    const out: PathRecord = { draining };
    if (typeof v.current === 'string') out.current = v.current;
    if (Array.isArray(v.done)) out.done = v.done.filter((d): d is string => typeof d === 'string');
    if (typeof v.checkedAt === 'number') out.checkedAt = v.checkedAt;
    return out;
  } catch {
    return undefined;
  }
}
