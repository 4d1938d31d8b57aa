import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT, runProcess, type CliResult } from './gateway-harness.js';

/**
 * Helpers of the packaging tests: building artefacts with the real scripts,
 * running the packaged launcher, fake install roots for `dpkg --root`.
 */

export { ROOT };

/** Runs a command to completion (never throws on a non-zero exit). */
export function sh(cmd: string, args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Promise<CliResult> {
  return runProcess(cmd, args, opts);
}

/** Like sh, but a non-zero exit is a test failure that shows the output. */
export async function must(cmd: string, args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Promise<CliResult> {
  const r = await sh(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** `node packaging/package.mjs ...`: the same script as `npm run package`. */
export function buildPackages(args: string[]): Promise<CliResult> {
  return must(process.execPath, [join(ROOT, 'packaging/package.mjs'), ...args], { cwd: ROOT });
}

export function hasCommand(name: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => dir !== '' && existsSync(join(dir, name)));
}

/**
 * A PATH with only the tools the launcher needs, and no node: /usr/bin holds
 * node on a developer machine, so PATH=/usr/bin:/bin would not prove anything.
 */
export async function pathWithoutNode(dir: string): Promise<string> {
  const bin = join(dir, 'path-bin');
  await mkdir(bin, { recursive: true });
  for (const tool of ['sh', 'readlink']) {
    const found = (process.env.PATH ?? '').split(':').map((d) => join(d, tool)).find((p) => existsSync(p));
    if (found === undefined) throw new Error(`${tool} not found`);
    await symlink(found, join(bin, tool));
  }
  return bin;
}

export interface PackagedAgent {
  proc: ChildProcess;
  intakeUrl: string;
  pullUrl: string;
  /** stderr lines so far (JSON log lines). */
  logs: string[];
  /** SIGTERM; resolves with the exit code once drained. */
  stop(): Promise<number | null>;
}

const running = new Set<ChildProcess>();

/** Kills whatever a test left running (afterAll). */
export function killAll(): void {
  for (const proc of running) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
}

/** Starts `<launcher> agent --config FILE ...` and waits for its `listening` log line. */
export async function startPackagedAgent(launcher: string, args: string[], env: Record<string, string>): Promise<PackagedAgent> {
  const proc = spawn(launcher, ['agent', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const addresses = await new Promise<{ intake: string; pull: string }>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`agent not listening within 30 s:\n${logs.join('\n')}`));
    }, 30_000);
    proc.stderr?.on('data', (b: Buffer) => {
      buf += b.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        const entry = parseLine(line);
        if (entry?.msg === 'listening' && typeof entry.intake === 'string' && typeof entry.pull === 'string') {
          clearTimeout(timer);
          resolve({ intake: entry.intake, pull: entry.pull });
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with ${code} before listening:\n${logs.join('\n')}${buf}`));
    });
  });
  return {
    proc,
    intakeUrl: `http://${addresses.intake}`,
    pullUrl: `http://${addresses.pull}`,
    logs,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

/** Starts `<launcher> gateway --config FILE` and waits for its ready line; returns its HTTP URL. */
export interface PackagedGateway {
  proc: ChildProcess;
  httpUrl: string;
  /** The HTTP URL of every ready line so far: one more after each reload. */
  readyUrls(): string[];
  stop(): Promise<number | null>;
}

export async function startPackagedGateway(launcher: string, config: string, env: Record<string, string>): Promise<PackagedGateway> {
  const proc = spawn(launcher, ['gateway', '--config', config], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  let output = '';
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const httpUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`gateway not ready within 30 s:\n${output}`));
    }, 30_000);
    proc.stderr?.on('data', (b: Buffer) => (output += b.toString()));
    proc.stdout?.on('data', (b: Buffer) => {
      output += b.toString();
      const m = /ready: (http:\/\/[^\s]+)/.exec(output);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code} before ready:\n${output}`));
    });
  });
  return {
    proc,
    httpUrl,
    readyUrls: () => [...output.matchAll(/ready: (http:\/\/[^\s]+)/g)].map((m) => m[1] ?? ''),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

function parseLine(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** POSTs events as NDJSON; returns the parsed answer. */
export async function postEvents(baseUrl: string, events: readonly Record<string, unknown>[]): Promise<{ accepted: number; rejected: unknown[] }> {
  const res = await fetch(`${baseUrl}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body: events.map((e) => JSON.stringify(e)).join('\n'),
  });
  if (res.status !== 200) throw new Error(`POST ${baseUrl}/v1/events: ${res.status} ${await res.text()}`);
  return (await res.json()) as { accepted: number; rejected: unknown[] };
}

export async function getNdjson(url: string): Promise<Record<string, unknown>[]> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`);
  return (await res.text())
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/**
 * An empty root for `dpkg --root`: dpkg's database and the account files
 * useradd --prefix edits. Nothing else: the maintainer scripts run with the
 * host's tools (dpkg --force-script-chrootless) and must only touch $DPKG_ROOT.
 */
export async function fakeRoot(dir: string): Promise<string> {
  const admin = join(dir, 'var/lib/dpkg');
  for (const sub of ['info', 'updates', 'triggers']) await mkdir(join(admin, sub), { recursive: true });
  await writeFile(join(admin, 'status'), '');
  await writeFile(join(admin, 'available'), '');
  await mkdir(join(dir, 'etc'), { recursive: true });
  await writeFile(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFile(join(dir, 'etc/group'), 'root:x:0:\n');
  await writeFile(join(dir, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n', { mode: 0o640 });
  await writeFile(join(dir, 'etc/gshadow'), 'root:*::\n', { mode: 0o640 });
  return dir;
}

/** `dpkg --root` with maintainer scripts run outside a chroot, against $DPKG_ROOT. */
export function dpkgRoot(root: string, args: string[]): Promise<CliResult> {
  return must('dpkg', [`--root=${root}`, '--force-script-chrootless', '--force-confold', ...args]);
}

/** The line of name in a passwd/group file, split. */
export function accountEntry(text: string, name: string): string[] | undefined {
  return text
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[0] === name);
}
