import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
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

function run(args: string[], nodeArgs: string[] = []): Run {
  const proc = spawn(process.execPath, [...nodeArgs, BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
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

/**
 * Earlier still: while Node loads the program's modules, before any command runs (120–200 ms of a start
 * on a busy 2-core box). A module hook (node --import) holds the load of dist/cli/main.js until the test
 * opens a gate, so the signal is sent, deterministically, while bin/meteorzx.js waits for that import.
 * Before, nothing listened yet and the process died by the signal.
 */
describe('a signal while the program modules load', () => {
  function stalledMainLoad(name: string): { nodeArgs: string[]; loading: () => boolean; open: () => void } {
    const marker = join(dir, `${name}.loading`);
    const gate = join(dir, `${name}.gate`);
    const hooks = join(dir, `${name}-hooks.mjs`);
    const preload = join(dir, `${name}-preload.mjs`);
    writeFileSync(
      hooks,
      [
        "import { existsSync, writeFileSync } from 'node:fs';",
        'let paths;',
        'export function initialize(data) { paths = data; }',
        'export async function load(url, context, next) {',
        "  if (url.endsWith('/dist/cli/main.js')) {",
        "    writeFileSync(paths.marker, '');",
        '    while (!existsSync(paths.gate)) await new Promise((r) => setTimeout(r, 10));',
        '  }',
        '  return next(url, context);',
        '}',
      ].join('\n'),
    );
    writeFileSync(
      preload,
      `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)}, { data: ${JSON.stringify({ marker, gate })} });\n`,
    );
    return { nodeArgs: ['--import', pathToFileURL(preload).href], loading: () => existsSync(marker), open: () => writeFileSync(gate, '') };
  }

  async function signalWhileModulesLoad(name: string, args: string[], signal: NodeJS.Signals): Promise<Run> {
    const stall = stalledMainLoad(name);
    const p = run(args, stall.nodeArgs);
    await waitFor(() => {
      if (p.proc.exitCode !== null || p.proc.signalCode !== null) throw new Error(`exited ${p.proc.exitCode ?? p.proc.signalCode}`);
      return stall.loading();
    }, 'the load of dist/cli/main.js');
    p.proc.kill(signal);
    // Let the signal be handled (or kill) while the modules still wait.
    await new Promise((r) => setTimeout(r, 200));
    stall.open();
    return p;
  }

  const agentConfig = (name: string) => {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify({ id: name, dataDir: join(dir, name), intake: { http: { listen: '127.0.0.1:0' } }, pull: { listen: '127.0.0.1:0' } }));
    return file;
  };
  const gatewayConfig = (name: string) => {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify({ dataDir: join(dir, name), logLevel: 'info', http: { listen: '127.0.0.1:0' }, mqtt: { listen: '127.0.0.1:0' } }));
    return file;
  };

  for (const round of [1, 2]) {
    it(`agent (round ${round}): SIGHUP reloads once started, SIGTERM then exits 0`, async () => {
      const name = `agent-modules-hup-${round}`;
      const p = await signalWhileModulesLoad(name, ['agent', '--config', agentConfig(name)], 'SIGHUP');
      await waitFor(() => {
        if (p.proc.signalCode !== null) throw new Error(`killed by ${p.proc.signalCode}`);
        return p.logs.some((l) => l.msg === 'reload: applied in place');
      }, 'the held reload', 15_000);
      p.proc.kill('SIGTERM');
      expect(await p.exited).toEqual({ code: 0, signal: null });
    }, 30_000);

    it(`agent (round ${round}): SIGTERM starts, drains and exits 0`, async () => {
      const name = `agent-modules-term-${round}`;
      const p = await signalWhileModulesLoad(name, ['agent', '--config', agentConfig(name)], 'SIGTERM');
      expect(await p.exited).toEqual({ code: 0, signal: null });
      expect(p.logs.filter((l) => l.msg === 'listening' || l.msg === 'agent stopped').map((l) => l.msg)).toEqual(['listening', 'agent stopped']);
    }, 30_000);
  }

  it('gateway: SIGHUP reloads once started, SIGTERM then exits 0', async () => {
    const p = await signalWhileModulesLoad('gateway-modules-hup', ['gateway', '--config', gatewayConfig('gateway-modules-hup')], 'SIGHUP');
    await waitFor(() => {
      if (p.proc.signalCode !== null) throw new Error(`killed by ${p.proc.signalCode}`);
      return p.logs.some((l) => typeof l.msg === 'string' && l.msg.startsWith('reload:'));
    }, 'the held reload', 15_000);
    p.proc.kill('SIGTERM');
    expect(await p.exited).toEqual({ code: 0, signal: null });
  }, 30_000);

  it('gateway: SIGTERM starts, drains and exits 0', async () => {
    const p = await signalWhileModulesLoad('gateway-modules-term', ['gateway', '--config', gatewayConfig('gateway-modules-term')], 'SIGTERM');
    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(p.logs.filter((l) => l.msg === 'listening' || l.msg === 'stopped').map((l) => l.msg)).toEqual(['listening', 'stopped']);
  }, 30_000);

  it('another command keeps the default: SIGTERM stops `meteorzx pull` at once', async () => {
    // A pull from an address that never answers: the command waits on it.
    const server = (await import('node:net')).createServer(() => undefined);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as { port: number };
      const p = await signalWhileModulesLoad('pull-modules-term', ['pull', `http://127.0.0.1:${port}`], 'SIGTERM');
      expect(await p.exited).toEqual({ code: null, signal: 'SIGTERM' });
    } finally {
      server.close();
    }
  }, 30_000);
});
