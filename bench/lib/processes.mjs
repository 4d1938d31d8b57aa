// Start the real gateway and agent (node bin/meteorzx.js, which runs dist/)
// with their own temp dirs, the way a user would; stop them with SIGTERM.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.mjs';
import { waitFor } from './wait.mjs';
import { GATEWAY_NODE_FLAGS, gatewayEnv } from '../../packaging/lib/products.mjs';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(ROOT, 'bin', 'meteorzx.js');

/**
 * Starts `meteorzx gateway` on ports 0 with `config` merged over a minimal
 * one, with the node flags and allocator the packaged launcher uses (plus
 * `nodeArgs`); resolves once it printed its ready line, with the ports it bound.
 */
export async function startGateway({ dir, config = {}, nodeArgs = [] }) {
  const file = join(dir, 'gateway.json');
  await writeFile(file, JSON.stringify({ dataDir: join(dir, 'gateway-data'), logLevel: 'warn', http: { listen: '127.0.0.1:0' }, mqtt: { listen: '127.0.0.1:0' }, ...config }));
  const proc = spawn(process.execPath, [...GATEWAY_NODE_FLAGS, ...nodeArgs, CLI, 'gateway', '--config', file], { stdio: ['ignore', 'pipe', 'inherit'], env: gatewayEnv() });
  const ports = await new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (b) => {
      out += b;
      const m = /ready: http:\/\/[^\s]+:(\d+) mqtt:\/\/[^\s]+:(\d+)/.exec(out);
      if (m) resolve({ http: Number(m[1]), mqtt: Number(m[2]) });
    });
    proc.once('exit', (code) => reject(new Error(`gateway exited with ${code} before it was ready`)));
  });
  proc.stdout.resume();
  return { proc, pid: proc.pid, ...ports, stop: () => stop(proc) };
}

/**
 * Starts `meteorzx agent` with `config` (its pull listener on a free port,
 * used to know it is up); resolves once GET /v1/status answers.
 */
export async function startAgent({ dir, config, nodeArgs = [] }) {
  const pullPort = await freePort();
  const file = join(dir, 'agent.json');
  await writeFile(file, JSON.stringify({ id: 'bench-agent', dataDir: join(dir, 'agent-data'), logLevel: 'warn', pull: { listen: `127.0.0.1:${pullPort}` }, ...config }));
  const proc = spawn(process.execPath, [...nodeArgs, CLI, 'agent', '--config', file], { stdio: ['ignore', 'inherit', 'inherit'] });
  let exited;
  proc.once('exit', (code) => (exited = code));
  const statusUrl = `http://127.0.0.1:${pullPort}/v1/status`;
  await waitFor(
    async () => {
      if (exited !== undefined) throw new Error(`agent exited with ${exited} before it was ready`);
      try {
        const res = await globalThis.fetch(statusUrl);
        return res.ok ? true : undefined;
      } catch {
        return undefined;
      }
    },
    { timeoutMs: 30_000, what: 'the agent to answer /v1/status' },
  );
  return { proc, pid: proc.pid, statusUrl, stop: () => stop(proc) };
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function stop(proc, graceMs = 10_000) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const gone = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await gone;
  clearTimeout(timer);
}
