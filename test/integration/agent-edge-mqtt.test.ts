import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, gatewayEvents, killAll, removeDir, startAgent, startGateway, tempDir, waitFor } from './agent-harness.js';

/**
 * Issue 6 Done-when: Mosquitto's own client (`mosquitto_pub`, a peer we did
 * not write) publishes to the agent's edge broker while the gateway is
 * unreachable; once the real gateway starts on the agent's push URL,
 * everything arrives with the device as `source`, under the agent's chain.
 */

let dir: string;
afterAll(async () => {
  await killAll();
  if (dir) await removeDir(dir);
});
beforeAll(async () => {
  dir = await tempDir('edge-mqtt');
});

interface PubResult {
  code: number | null;
  stderr: string;
}

/** Runs mosquitto_pub; with `lines`, each line is one message (-l). Exit 0 at QoS 1 means every PUBACK arrived. */
function mosquittoPub(args: string[], lines?: string[]): Promise<PubResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-q', '1', ...args], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    proc.once('error', reject);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
    // A mosquitto_pub that has already exited (it reads no stdin with -m) must not fail the run with EPIPE: its exit code says what happened.
    proc.stdin.on('error', () => undefined);
    proc.stdin.end(lines === undefined ? '' : `${lines.join('\n')}\n`);
  });
}

describe('agent edge MQTT broker with mosquitto_pub', () => {
  it('buffers device publishes while the gateway is down and delivers them all, device as source, when it returns', async () => {
    const edgePort = await freePort();
    const gatewayPort = await freePort(); // nothing listens here yet
    const agentId = 'edge-box-1';
    const agent = await startAgent(dir, {
      id: agentId,
      limits: { maxBodyBytes: '64KiB' },
      intake: {
        http: { listen: '127.0.0.1:0' },
        mqtt: {
          listen: `127.0.0.1:${edgePort}`,
          users: [
            { username: 'dev-1', password: 'dev-1-secret' },
            { username: 'dev-2', password: 'dev-2-secret' },
          ],
        },
      },
      push: { http: { url: `http://127.0.0.1:${gatewayPort}/v1/events` }, backoff: { initialMs: '50ms', maxMs: '500ms' }, breaker: { cooldownMs: '300ms' } },
    });

    // Wrong password: refused at CONNECT, nothing buffered.
    const refused = await mosquittoPub(['-p', String(edgePort), '-u', 'dev-1', '-P', 'wrong', '-t', 'audit/dev-1/events', '-m', '{"type":"x"}']);
    expect(refused.code).not.toBe(0);

    const n = 200;
    const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ id: `dev1-${i}`, type: 'sensor.reading', data: { i } }));
    const pub1 = await mosquittoPub(['-p', String(edgePort), '-u', 'dev-1', '-P', 'dev-1-secret', '-i', 'dev-1', '-t', 'audit/dev-1/events', '-l'], lines);
    expect(pub1).toEqual({ code: 0, stderr: '' });
    // A batch without ids (the gateway-compatible deterministic id applies) and one bad event among good ones.
    const pub2 = await mosquittoPub([
      '-p', String(edgePort), '-u', 'dev-2', '-P', 'dev-2-secret', '-t', 'audit/dev-2/events',
      '-m', JSON.stringify([{ type: 'door.open', actor: 'badge-7' }, { type: 'door.close', outcome: 'perhaps' }, { type: 'door.lock' }]),
    ]);
    expect(pub2.code).toBe(0);
    // A payload over the body limit: the broker hangs up once it has read the packet's length, buffering nothing of it.
    const big = join(dir, 'too-big.json');
    await writeFile(big, JSON.stringify({ type: 'too.big', data: { pad: 'x'.repeat(512 * 1024) } }));
    const pub3 = await mosquittoPub(['-p', String(edgePort), '-u', 'dev-2', '-P', 'dev-2-secret', '-t', 'audit/dev-2/events', '-f', big]);
    expect(pub3.code).not.toBe(0);
    // Retained presence lives in the broker's memory: over 4 KiB it is refused, as at the gateway; a small one is kept.
    const bigStatus = await mosquittoPub(['-p', String(edgePort), '-u', 'dev-1', '-P', 'dev-1-secret', '-r', '-t', 'audit/dev-1/status', '-m', 'x'.repeat(5000)]);
    expect(bigStatus.code).not.toBe(0);
    expect(await mosquittoPub(['-p', String(edgePort), '-u', 'dev-1', '-P', 'dev-1-secret', '-r', '-t', 'audit/dev-1/status', '-m', '{"state":"online"}'])).toEqual({ code: 0, stderr: '' });

    // Every PUBACK came after the append: the agent holds them all, none delivered.
    const status = await agent.status();
    expect(status.head).toBe(n + 3);
    expect(status.delivered).toBe(0);
    expect(await agent.metric('meteorzx_agent_events_in_total{intake="mqtt"}')).toBe(n + 3);
    expect(await agent.metric('meteorzx_agent_events_invalid_total{intake="mqtt"}')).toBe(1);

    const gateway = await startGateway(dir, gatewayPort);
    await waitFor(async () => (await agent.status()).delivered === n + 3, 'agent delivered everything', 60_000);

    const dev1 = await gatewayEvents(gateway.url, 'dev-1');
    expect(dev1.map((e) => e.id).sort()).toEqual(lines.map((l) => (JSON.parse(l) as { id: string }).id).sort());
    expect(dev1.every((e) => e.source === 'dev-1' && e.agent === agentId && e.ingest.integrity === 'verified')).toBe(true);

    // In the agent's order (seq): pushes of several batches in flight may be stored in either order.
    const dev2 = (await gatewayEvents(gateway.url, 'dev-2')).sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
    expect(dev2.map((e) => e.type)).toEqual(['door.open', 'meteorzx.intake.error', 'door.lock']);
    expect(dev2[0]?.id).toMatch(/^d:[0-9a-f]{64}$/);
    expect(dev2[1]?.data).toMatchObject({ intake: 'mqtt', topic: 'audit/dev-2/events', index: 1, reason: expect.stringMatching(/outcome/) });
    // One chain (the agent's) covers both devices' events, with no hole.
    const seqs = [...dev1, ...dev2].map((e) => e.seq).sort((a, b) => (a ?? 0) - (b ?? 0));
    expect(seqs).toEqual(Array.from({ length: n + 3 }, (_, i) => i + 1));
  });
});
