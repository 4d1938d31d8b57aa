import { stat } from 'node:fs/promises';
import type { FileId } from './checkpoint.js';
import { holdsRecord, type ResumeContext } from './resume.js';
import { identitiesIn } from './rotation.js';

/**
 * Records of what may be gone (a finished file, a path) are deleted only
 * when two looks in a row, a discovery interval apart, both miss it: a
 * rename by logrotate during one look, or a path between logrotate's
 * rename and its create, hides it from that look only.
 */

/**
 * One look: it checked `candidates` and found `seen` among them. Returns
 * the candidates this look and the previous one both missed (gone);
 * `missing` keeps those only this look missed, for the next look to
 * confirm. Suspects the look did not check stay suspect.
 */
export function confirmGone<K>(candidates: Iterable<K>, seen: ReadonlySet<K>, missing: Set<K>): K[] {
  const gone: K[] = [];
  for (const k of new Set(candidates)) {
    if (seen.has(k)) {
      missing.delete(k);
    } else if (missing.has(k)) {
      missing.delete(k);
      gone.push(k);
    } else {
      missing.add(k);
    }
  }
  return gone;
}

/**
 * Which of the finished files `ids` are in `dir` as themselves: found by
 * identity, with a record that is still their own (a file that only got
 * the inode of a gone one does not keep the gone one's record), and the
 * directory's identities (sorted, joined: to tell when it has settled).
 * Undefined when the directory cannot be listed (EMFILE, EACCES): a failed
 * listing must not count anything as missing; a directory that is gone
 * (removed, renamed away) holds none of them. `list`: identitiesIn, or a
 * listing shared by the looks of one pass.
 */
export async function finishedInDir(
  ctx: ResumeContext,
  dir: string,
  ids: Iterable<FileId>,
  list: (dir: string) => Promise<Map<FileId, string> | undefined> = identitiesIn,
): Promise<{ seen: Set<FileId>; listing: string } | undefined> {
  const present = await list(dir);
  if (present === undefined) return undefined;
  const seen = new Set<FileId>();
  for (const id of ids) {
    const path = present.get(id);
    if (path !== undefined && (await holdsRecord(ctx, id, path))) seen.add(id);
  }
  return { seen, listing: [...present.keys()].sort().join(' ') };
}

/** Whether anything is at `path`: false only when it (or a directory above it) does not exist; undefined when stat fails otherwise (EACCES, EIO). */
export async function exists(path: string): Promise<boolean | undefined> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? false : undefined;
  }
}
