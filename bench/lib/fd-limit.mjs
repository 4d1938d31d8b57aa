// Fan-in needs one descriptor per connection on each side; the default soft
// limit (often 1024) would make a 5,000-device run measure EMFILE instead.
import { readFileSync } from 'node:fs';

/** `{soft, hard}` open-files limit of this process (Infinity for "unlimited"). */
export function openFilesLimit() {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  const num = (s) => (s === 'unlimited' ? Infinity : Number(s));
  return m ? { soft: num(m[1]), hard: num(m[2]) } : { soft: Number.NaN, hard: Number.NaN };
}

/**
 * The command that runs `argv` with at least `need` descriptors: unchanged when
 * the soft limit suffices, else under `prlimit --nofile` raised to the hard limit
 * (children inherit it, so the gateway the bench spawns gets it too).
 */
export function withOpenFiles(need, argv) {
  const { soft, hard } = openFilesLimit();
  if (soft >= need) return { argv, note: `open files ${soft}` };
  if (hard < need) throw new Error(`needs ${need} open files, hard limit is ${hard}: raise it (ulimit -Hn) or run fewer clients`);
  const n = hard === Infinity ? need : hard;
  return { argv: ['prlimit', `--nofile=${n}:${n}`, ...argv], note: `open files raised ${soft} → ${n} with prlimit` };
}
