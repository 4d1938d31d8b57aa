import { basename, dirname } from 'node:path';
import type { AgentBuffer, ExtraOp } from '../../buffer/types.js';
import { fileKey, parseFileRecord, parsePathRecord, pathKey, type FileId } from './checkpoint.js';
import { isGenerationName } from './rotation.js';
import { exists } from './two-looks.js';
import type { WatchedPath } from './watched-path.js';

/**
 * Records an earlier agent left that nothing names any more (docs/intake-files.md, "How long a `file!` record
 * lives"): before this version, a path was dropped from `files!paths` once nothing of it was left to read, its
 * `path!` record was kept, and before that a finished file's `file!` record was kept and listed nowhere. At
 * start the intake ties them back to a path, and the looks that forget gone paths and gone finished files
 * then delete them. Bounded: at most SWEEP_KEYS records of each kind are read per start, the `path!` ones a
 * page on from the previous start's.
 */

/** Records of each kind (`path!`, `file!`) read per start. */
export const SWEEP_KEYS = 10_000;
/** The last `path!` key the previous start read when it could not read them all: the next start reads on from it. */
export const SWEEP_CURSOR_KEY = 'files!sweepAfter';
/** Unlisted paths taken up per start (each is looked at until forgotten, like a followed path). */
export const SWEEP_PATHS = 1_000;

const PATH_PREFIX = pathKey('');
const FILE_PREFIX = fileKey('');

export interface PathRecordKeys {
  /** The `path!` keys read (at most SWEEP_KEYS): every one, or a page after the previous start's. */
  keys: string[];
  /** False when not every key was read: some record may then list a file this start cannot see listed. */
  complete: boolean;
  /** The op that moves SWEEP_CURSOR_KEY: past this page while more follow it, else back to the start. */
  cursor: ExtraOp;
  /** Whether this start reads a page of them (more than SWEEP_KEYS, or on from the previous start's). */
  paged: boolean;
}

/**
 * This start's `path!` keys: all of them when there are at most SWEEP_KEYS, else the page after the one the
 * previous start read (from the first again once a page reaches the last), so that every key is read in turn
 * however many paths that are still followed come first.
 */
export async function pathRecordKeys(buffer: AgentBuffer): Promise<PathRecordKeys> {
  let after = await buffer.getMeta(SWEEP_CURSOR_KEY);
  let read = await buffer.metaKeys(PATH_PREFIX, SWEEP_KEYS + 1, after);
  if (after !== undefined && read.length === 0) {
    // Nothing after the cursor any more (those keys were deleted): this start reads from the first.
    after = undefined;
    read = await buffer.metaKeys(PATH_PREFIX, SWEEP_KEYS + 1);
  }
  const keys = read.slice(0, SWEEP_KEYS);
  const more = read.length > SWEEP_KEYS;
  const cursor: ExtraOp = { key: SWEEP_CURSOR_KEY, value: more ? (keys.at(-1) ?? null) : null };
  return { keys, complete: after === undefined && !more, cursor, paged: after !== undefined || more };
}

/**
 * Paths with a `path!` record that `files!paths` does not list, that no longer exist, and that the
 * configuration could follow (`followable`): an earlier agent's paths gone for good. The intake follows them
 * like the paths of the index at start (they are idle, and forgotten once two looks miss them). A path that
 * exists is left alone: if a pattern matches it, discovery follows it with its record. Long paths, keyed by
 * their hash, cannot be named and are left.
 */
export async function unlistedGonePaths(
  records: PathRecordKeys,
  indexed: ReadonlySet<string>,
  followable: (path: string) => boolean,
): Promise<{ paths: string[]; cursor: ExtraOp }> {
  const out: string[] = [];
  for (const [i, key] of records.keys.entries()) {
    if (out.length >= SWEEP_PATHS) {
      // The rest of a page is the next start's: it reads on from the last key looked at here, not from the
      // page's end (a cursor past keys no start looked at would leave them until every page was read).
      // Unpaged, the next start reads them all again, and those taken up now are in files!paths.
      return { paths: out, cursor: { key: SWEEP_CURSOR_KEY, value: records.paged ? (records.keys[i - 1] ?? null) : null } };
    }
    const path = key.slice(PATH_PREFIX.length);
    if (path.startsWith('#') || indexed.has(path) || !followable(path)) continue;
    if ((await exists(path)) === false) out.push(path);
  }
  return { paths: out, cursor: records.cursor };
}

/**
 * The followed path a finished file's record belongs to: the path it was read under (`record.path`: the
 * followed path, or the rotated name it was found under), or the path whose rotated generation that name is.
 */
export function pathOfRecord(recordPath: string, paths: Iterable<string>): string | undefined {
  let best: string | undefined;
  for (const path of paths) {
    if (path === recordPath) return path;
    if (dirname(path) !== dirname(recordPath) || !isGenerationName(basename(recordPath), basename(path))) continue;
    // app.log.1.2 is a generation of app.log.1 before app.log.
    if (best === undefined || path.length > best.length) best = path;
  }
  return best;
}

/**
 * Lists in their path's `done` the `file!` records no path record lists (an earlier agent's finished files):
 * the looks then keep each while its file is beside the path and delete it once gone, or with the path when
 * the path is forgotten. Records tied to no followed path are left. Skipped when not every path record
 * could be read (one of them might list the file). Returns how many were tied.
 */
export async function tieUnlistedFiles(buffer: AgentBuffer, records: PathRecordKeys, paths: ReadonlyMap<string, WatchedPath>): Promise<number> {
  if (!records.complete) return 0;
  const listed = new Set<FileId>();
  const followedKeys = new Set<string>();
  for (const wp of paths.values()) {
    followedKeys.add(pathKey(wp.path));
    for (const f of wp.files()) listed.add(f.id);
    for (const id of wp.done) listed.add(id);
  }
  for (const key of records.keys) {
    if (followedKeys.has(key)) continue;
    const record = parsePathRecord(await buffer.getMeta(key));
    for (const id of [...(record?.current === undefined ? [] : [record.current]), ...(record?.draining ?? []), ...(record?.done ?? [])]) listed.add(id);
  }
  let tied = 0;
  for (const key of await buffer.metaKeys(FILE_PREFIX, SWEEP_KEYS)) {
    const id = key.slice(FILE_PREFIX.length);
    if (listed.has(id)) continue;
    const record = parseFileRecord(await buffer.getMeta(key));
    const path = record && pathOfRecord(record.path, paths.keys());
    const wp = path === undefined ? undefined : paths.get(path);
    if (wp === undefined) continue;
    wp.done.add(id);
    wp.lookForGone = true;
    tied += 1;
  }
  return tied;
}
