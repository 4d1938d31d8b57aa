// CPU seconds and RSS of any process (ours, rsyslogd, Mosquitto) from /proc,
// so peers are measured the same way as our own processes.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

const TICKS = 100; // USER_HZ: /proc/<pid>/stat counts CPU in 1/100 s on Linux

/**
 * `{cpuSeconds, rssMB, anonMB}` of `pid` now (user + system CPU, children
 * excluded); undefined once it exited. `anonMB` (RssAnon) leaves out the
 * executable's and libraries' file pages — ≈44 MB of the node binary, shared
 * by every Node process — so it is the memory the process itself costs.
 */
export async function procSample(pid) {
  try {
    const [stat, status] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/status`, 'utf8')]);
    return { cpuSeconds: cpuFromStat(stat), rssMB: rssFromStatus(status), anonMB: rssFromStatus(status, 'RssAnon') };
  } catch {
    return undefined;
  }
}

/** utime + stime (fields 14 and 15) in seconds; the command name may hold spaces, so count from the last ')'. */
export function cpuFromStat(stat) {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so utime (14) is fields[11] and stime (15) fields[12].
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

/**
 * `{rssMB, anonMB}` (VmRSS, RssAnon) of `pid`, or of this process with
 * 'self', from one synchronous read of its status: for samplers on a short
 * timer. NaN for both once the process exited.
 */
export function memorySync(pid = 'self') {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return { rssMB: rssFromStatus(status), anonMB: rssFromStatus(status, 'RssAnon') };
  } catch {
    return { rssMB: Number.NaN, anonMB: Number.NaN };
  }
}

/** VmRSS (or another `field` in kB, e.g. RssAnon) in MB (MiB) from /proc/<pid>/status. */
export function rssFromStatus(status, field = 'VmRSS') {
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status);
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/**
 * Samples `pid` every `everyMs` until stopped; `stop()` resolves to
 * `{maxRssMB, maxAnonMB, lastRssMB, cpuSeconds}` where cpuSeconds is the CPU used since start.
 */
export function sampleProcess(pid, everyMs = 100) {
  let first;
  let last;
  let maxRssMB = 0;
  let maxAnonMB = 0;
  const tick = async () => {
    const s = await procSample(pid);
    if (s === undefined) return;
    first ??= s;
    last = s;
    maxRssMB = Math.max(maxRssMB, s.rssMB);
    maxAnonMB = Math.max(maxAnonMB, s.anonMB);
  };
  const started = tick();
  const timer = setInterval(tick, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      await started;
      await tick();
      return { maxRssMB, maxAnonMB, lastRssMB: last?.rssMB ?? Number.NaN, cpuSeconds: last && first ? last.cpuSeconds - first.cpuSeconds : Number.NaN };
    },
  };
}
