import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/**
 * `mkdir -p` that always ends. Node's own `mkdir(dir, { recursive: true })`
 * takes ENOENT to mean "the parent is missing", makes the parent (EEXIST:
 * fine) and tries again, for ever: under /proc, where mkdir answers ENOENT
 * although the parent exists, the call never settles and a thread-pool
 * thread spins at 100% CPU (a `dataDir: /proc/...` typo hung the agent at
 * start, deaf to SIGTERM). Here the missing folders are found first, then
 * made one by one, each tried once: an error is reported, not retried.
 */
export async function makeDir(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let at = resolve(dir); ; ) {
    try {
      await stat(at);
      break; // exists: a file in the way fails below with ENOTDIR or EEXIST, as mkdir -p does
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    missing.push(at);
    const parent = dirname(at);
    if (parent === at) break;
    at = parent;
  }
  for (const folder of missing.reverse()) {
    try {
      await mkdir(folder);
    } catch (err) {
      // Made meanwhile by someone else: what we wanted.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  const made = await stat(dir);
  if (!made.isDirectory()) {
    throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${dir}'`), { code: 'ENOTDIR', path: dir, syscall: 'mkdir' });
  }
}
