import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, parseLine, removeDir, startAgent, tempDir, waitFor } from './agent-harness.js';

/**
 * An in-place reload (only the reading intakes changed) whose new intake
 * cannot bind, and whose rollback cannot bind the current intake again
 * either, because another process took its port in between. Before, the
 * agent logged `reload: could not start the current intakes again` and ran
 * on with its syslog intake down for good: `systemctl status` said active,
 * nothing retried, senders to that port were refused. Now it exits 1 with
 * METEORZX_RELOAD_UNRECOVERABLE, as it already did when a restart cannot
 * start its current config again: systemd's Restart=on-failure brings it
 * back, and the unit's failure is there to see.
 */

let dir: string;
const squatters: Server[] = [];
beforeAll(async () => {
  dir = await tempDir('reload-unrecoverable');
});
afterAll(async () => {
  await killAll();
  for (const s of squatters) s.close();
  await removeDir(dir);
});

function listen(port: number): Promise<Server | undefined> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** Takes `port` as soon as it is free (another service grabbing it), polling every millisecond. */
async function squat(port: number, within = 20_000): Promise<Server> {
  const until = Date.now() + within;
  while (Date.now() < until) {
    const server = await listen(port);
    if (server !== undefined) {
      squatters.push(server);
      return server;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error(`port ${port} never came free`);
}

describe('an in-place reload that cannot put the current intakes back', () => {
  it('exits 1 naming both failures, instead of running on with the intake down', async () => {
    const agentDir = join(dir, 'agent');
    await mkdir(agentDir, { recursive: true });
    const [syslogPort, movedTo] = [await freePort(), await freePort()];
    const taken = await listen(0);
    if (taken === undefined) throw new Error('no port');
    squatters.push(taken);
    const mqttPort = (taken.address() as { port: number }).port;
    const base = { id: 'reload-unrecoverable', dataDir: join(agentDir, 'agent-data'), logLevel: 'info', pull: { listen: '127.0.0.1:0' } };
    const agent = await startAgent(agentDir, { ...base, intake: { http: { listen: '127.0.0.1:0' }, syslog: { listen: `tcp://127.0.0.1:${syslogPort}` } } });

    // The syslog intake moves (so it is stopped), and a new edge broker cannot bind: in place, and it fails.
    // Meanwhile another process takes the port the syslog intake gave up, so the rollback cannot bind it.
    await writeFile(
      join(agentDir, 'agent.json'),
      JSON.stringify({ ...base, intake: { http: { listen: '127.0.0.1:0' }, syslog: { listen: `tcp://127.0.0.1:${movedTo}` }, mqtt: { listen: `127.0.0.1:${mqttPort}` } } }),
    );
    agent.proc.kill('SIGHUP');
    await squat(syslogPort);

    expect(await agent.exited).toBe(1);
    const failure = agent.logs.map(parseLine).find((l) => typeof l?.msg === 'string' && l.msg.startsWith('reload: the new config could not start'));
    expect(failure?.msg).toContain(String(mqttPort));
    expect(failure?.msg).toContain(`and the current intakes cannot start again`);
    expect(failure?.msg).toContain(String(syslogPort));
    expect(failure?.msg).toMatch(/nor could the current one start again: exiting, for the supervisor to restart the service$/);
    const stderr = agent.logs.filter((l) => l.startsWith('meteorzx: '));
    expect(stderr.at(-1)).toMatch(/^meteorzx: .*\(METEORZX_RELOAD_UNRECOVERABLE\)$/);
  }, 60_000);

  it('a reload whose rollback works still runs on (the squatted port is not the old one)', async () => {
    // Guard for the test above: the same reload, nobody takes the old port — the agent runs on, as before.
    const agentDir = join(dir, 'agent-2');
    await mkdir(agentDir, { recursive: true });
    const [syslogPort, movedTo] = [await freePort(), await freePort()];
    const taken = await listen(0);
    if (taken === undefined) throw new Error('no port');
    squatters.push(taken);
    const mqttPort = (taken.address() as { port: number }).port;
    const base = { id: 'reload-recoverable', dataDir: join(agentDir, 'agent-data'), logLevel: 'info', pull: { listen: '127.0.0.1:0' } };
    const agent = await startAgent(agentDir, { ...base, intake: { http: { listen: '127.0.0.1:0' }, syslog: { listen: `tcp://127.0.0.1:${syslogPort}` } } });
    await writeFile(
      join(agentDir, 'agent.json'),
      JSON.stringify({ ...base, intake: { http: { listen: '127.0.0.1:0' }, syslog: { listen: `tcp://127.0.0.1:${movedTo}` }, mqtt: { listen: `127.0.0.1:${mqttPort}` } } }),
    );
    agent.proc.kill('SIGHUP');
    const failure = await waitFor(
      () => agent.logs.map(parseLine).find((l) => typeof l?.msg === 'string' && l.msg.startsWith('reload: the new config could not start')),
      'the reload failure',
    );
    expect(failure.msg).toMatch(/running on with the current one$/);
    expect(await listen(syslogPort)).toBeUndefined(); // the agent holds it again
    expect(agent.proc.exitCode).toBeNull();
    expect(await agent.stop()).toBe(0);
  }, 60_000);
});
