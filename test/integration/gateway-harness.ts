import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { killProcesses } from './kill-procs.js';

/**
 * Spawns the real CLI (`node bin/meteorzx.js gateway --config <tmp>`) on
 * free ports and a temp data dir, and learns the bound ports from its
 * ready line. Shared by the gateway integration and fault tests.
 */

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin/meteorzx.js');

const READY_TIMEOUT_MS = 30_000;

/**
 * Gateways started and not yet exited. A test file that fails between a start and its stop (a beforeAll that
 * throws after startGateway) would leave its gateway running for good: after every file that imports this
 * harness, what is left is killed (registered here, the hook runs after the file's own afterAll hooks).
 */
const live = new Set<ChildProcess>();
afterAll(() => killProcesses(live));

export interface RunningGateway {
  proc: ChildProcess;
  httpUrl: string;
  httpPort: number;
  mqttPort: number;
  dataDir: string;
  configFile: string;
  /** Every stderr line so far (JSON log lines). */
  logs: string[];
  /** SIGTERM, and the exit code once it has drained. */
  stop(): Promise<number | null>;
  /** SIGKILL: no drain, no flush. */
  kill9(): Promise<void>;
}

export async function tempDir(prefix = 'meteorzx-gw-'): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

export interface StartOptions {
  dir: string;
  /** Merged over the defaults (ports 0 on loopback, dataDir under dir). */
  config?: Record<string, unknown>;
  args?: string[];
  env?: Record<string, string>;
  /** Runs it under `prlimit --nofile=N:N` (util-linux), as on a host with `ulimit -n N`. */
  nofile?: number;
}

function exited(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
}

export async function startGateway(opts: StartOptions): Promise<RunningGateway> {
  const dataDir = path.join(opts.dir, 'data');
  const config = { dataDir, http: { listen: '127.0.0.1:0' }, mqtt: { listen: '127.0.0.1:0' }, logLevel: 'info', ...opts.config };
  const configFile = path.join(opts.dir, `gateway-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const argv = [process.execPath, BIN, 'gateway', '--config', configFile, ...(opts.args ?? [])];
  // prlimit execs the command: the pid is the gateway's.
  if (opts.nofile !== undefined) argv.unshift('prlimit', `--nofile=${opts.nofile}:${opts.nofile}`, '--');
  const proc = spawn(argv[0] as string, argv.slice(1), {
    cwd: opts.dir,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  const logs: string[] = [];
  let stdout = '';
  // The CLI prints one ready line on stdout whatever the log level: `meteorzx gateway ready: http://h:p mqtt://h:p`.
  const ports = await new Promise<{ http: number; mqtt: number }>((resolve, reject) => {
    let errBuf = '';
    proc.stderr?.on('data', (b: Buffer) => {
      errBuf += b.toString();
      let nl: number;
      while ((nl = errBuf.indexOf('\n')) >= 0) {
        logs.push(errBuf.slice(0, nl));
        errBuf = errBuf.slice(nl + 1);
      }
    });
    proc.stdout?.on('data', (b: Buffer) => {
      stdout += b.toString();
      const m = /ready: https?:\/\/[^\s]+:(\d+) mqtt:\/\/[^\s]+:(\d+)/.exec(stdout);
      if (m) resolve({ http: Number(m[1]), mqtt: Number(m[2]) });
    });
    proc.once('exit', (code) => reject(new Error(`gateway exited with ${code} before listening:\n${logs.join('\n')}${errBuf}\n${stdout}`)));
    // Never leave a gateway behind: one that does not get ready in time is killed, not orphaned.
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`gateway not ready within ${READY_TIMEOUT_MS} ms:\n${logs.join('\n')}${errBuf}`));
    }, READY_TIMEOUT_MS);
    proc.once('exit', () => clearTimeout(timer));
    proc.stdout?.on('data', () => {
      if (/ready: /.test(stdout)) clearTimeout(timer);
    });
  });
  return {
    proc,
    httpUrl: `http://127.0.0.1:${ports.http}`,
    httpPort: ports.http,
    mqttPort: ports.mqtt,
    dataDir,
    configFile,
    logs,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      return exited(proc);
    },
    async kill9() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited(proc);
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/meteorzx.js ...args` to completion. */
export function runCli(args: string[], opts: { input?: string | Buffer; env?: Record<string, string>; cwd?: string } = {}): Promise<CliResult> {
  return runProcess(process.execPath, [BIN, ...args], opts);
}

export function runProcess(
  cmd: string,
  args: string[],
  opts: { input?: string | Buffer; env?: Record<string, string>; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    proc.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    proc.once('error', reject);
    proc.once('close', (code) => resolve({ code, stdout, stderr }));
    proc.stdin.on('error', () => undefined);
    proc.stdin.end(opts.input ?? '');
  });
}

/** NDJSON text to objects. */
export function ndjson<T = Record<string, unknown>>(text: string): T[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

/** POSTs `events` as NDJSON to the gateway at `url` (its /v1/events); its answer, an error unless 200. */
export async function ingest(url: string, events: readonly object[]): Promise<{ accepted: number; duplicates: number; rejected: { index: number; error: string }[] }> {
  const res = await fetch(`${url}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body: events.map((e) => JSON.stringify(e)).join('\n'),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST /v1/events answered ${res.status}: ${text}`);
  return JSON.parse(text) as { accepted: number; duplicates: number; rejected: { index: number; error: string }[] };
}
