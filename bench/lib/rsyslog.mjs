// Two private rsyslogd instances for the legacy-host comparison: each with its
// own config, pid file, work dir and loopback port under a temp dir, run in
// the foreground (-n) so the bench owns the process and never touches the
// system's rsyslog or /dev/log.
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stop } from './processes.mjs';

export const RSYSLOGD = process.env.RSYSLOGD ?? '/usr/sbin/rsyslogd';

/** rsyslog's config string quoting. */
const q = (s) => `"${String(s).replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;

/** Receiver: imtcp on 127.0.0.1:port → omfile `out`, the message only (what arrived, nothing added). */
export function receiverConfig({ workDir, port, out }) {
  return `global(workDirectory=${q(workDir)})
module(load="imtcp")
template(name="msgOnly" type="string" string="%msg%\\n")
input(type="imtcp" address="127.0.0.1" port=${q(port)} ruleset="out")
ruleset(name="out") {
  action(type="omfile" file=${q(out)} template="msgOnly")
}
`;
}

/**
 * Sender: imfile on `file` (from its beginning, state files in workDir) →
 * omfwd TCP to the receiver through a disk-assisted queue that survives a
 * restart (saveOnShutdown) and syncs its files when it spills to disk.
 */
export function senderConfig({ workDir, file, port, queue = 'da' }) {
  // 'da': memory queue that spills to disk past its high watermark (rsyslog's usual "reliable" setup);
  // 'disk': every message goes through the synced queue files (closest to MeteorZX's fsync buffer).
  const queueType = queue === 'disk' ? 'Disk' : 'LinkedList';
  return `global(workDirectory=${q(workDir)})
module(load="imfile" mode="inotify")
input(type="imfile" file=${q(file)} tag="app:" facility="local0" severity="info" freshStartTail="off" ruleset="fwd")
ruleset(name="fwd") {
  action(type="omfwd" target="127.0.0.1" port=${q(port)} protocol="tcp"
         queue.type="${queueType}" queue.filename="fwdq" queue.saveOnShutdown="on"
         queue.syncqueuefiles="on" queue.size="1000000"
         action.resumeRetryCount="-1")
}
`;
}

/** Writes `config` to `<dir>/<name>.conf` and runs `rsyslogd -n` on it; resolves once it is up (a moment to bind). */
export async function startRsyslog({ dir, name, config }) {
  await mkdir(join(dir, `${name}-work`), { recursive: true });
  const conf = join(dir, `${name}.conf`);
  await writeFile(conf, config);
  const proc = spawn(RSYSLOGD, ['-n', '-f', conf, '-i', join(dir, `${name}.pid`)], { stdio: ['ignore', 'inherit', 'inherit'] });
  await new Promise((resolve, reject) => {
    proc.once('error', (err) =>
      reject(
        err.code === 'ENOENT'
          ? new Error(`rsyslogd not found at ${RSYSLOGD}: install Debian's rsyslog (.ci/run does), or set RSYSLOGD to its path`)
          : err,
      ),
    );
    proc.once('exit', (code) => reject(new Error(`rsyslogd ${name} exited with ${code} (config ${conf})`)));
    // rsyslogd -n prints nothing when ready; an error exits at once, so a quiet second means it runs.
    setTimeout(resolve, 1000);
  });
  return { proc, pid: proc.pid, stop: () => stop(proc) };
}
