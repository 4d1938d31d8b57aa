import { open, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileIdOf, fingerprintMatches, type FileId, type Fingerprint } from './checkpoint.js';

/**
 * Finding where a followed file went when the agent did not see it happen
 * (it was down, or the truncation came between two polls). Rotated files
 * are looked for in the directory of the watched path, where logrotate puts
 * them unless `olddir` says otherwise (docs/intake-files.md).
 */

// Compressed generations cannot be read as text; they are never the file we want.
const COMPRESSED = /\.(gz|bz2|xz|zst|lz4|z|zip)$/i;

/**
 * Whether `name` can be a rotated generation of the file named `base`: the
 * name, then `.`, `-` or `_` (app.log.1, app.log-20260101,
 * app.log-2026010112.backup), not compressed. app.logger.txt is another file.
 */
export function isGenerationName(name: string, base: string): boolean {
  if (name.length <= base.length || !name.startsWith(base) || COMPRESSED.test(name)) return false;
  const sep = name.charCodeAt(base.length);
  return sep === 0x2e || sep === 0x2d || sep === 0x5f;
}

/** The path of the regular file with identity `id` in one of `dirs`, if any. */
export async function findByIdentity(dirs: readonly string[], id: FileId): Promise<string | undefined> {
  for (const dir of new Set(dirs)) {
    for (const name of await listDir(dir)) {
      const path = join(dir, name);
      const st = await stat(path, { bigint: true }).catch(() => undefined);
      if (st?.isFile() && fileIdOf(st) === id) return path;
    }
  }
  return undefined;
}

/**
 * The copy copytruncate made of `path` before truncating it: a generation
 * name (app.log.1, app.log-20260101; see isGenerationName), other than
 * the identities in `exclude`, at least `minSize` bytes long, that starts
 * with the bytes `fp` was taken from. Newest first when several match.
 */
export async function findCopy(path: string, fp: Fingerprint, minSize: number, exclude: ReadonlySet<FileId>): Promise<string | undefined> {
  // An empty fingerprint matches anything: no way to know which file is the copy.
  if (fp.len === 0) return undefined;
  const dir = dirname(path);
  const base = basename(path);
  const candidates: { path: string; mtime: number }[] = [];
  for (const name of await listDir(dir)) {
    if (!isGenerationName(name, base)) continue;
    const candidate = join(dir, name);
    const st = await stat(candidate, { bigint: true }).catch(() => undefined);
    if (!st?.isFile() || Number(st.size) < minSize || exclude.has(fileIdOf(st))) continue;
    candidates.push({ path: candidate, mtime: Number(st.mtimeMs) });
  }
  candidates.sort((a, b) => b.mtime - a.mtime);
  for (const c of candidates) {
    const fh = await open(c.path, 'r').catch(() => undefined);
    if (fh === undefined) continue;
    try {
      if (await fingerprintMatches(fh, fp)) return c.path;
    } finally {
      await fh.close();
    }
  }
  return undefined;
}

export interface Sibling {
  path: string;
  id: FileId;
  size: number;
  mtimeMs: number;
}

/** Rotated generations of `path` next to it (see isGenerationName), regular files. */
export async function rotatedSiblings(path: string): Promise<Sibling[]> {
  const dir = dirname(path);
  const base = basename(path);
  const out: Sibling[] = [];
  for (const name of await listDir(dir)) {
    if (!isGenerationName(name, base)) continue;
    const candidate = join(dir, name);
    const st = await stat(candidate, { bigint: true }).catch(() => undefined);
    if (st?.isFile()) out.push({ path: candidate, id: fileIdOf(st), size: Number(st.size), mtimeMs: Number(st.mtimeMs) });
  }
  return out;
}

/**
 * The regular files in `dir` now, by identity: none when the directory is
 * gone (removed, renamed away); undefined when it cannot be listed (EMFILE,
 * EACCES): an empty listing would say every file is gone.
 */
export async function identitiesIn(dir: string): Promise<Map<FileId, string> | undefined> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Removed (or renamed away): nothing is in it. Unreadable otherwise (EACCES, EMFILE): not known.
    return code === 'ENOENT' || code === 'ENOTDIR' ? new Map() : undefined;
  }
  const out = new Map<FileId, string>();
  for (const name of names) {
    const path = join(dir, name);
    const st = await stat(path, { bigint: true }).catch(() => undefined);
    if (st?.isFile()) out.set(fileIdOf(st), path);
  }
  return out;
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}
