// What the numbers were measured on, recorded with every result file.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';

/** nproc, CPU model, RAM, the temp dir's filesystem (where every bench writes), load, Node. */
export function machineInfo() {
  return {
    nproc: cpus().length,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(safeRead('/proc/cpuinfo'))?.[1] ?? cpus()[0]?.model ?? 'unknown',
    memGB: Number((totalmem() / 1024 ** 3).toFixed(1)),
    disk: safeExec('df', ['-h', '--output=source,fstype,size,avail,target', tmpdir()]).trim().split('\n').pop() ?? 'unknown',
    kernel: safeRead('/proc/sys/kernel/osrelease').trim(),
    node: process.version,
    loadavg: loadavg().map((l) => Number(l.toFixed(2))),
    rsyslogd: safeExec('/usr/sbin/rsyslogd', ['-v']).split('\n')[0]?.trim() || 'not installed',
    mosquitto: 'tcp 127.0.0.1:1883 (the machine’s broker)',
  };
}

function safeRead(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function safeExec(cmd, argv) {
  try {
    return execFileSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}
