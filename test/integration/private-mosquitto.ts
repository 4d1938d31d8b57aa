import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { waitFor } from './agent-harness.js';

export interface PrivateMosquitto {
  proc: ChildProcess;
  port: number;
  /** What it logged, line by line (stdout and stderr). */
  logs: string[];
}

/**
 * A private Mosquitto (not the machine's on 1883) on `port`, loopback only,
 * with `lines` of config after its listener; resolves once it listens. The
 * caller stops it (the process is returned).
 */
export async function startMosquitto(dir: string, name: string, port: number, lines: readonly string[]): Promise<PrivateMosquitto> {
  const conf = join(dir, `${name}.conf`);
  await writeFile(conf, [`listener ${port} 127.0.0.1`, ...lines, ''].join('\n'));
  const proc = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  const collect = (b: Buffer) => logs.push(...b.toString().split('\n').filter((l) => l !== ''));
  proc.stdout?.on('data', collect);
  proc.stderr?.on('data', collect);
  await waitFor(() => {
    if (proc.exitCode !== null) throw new Error(`mosquitto exited ${proc.exitCode}: ${logs.join('\n')}`);
    return logs.some((l) => l.includes(`listen socket on port ${port}`));
  }, 'mosquitto listening');
  return { proc, port, logs };
}
