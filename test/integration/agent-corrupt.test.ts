import { randomBytes } from 'node:crypto';
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChainedEvent } from '../../protocols/index.js';
import { freePort, gatewayEvents, killAll, postEvents, removeDir, startAgent, startGateway, tempDir, waitFor } from './agent-harness.js';

/**
 * Issue 4 done-when: bytes of a LevelDB table file overwritten between runs
 * do not stop the agent. It starts, says `recovered` in its status, records a
 * gap event, and keeps taking events.
 */

let dir: string;
beforeAll(async () => {
  dir = await tempDir('agent-corrupt');
});
afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

async function tableFiles(db: string): Promise<Array<{ file: string; size: number }>> {
  const names = (await readdir(db)).filter((n) => n.endsWith('.ldb') || n.endsWith('.sst'));
  return Promise.all(names.map(async (n) => ({ file: join(db, n), size: (await stat(join(db, n))).size })));
}

/** Fills a buffer over two agent lives (the second flushes LevelDB's log into a table file), then damages its tables. */
async function corruptBuffer(sub: string, config: Record<string, unknown>, damage: (size: number) => { at: number; length: number }) {
  let agent = await startAgent(sub, config);
  for (let n = 0; n < 20; n += 1) {
    const events = Array.from({ length: 100 }, (_, i) => ({ id: `corrupt-${n}-${i}`, type: 'corrupt.test', data: { n, i, pad: randomBytes(200).toString('hex') } }));
    expect((await postEvents(agent.intakeUrl, events)).status).toBe(200);
  }
  const before = await agent.status();
  expect(await agent.stop()).toBe(0);
  agent = await startAgent(sub, config);
  expect(await agent.stop()).toBe(0);
  const tables = await tableFiles(join(sub, 'agent-data', 'buffer'));
  expect(tables.length).toBeGreaterThan(0);
  for (const { file, size } of tables) {
    const { at, length } = damage(size);
    const fh = await open(file, 'r+');
    await fh.write(randomBytes(length), 0, length, at);
    await fh.close();
  }
  return before;
}

async function pull(pullUrl: string): Promise<ChainedEvent[]> {
  const text = (await (await fetch(`${pullUrl}/v1/events?after=0&limit=10000`)).text()).trim();
  return text === '' ? [] : text.split('\n').map((l) => JSON.parse(l) as ChainedEvent);
}

describe('agent with a corrupted buffer', () => {
  it('a table overwritten whole: the agent starts, shows `recovered`, records a gap and keeps accepting', async () => {
    const sub = await tempDir('agent-corrupt-whole');
    const config = { id: 'corrupt-whole' };
    const before = await corruptBuffer(sub, config, (size) => ({ at: 0, length: size }));
    const agent = await startAgent(sub, config);
    const status = await agent.status();
    expect(status.recovered).toBeTruthy();
    expect(status.epoch).not.toBe(before.epoch);
    const res = await postEvents(agent.intakeUrl, [{ type: 'after.recovery' }]);
    expect(res.status).toBe(200);
    expect(res.body.accepted).toBe(1);
    const pulled = await pull(agent.pullUrl);
    const gap = pulled.find((e) => e.type === 'meteorzx.gap');
    // lostEpoch names the old epoch when LevelDB's repair could still read it; with every table destroyed it cannot.
    expect(gap?.data).toMatchObject({ reason: 'buffer-corrupt' });
    expect(pulled.some((e) => e.type === 'after.recovery')).toBe(true);
    expect(await agent.stop()).toBe(0);
    await removeDir(sub);
  });

  it('bytes in the middle of a table overwritten: the agent keeps accepting and pushing past the damage', async () => {
    const sub = await tempDir('agent-corrupt-middle');
    const port = await freePort();
    const config = { id: 'corrupt-middle', push: { http: { url: `http://127.0.0.1:${port}/v1/events` }, backoff: { initialMs: 50, maxMs: 200 } } };
    await corruptBuffer(sub, config, (size) => ({ at: Math.floor(size / 4), length: Math.floor(size / 2) }));
    const agent = await startAgent(sub, config);
    const res = await postEvents(agent.intakeUrl, [{ id: 'corrupt-after', type: 'after.recovery' }]);
    expect(res.status).toBe(200);
    const gateway = await startGateway(sub, port);
    // Whatever the damage cost must be named by a gap event; what follows it must arrive.
    // Wait for the whole buffer to be delivered: the gap is appended when the push reaches the damage,
    // after the event posted above, and batches in flight may be stored in any order.
    const stored = await waitFor(async () => {
      const status = await agent.status();
      if (status.delivered !== status.head) return undefined;
      const events = await gatewayEvents(gateway.url, 'corrupt-middle');
      return events.some((e) => e.id === 'corrupt-after') ? events : undefined;
    }, 'the event appended after the damage reached the gateway', 30_000).catch(async (err: Error) => {
      const status = await agent.status();
      throw new Error(`${err.message}; agent status ${JSON.stringify(status)}`);
    });
    expect(stored.some((e) => e.type === 'meteorzx.gap' && (e.data as { reason?: string }).reason === 'buffer-corrupt')).toBe(true);
    expect(await agent.stop()).toBe(0);
    await gateway.stop();
    await removeDir(sub);
  });

  it('damage met by a LevelDB compaction at run time: writes go on after an in-place repair, every acked event arrives', async () => {
    const sub = await tempDir('agent-corrupt-compaction');
    const port = await freePort();
    const config = { id: 'corrupt-compaction', push: { http: { url: `http://127.0.0.1:${port}/v1/events` }, backoff: { initialMs: 50, maxMs: 200 } } };
    await corruptBuffer(sub, config, (size) => ({ at: Math.floor(size / 4), length: Math.floor(size / 4) }));
    // Each agent life leaves its log as one more level-0 table; at four, LevelDB compacts them all, the
    // damaged one too. Before the repair, every write after that failed, in every later life as well.
    const acked: string[] = [];
    let agent: Awaited<ReturnType<typeof startAgent>> | undefined;
    for (let life = 0; life < 6 && agent === undefined; life++) {
      const running = await startAgent(sub, config);
      for (let i = 0; i < 20; i++) {
        const id = `compaction-${life}-${i}`;
        const res = await postEvents(running.intakeUrl, [{ id, type: 'after.damage' }]);
        // 503 while the store is being repaired; the producer retries, as any would.
        if (res.status === 503) await waitFor(async () => (await postEvents(running.intakeUrl, [{ id, type: 'after.damage' }])).status === 200, `${id} accepted`, 10_000);
        else expect(res.status).toBe(200);
        acked.push(id);
      }
      if (/repaired in place/.test(String((await running.status()).recovered))) agent = running;
      else expect(await running.stop()).toBe(0);
    }
    if (agent === undefined) throw new Error('no compaction met the damage in six agent lives');
    const gateway = await startGateway(sub, port);
    const stored = await waitFor(async () => {
      const status = await (agent as NonNullable<typeof agent>).status();
      if (status.delivered !== status.head) return undefined;
      const events = await gatewayEvents(gateway.url, 'corrupt-compaction');
      return acked.every((id) => events.some((e) => e.id === id)) ? events : undefined;
    }, 'every event acked after the damage reached the gateway', 30_000);
    expect(stored.some((e) => e.type === 'meteorzx.gap' && (e.data as { reason?: string }).reason === 'buffer-corrupt')).toBe(true);
    expect((await readdir(sub)).concat(await readdir(join(sub, 'agent-data'))).some((e) => e.startsWith('buffer.corrupt-'))).toBe(true);
    expect(await agent.stop()).toBe(0);
    await gateway.stop();
    await removeDir(sub);
  });
});
