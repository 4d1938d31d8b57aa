import { mkdir, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, parseLine, postEvents, removeDir, startAgent, startGateway, tempDir, waitFor, type Proc } from './agent-harness.js';

/**
 * A SIGHUP whose new config cannot bind its port (another process holds it). As nginx keeps its workers
 * when a reload's new config cannot start, the agent and the gateway run on with the config they had, log
 * the reason and count it (meteorzx_{agent,gateway}_reload_failures_total). Before, the agent or gateway
 * closed and exited 1 (the restart path), or exited 1 with its other intakes stopped (an in-place reload
 * of the agent's intakes).
 */

let dir: string;
const squatters: Server[] = [];
beforeAll(async () => {
  dir = await tempDir('reload-bind');
});
afterAll(async () => {
  await killAll();
  for (const s of squatters) s.close();
  await removeDir(dir);
});

/** A port held by another listener, as another service would hold it. */
async function takenPort(): Promise<number> {
  const server = createServer();
  squatters.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

function logged(p: Proc, msg: string): Record<string, unknown>[] {
  return p.logs.map(parseLine).filter((l): l is Record<string, unknown> => typeof l?.msg === 'string' && l.msg.startsWith(msg));
}

async function metric(url: string, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

async function reloadFails(p: Proc, file: string, config: object, n: number): Promise<Record<string, unknown>> {
  await writeFile(file, JSON.stringify(config));
  p.proc.kill('SIGHUP');
  return waitFor(() => {
    if (p.proc.exitCode !== null) throw new Error(`exited ${p.proc.exitCode}: ${p.logs.slice(-3).join('\n')}`);
    return logged(p, 'reload: the new config could not start')[n - 1];
  }, `reload failure ${n}`);
}

describe('a reload whose new config cannot bind', () => {
  it('agent: keeps taking events on the old ports (restart and in-place reloads), counts each, exits 0 on SIGTERM', async () => {
    const [intakePort, pullPort, syslogPort] = [await freePort(), await freePort(), await freePort()];
    const taken = await takenPort();
    const agentDir = join(dir, 'agent');
    const base = {
      id: 'reload-bind',
      dataDir: join(agentDir, 'agent-data'),
      logLevel: 'info',
      pull: { listen: `127.0.0.1:${pullPort}` },
    };
    const intake = (httpPort: number, syslog: number) => ({ http: { listen: `127.0.0.1:${httpPort}` }, syslog: { listen: `tcp://127.0.0.1:${syslog}` } });
    await mkdir(agentDir, { recursive: true });
    const agent = await startAgent(agentDir, { ...base, intake: intake(intakePort, syslogPort) });
    const file = join(agentDir, 'agent.json');

    // 1. The HTTP intake moved to a taken port: a restart, whose start fails.
    const restart = await reloadFails(agent, file, { ...base, intake: intake(taken, syslogPort) }, 1);
    expect(restart.msg).toContain('starting again with the current one');
    expect(restart.msg).toContain(String(taken));
    await waitFor(() => agent.logs.map(parseLine).filter((l) => l?.msg === 'listening').length === 2, 'listening again on the current config');
    expect((await postEvents(agent.intakeUrl, [{ type: 'after.restart.failure' }])).status).toBe(200);

    // 2. Syslog moved to a taken port: in place, whose new intake fails; the current syslog is put back.
    const inPlace = await reloadFails(agent, file, { ...base, intake: intake(intakePort, taken) }, 2);
    expect(inPlace.msg).toContain('running on with the current one');
    expect((await postEvents(agent.intakeUrl, [{ type: 'after.in.place.failure' }])).status).toBe(200);
    // The syslog intake the failed reload stopped is listening again.
    await new Promise<void>((resolve, reject) => {
      const socket = connect(syslogPort, '127.0.0.1', () => socket.end('<13>1 2026-01-01T00:00:00Z host app - - - still here\n'));
      socket.on('close', () => resolve());
      socket.on('error', reject);
    });
    await waitFor(async () => (await agent.status()).head === 3, 'the syslog message appended');

    expect(await metric(agent.pullUrl, 'meteorzx_agent_reload_failures_total')).toBe(2);
    expect(agent.proc.exitCode).toBeNull();
    expect(await agent.stop()).toBe(0);
  }, 60_000);

  it('gateway: keeps answering on the old port, counts it, exits 0 on SIGTERM', async () => {
    const gwDir = join(dir, 'gateway');
    await mkdir(gwDir, { recursive: true });
    const httpPort = await freePort();
    const taken = await takenPort();
    const gateway = await startGateway(gwDir, httpPort);
    const failure = await reloadFails(
      gateway,
      join(gwDir, 'gateway.json'),
      { dataDir: join(gwDir, 'gateway-data'), logLevel: 'warn', http: { listen: `127.0.0.1:${taken}` }, mqtt: { listen: '127.0.0.1:0' } },
      1,
    );
    expect(failure.msg).toContain(String(taken));
    await waitFor(async () => (await fetch(`${gateway.url}/readyz`).catch(() => undefined))?.ok === true, 'the gateway back on its port');
    expect(await metric(gateway.url, 'meteorzx_gateway_reload_failures_total')).toBe(1);
    expect(await gateway.stop()).toBe(0);
  }, 60_000);
});
