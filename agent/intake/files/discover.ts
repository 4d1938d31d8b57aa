import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { glob, isDynamicPattern } from 'tinyglobby';

/**
 * Expands the configured paths and globs (`/var/log/app/*.log`,
 * `/srv/**\/audit.log`) into absolute paths of regular files that exist now.
 * A literal path is only stat'ed, so the common case costs one syscall.
 */
export async function discover(patterns: readonly string[], cwd: string): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  for (const [index, pattern] of patterns.entries()) {
    const paths = isDynamicPattern(pattern)
      ? await glob([pattern], { cwd, absolute: true, onlyFiles: true, followSymbolicLinks: true, dot: false }).catch(() => [])
      : [resolve(cwd, pattern)];
    for (const path of paths) {
      if (found.has(path)) continue;
      const st = await stat(path).catch(() => undefined);
      // First pattern wins: a file matched by two entries is read once, with the first entry's settings.
      if (st?.isFile()) found.set(path, index);
    }
  }
  return found;
}
