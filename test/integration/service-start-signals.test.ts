import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killProcesses } from './kill-procs.js';
import { parseLine, removeDir, tempDir, waitFor } from './agent-harness.js';

/**
 * A stop or reload signal that arrives while `meteorzx agent|gateway` is
 * still loading its modules and config, before the service loop listens for
 * signals. The config is a named pipe, so the process is held in the config
 * read, deterministically, until the test writes it: the signal is sent
 * while the process waits there. Node's default action for SIGHUP and
 * SIGTERM killed the process there; now the signal waits for the service to
 * have started, then reloads or stops it.
 */

const BIN = resolve(import.meta.dirname, '../../bin/meteorzx.js');
const children = new Set<ChildProcess>();
let dir: string;

beforeAll(async () => {
  dir = await tempDir('start-signals');
});
afterAll(async () => {
  await killProcesses(children);
  await removeDir(dir);
});

interface Run {
  proc: ChildProcess;
  logs: Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function run(args: string[]): Run {
  const proc = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(proc);
  const logs: Record<string, unknown>[] = [];
  let partial = '';
  proc.stderr?.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) logs.push(parseLine(line) ?? { text: line });
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  return { proc, logs, exited };
}

/** Waits until the process has the pipe open for reading (a non-blocking open for writing fails with ENXIO before). */
async function readerWaiting(fifo: string, proc: ChildProcess): Promise<number> {
  return waitFor(() => {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`exited ${proc.exitCode ?? proc.signalCode}`);
    try {
      return openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch {
      return undefined;
    }
  }, 'the config read');
}

function feed(fd: number, text: string): void {
  writeSync(fd, text);
  closeSync(fd);
}

async function signalWhileLoading(name: string, args: string[], config: object, signal: NodeJS.Signals): Promise<{ fifo: string; p: Run }> {
  const fifo = join(dir, `${name}.json`);
  execFileSync('mkfifo', [fifo]);
  const p = run([...args, '--config', fifo]);
  const fd = await readerWaiting(fifo, p.proc);
  p.proc.kill(signal);
  // Let the signal be handled (or kill) while the config is still unread.
  await new Promise((r) => setTimeout(r, 200));
  if (p.proc.signalCode === null) feed(fd, JSON.stringify(config));
  else closeSync(fd);
  return { fifo, p };
}

describe('a signal before the service loop listens', () => {
  it('agent: SIGHUP while the config is being read reloads once started, instead of killing the process', async () => {
    const config = { id: 'early-hup', dataDir: join(dir, 'agent'), intake: { http: { listen: '127.0.0.1:0' } }, pull: { listen: '127.0.0.1:0' } };
    const { fifo, p } = await signalWhileLoading('agent-hup', ['agent'], config, 'SIGHUP');
    const first = await Promise.race([p.exited, waitFor(() => p.logs.some((l) => l.msg === 'listening'), 'agent listening line', 15_000)]);
    expect(first).toBe(true);
    // The held SIGHUP reads the config again: the pipe once more.
    feed(await readerWaiting(fifo, p.proc), JSON.stringify(config));
    await waitFor(() => p.logs.some((l) => l.msg === 'reload: applied in place'), 'the reload', 15_000);
    p.proc.kill('SIGTERM');
    expect(await p.exited).toEqual({ code: 0, signal: null });
  }, 30_000);

  it('gateway: SIGTERM while the config is being read starts, drains and exits 0, instead of dying by the signal', async () => {
    const config = { dataDir: join(dir, 'gateway'), logLevel: 'info', http: { listen: '127.0.0.1:0' }, mqtt: { listen: '127.0.0.1:0' } };
    const { p } = await signalWhileLoading('gateway-term', ['gateway'], config, 'SIGTERM');
    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(p.logs.filter((l) => l.msg === 'listening' || l.msg === 'stopped').map((l) => l.msg)).toEqual(['listening', 'stopped']);
  }, 30_000);
});
