import { stat } from 'node:fs/promises';
import { isAbsolute, posix, relative, resolve } from 'node:path';
import picomatch from 'picomatch';
import { glob, isDynamicPattern } from 'tinyglobby';

/**
 * Expands the configured paths and globs (`/var/log/app/*.log`,
 * `/srv/**\/audit.log`) into absolute paths of regular files that exist now.
 * A literal path is only stat'ed, so the common case costs one syscall; a glob costs its directory
 * listings and one stat (the pattern as a literal name).
 */
export async function discover(patterns: readonly string[], cwd: string): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  for (const [index, pattern] of patterns.entries()) {
    // A file whose name holds glob characters (`app (prod).log`) is followed when named literally: as a glob,
    // `(prod)` is a group and `[1]` a class, which match other names but never this one.
    // First pattern wins: a file matched by two entries is read once, with the first entry's settings.
    if (isDynamicPattern(pattern)) {
      // Files already (onlyFiles): stat'ing each again cost an idle agent one syscall per file per discovery.
      const matched = await glob([pattern], { cwd, absolute: true, onlyFiles: true, followSymbolicLinks: true, dot: false }).catch(() => []);
      for (const path of matched) if (!found.has(path)) found.set(path, index);
    }
    const literal = resolve(cwd, pattern);
    if (!found.has(literal) && (await stat(literal).catch(() => undefined))?.isFile() === true) found.set(literal, index);
  }
  return found;
}

/**
 * Which entry of `patterns` names or matches `path` (absolute), whether or not a file is there now: the first,
 * as in discover; -1 when none does. For paths discovery cannot see (gone, or listed by an earlier
 * configuration): a path no entry matches any more is not followed.
 */
export function patternIndexer(patterns: readonly string[], cwd: string): (path: string) => number {
  const tests = patterns.map((pattern): ((path: string) => boolean) => {
    if (!isDynamicPattern(pattern)) {
      const literal = resolve(cwd, pattern);
      return (path) => path === literal;
    }
    // The pattern as discover's glob (tinyglobby) reads it: a trailing `/` dropped; one not ending in `*` also
    // matches every file under a directory it matches (expandDirectories: `/srv/*/logs`); `//`, `.` and `..`
    // segments normalized. Dot files are not matched. A path the glob followed must match here too, or after a
    // restart its rotated file's unread lines would not be read and its records never forgotten.
    let glob = pattern.endsWith('/') ? pattern.slice(0, -1) : pattern;
    if (!glob.endsWith('*')) glob += '/**';
    glob = posix.normalize(glob);
    const isMatch = picomatch(glob, { dot: false, posix: true });
    const literal = resolve(cwd, pattern);
    return (path) => path === literal || isMatch(isAbsolute(glob) ? path : relative(cwd, path));
  });
  return (path) => tests.findIndex((test) => test(path));
}
