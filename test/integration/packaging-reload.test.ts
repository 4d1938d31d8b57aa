import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, tempDir } from './gateway-harness.js';
import { killAll, postEvents, ROOT, startPackagedAgent, startPackagedGateway } from './packaging-harness.js';

/**
 * `systemctl reload` (ExecReload=kill -HUP $MAINPID in the units): SIGHUP
 * re-reads the config. A valid one restarts the service in place on the same
 * data; an invalid one is logged and the service runs on unchanged. Runs the
 * repo's CLI (bin/meteorzx.js), so it needs `npm run build` first like the
 * other integration tests.
 */

const BIN = join(ROOT, 'bin/meteorzx.js');
let dir: string;

beforeAll(async () => {
  dir = await tempDir('meteorzx-reload-');
});

afterAll(async () => {
  killAll();
  if (dir) await removeDir(dir);
});

async function until<T>(probe: () => T | undefined, what: string): Promise<T> {
  for (let i = 0; i < 600; i += 1) {
    const value = probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('SIGHUP reload', () => {
  it('agent: a valid config restarts it on the same buffer, an invalid one is ignored', async () => {
    const config = join(dir, 'agent.json');
    const base = { dataDir: join(dir, 'agent-data'), intake: { http: { listen: '127.0.0.1:0' } }, pull: { listen: '127.0.0.1:0' } };
    await writeFile(config, JSON.stringify({ ...base, id: 'reload-a' }));
    const agent = await startPackagedAgent(BIN, ['--config', config], { ...process.env } as Record<string, string>);
    const events = Array.from({ length: 10 }, (_, i) => ({ id: `reload-${i}`, type: 'test.reload' }));
    expect((await postEvents(agent.intakeUrl, events)).accepted).toBe(10);

    // Valid: a new agent id takes effect, the buffer (and its events) stay; the epoch goes on under the new id
    // after its agent-renamed gap event (docs/buffer.md).
    await writeFile(config, JSON.stringify({ ...base, id: 'reload-b' }));
    agent.proc.kill('SIGHUP');
    const relisten = await until(() => agent.logs.map((l) => JSON.parse(l) as { msg?: string; pull?: string }).filter((l) => l.msg === 'listening')[1], 'second listening line');
    const status = (await (await fetch(`http://${relisten.pull}/v1/status`)).json()) as { id: string; head: number };
    expect([status.id, status.head]).toEqual(['reload-b', 11]);
    const renamed = JSON.parse(await (await fetch(`http://${relisten.pull}/v1/events?after=10`)).text()) as { agent: string; type: string; data: unknown };
    expect(renamed).toMatchObject({ agent: 'reload-b', type: 'meteorzx.gap', data: { reason: 'agent-renamed', from: 1, to: 10, renamedFrom: 'reload-a' } });

    // Invalid: logged, and the agent still answers on the same listener with the same config.
    await writeFile(config, JSON.stringify({ ...base, id: 'reload-c', bogus: true }));
    agent.proc.kill('SIGHUP');
    await until(() => agent.logs.find((l) => l.includes('reload: config rejected')), 'rejection log line');
    const still = (await (await fetch(`http://${relisten.pull}/v1/status`)).json()) as { id: string; head: number };
    expect([still.id, still.head]).toEqual(['reload-b', 11]);
    expect(agent.proc.exitCode).toBeNull();
    expect(await agent.stop()).toBe(0);
  });

  it('gateway: a valid config restarts it and it announces its listeners again', async () => {
    const config = join(dir, 'gateway.json');
    const base = { dataDir: join(dir, 'gw-data'), http: { listen: '127.0.0.1:0' }, mqtt: { listen: '127.0.0.1:0' } };
    await writeFile(config, JSON.stringify({ ...base, id: 'gw-a' }));
    const gw = await startPackagedGateway(BIN, config, { ...process.env } as Record<string, string>);
    expect((await postEvents(gw.httpUrl, [{ id: 'gw-reload-1', source: 'reload', type: 'test.reload' }])).accepted).toBe(1);
    await writeFile(config, JSON.stringify({ ...base, id: 'gw-b' }));
    gw.proc.kill('SIGHUP');
    const url = await until(() => gw.readyUrls()[1], 'second ready line');
    const stored = await (await fetch(`${url}/v1/events?source=reload`)).text();
    expect(stored).toContain('gw-reload-1');
    expect((await postEvents(url, [{ id: 'gw-reload-2', source: 'reload', type: 'test.reload' }])).accepted).toBe(1);
    expect(await (await fetch(`${url}/v1/events?source=reload`)).text()).toContain('"gateway":"gw-b"');
    expect(await gw.stop()).toBe(0);
  });
});
