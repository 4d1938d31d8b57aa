import { readFileSync } from 'node:fs';

/** The soft RLIMIT_NOFILE of this process (Linux /proc/self/limits); 1024, the usual default, where it cannot be read. */
export function openFileLimit(read: () => string = () => readFileSync('/proc/self/limits', 'utf8')): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(read());
    if (m?.[1] === undefined) return 1024;
    return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
  } catch {
    return 1024;
  }
}
