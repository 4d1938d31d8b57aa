import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { AgentStatus, StoredEvent } from '../../protocols/index.js';
import { killProcesses } from './kill-procs.js';

/**
 * Real processes for the agent's integration and fault tests: the CLI
 * (`node bin/meteorzx.js agent|gateway`) on free ports, in temp dirs, with
 * helpers to produce through the intake and read back from the gateway.
 * Build first (`npx tsc -p tsconfig.json`): the CLI runs from dist/.
 */

const BIN = resolve(import.meta.dirname, '../../bin/meteorzx.js');
const children = new Set<ChildProcess>();

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `meteorzx-${prefix}-`));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** A port the OS says is free now (for listeners that must keep their port across restarts). */
/** A free TCP port on 127.0.0.1, picked below the kernel's ephemeral range (see bench/lib/ports.mjs). */
export { freePort } from '../../bench/lib/ports.mjs';

export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, what: string, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  let lastErr: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    await sleep(20);
  }
}

/**
 * Polls `probe` until it reports done. Fails only when its progress mark has not changed for `stallMs`:
 * a loaded CI machine may be slow, and slowness is not the failure such a wait looks for; a stall is.
 */
export async function waitWhileProgressing(
  probe: () => Promise<{ done: boolean; progress: string }>,
  what: string,
  stallMs = 30_000,
): Promise<void> {
  let mark: string | undefined;
  let since = Date.now();
  for (;;) {
    const { done, progress } = await probe();
    if (done) return;
    if (progress !== mark) {
      mark = progress;
      since = Date.now();
    } else if (Date.now() - since > stallMs) {
      throw new Error(`timed out waiting for ${what}: no progress for ${stallMs} ms at ${progress}`);
    }
    await sleep(20);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface Proc {
  proc: ChildProcess;
  pid: number;
  /** stderr lines so far (JSON log lines). */
  logs: string[];
  stdout: string[];
  exited: Promise<number | null>;
  /** SIGTERM, wait for exit (SIGKILL after `ms`). */
  stop(ms?: number): Promise<number | null>;
  kill(): Promise<void>;
}

/** How to start the CLI: `nofile` runs it under `prlimit --nofile=N:N` (util-linux), as a host with `ulimit -n N`. */
export interface SpawnOptions {
  nofile?: number;
}

function spawnCli(args: string[], env: Record<string, string> = {}, options: SpawnOptions = {}): Proc {
  const argv = [process.execPath, BIN, ...args];
  // prlimit execs the command: the pid is the agent's.
  if (options.nofile !== undefined) argv.unshift('prlimit', `--nofile=${options.nofile}:${options.nofile}`, '--');
  const proc = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.add(proc);
  const logs: string[] = [];
  const stdout: string[] = [];
  const collect = (into: string[]) => {
    let partial = '';
    return (chunk: Buffer) => {
      const parts = (partial + chunk.toString()).split('\n');
      partial = parts.pop() ?? '';
      into.push(...parts);
    };
  };
  proc.stderr?.on('data', collect(logs));
  proc.stdout?.on('data', collect(stdout));
  const exited = new Promise<number | null>((r) =>
    proc.once('exit', (code) => {
      children.delete(proc);
      r(code);
    }),
  );
  return {
    proc,
    pid: proc.pid as number,
    logs,
    stdout,
    exited,
    async stop(ms = 20_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), ms);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** Kills every process the harness started (afterAll). */
export async function killAll(): Promise<void> {
  await killProcesses(children);
}

export interface Gateway extends Proc {
  url: string;
}

/** Starts `meteorzx gateway` with HTTP on `httpPort` (fixed, so a restart keeps the agent's URL valid). */
export async function startGateway(dir: string, httpPort: number, extra: Record<string, unknown> = {}): Promise<Gateway> {
  const config = join(dir, 'gateway.json');
  await writeFile(
    config,
    JSON.stringify({ dataDir: join(dir, 'gateway-data'), logLevel: 'warn', http: { listen: `127.0.0.1:${httpPort}` }, mqtt: { listen: '127.0.0.1:0' }, ...extra }),
  );
  const p = spawnCli(['gateway', '--config', config]);
  const url = `http://127.0.0.1:${httpPort}`;
  await waitFor(
    async () => {
      if (p.proc.exitCode !== null) throw new Error(`gateway exited ${p.proc.exitCode}: ${p.logs.slice(-5).join('\n')}`);
      const res = await fetch(`${url}/healthz`).catch(() => undefined);
      return res?.ok === true;
    },
    'gateway /healthz',
  );
  return { ...p, url };
}

export interface Agent extends Proc {
  intakeUrl: string;
  pullUrl: string;
  status(): Promise<AgentStatus>;
  metric(name: string): Promise<number>;
}

/** Writes the agent config (intake and pull on port 0 unless given) and starts `meteorzx agent`. */
export async function startAgent(dir: string, config: Record<string, unknown>, env: Record<string, string> = {}, options: SpawnOptions = {}): Promise<Agent> {
  const file = join(dir, 'agent.json');
  await writeFile(
    file,
    JSON.stringify({ dataDir: join(dir, 'agent-data'), intake: { http: { listen: '127.0.0.1:0' } }, pull: { listen: '127.0.0.1:0' }, ...config }),
  );
  const p = spawnCli(['agent', '--config', file], env, options);
  const line = await waitFor(
    () => {
      if (p.proc.exitCode !== null) throw new Error(`agent exited ${p.proc.exitCode}: ${p.logs.slice(-5).join('\n')}`);
      return p.logs.map(parseLine).find((l) => l?.msg === 'listening');
    },
    'agent listening line',
  );
  const pullUrl = `http://${String(line.pull)}`;
  return {
    ...p,
    intakeUrl: `http://${String(line.intake)}/v1/events`,
    pullUrl,
    async status() {
      return (await (await fetch(`${pullUrl}/v1/status`)).json()) as AgentStatus;
    },
    async metric(name: string) {
      return sumSeries(await (await fetch(`${pullUrl}/metrics`)).text(), name);
    },
  };
}

/**
 * The sum of the Prometheus series `name` names: a metric's every series (`meteorzx_agent_events_in_total`)
 * or one with its labels (`…{intake="http"}`). Only that metric: matched as a prefix, the gauge
 * `meteorzx_agent_files_open` also summed `meteorzx_agent_files_open_limit`.
 */
export function sumSeries(text: string, name: string): number {
  let sum = 0;
  for (const l of text.split('\n')) {
    const next = l.charAt(name.length);
    if (l.startsWith(name) && (next === ' ' || (next === '{' && !name.includes('{')))) sum += Number(l.split(' ').at(-1));
  }
  return sum;
}

export function parseLine(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** POSTs NDJSON events; resolves with the HTTP status and answer (throws on a connection error). */
export async function postEvents(url: string, events: readonly object[]): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body: events.map((e) => JSON.stringify(e)).join('\n'),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** Every event the gateway stored for `source` (all pages of GET /v1/events). */
export async function gatewayEvents(url: string, source: string): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  let cursor: string | null = null;
  for (;;) {
    const q = new URLSearchParams({ source, limit: '10000', ...(cursor ? { cursor } : {}) });
    const res = await fetch(`${url}/v1/events?${q.toString()}`);
    if (!res.ok) throw new Error(`GET /v1/events: ${res.status} ${await res.text()}`);
    for (const line of (await res.text()).split('\n')) if (line.trim()) out.push(JSON.parse(line) as StoredEvent);
    cursor = res.headers.get('x-next-cursor');
    if (!cursor) return out;
  }
}

/** VmRSS of a process in bytes (Linux /proc). */
export async function rssBytes(pid: number): Promise<number | undefined> {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Seqs 1..max with none missing, per epoch; returns the holes found. */
export function holesPerEpoch(events: readonly StoredEvent[]): Map<string, number[]> {
  const byEpoch = new Map<string, Set<number>>();
  for (const e of events) {
    if (e.epoch === undefined || e.seq === undefined) continue;
    const set = byEpoch.get(e.epoch) ?? new Set<number>();
    set.add(e.seq);
    byEpoch.set(e.epoch, set);
  }
  const holes = new Map<string, number[]>();
  for (const [epoch, seqs] of byEpoch) {
    let max = 0;
    for (const s of seqs) if (s > max) max = s;
    const missing: number[] = [];
    for (let s = 1; s <= max; s += 1) if (!seqs.has(s)) missing.push(s);
    holes.set(epoch, missing);
  }
  return holes;
}

/**
 * The size of V8's young generation (bytes, from the agent's /metrics) after
 * 8 × 1,000 events of ≈250 B through its intake: enough that V8's defaults
 * grow it to 32 MB, while agent/v8-flags.ts holds it at 2–4 MB.
 */
export async function youngGenerationAfterLoad(eventsUrl: string, pullUrl: string): Promise<number> {
  for (let b = 0; b < 8; b++) {
    const body = Array.from({ length: 1000 }, (_, k) => JSON.stringify({ type: 'test.heap', actor: `user-${k}`, data: { i: b * 1000 + k, pad: 'x'.repeat(150) } }));
    const res = await fetch(eventsUrl, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: body.join('\n') });
    if (res.status !== 200) throw new Error(`POST ${eventsUrl}: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  }
  const metrics = await (await fetch(`${pullUrl}/metrics`)).text();
  const line = metrics.split('\n').find((l) => l.startsWith('meteorzx_agent_nodejs_heap_space_size_total_bytes{space="new"} '));
  if (line === undefined) throw new Error('no new-space size in the agent metrics');
  return Number(line.split(' ').at(-1));
}
