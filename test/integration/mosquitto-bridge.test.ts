import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredEvent } from '../../protocols/index.js';
import { freePort, gatewayEvents, killAll, removeDir, startAgent, tempDir, waitFor } from './agent-harness.js';
import { runProcess, startGateway } from './gateway-harness.js';
import { killProcesses } from './kill-procs.js';
import { startMosquitto } from './private-mosquitto.js';

/**
 * A Mosquitto bridge — the usual way to bring devices already talking to a
 * local Mosquitto into another broker — with its default settings. A bridge
 * publishes its connection state to `$SYS/broker/connection/<name>/state`
 * on the remote broker (`notifications true`) before anything else; the
 * gateway and the agent's edge broker refused that topic by closing the
 * connection, so the bridge reconnected for ever and forwarded no event.
 */

let dir: string;
const brokers = new Set<ChildProcess>();
afterAll(async () => {
  await killProcesses(brokers);
  await killAll();
  if (dir) await removeDir(dir);
});
beforeAll(async () => {
  dir = await tempDir('mosquitto-bridge');
});

/** A private Mosquitto on a free loopback port, bridging `audit/<source>/events` out to `remotePort` (defaults otherwise). */
async function startBridge(name: string, remotePort: number, source: string, login: { username: string; password: string }): Promise<{ port: number; logs: string[] }> {
  const { proc, port, logs } = await startMosquitto(dir, name, await freePort(), [
    'allow_anonymous true',
    'persistence false',
    `connection ${name}`,
    `address 127.0.0.1:${remotePort}`,
    `remote_username ${login.username}`,
    `remote_password ${login.password}`,
    `topic audit/${source}/events out 1`,
    // Reconnect quickly when the remote broker hangs up (the default waits up to 60 s).
    'restart_timeout 1 2',
  ]);
  brokers.add(proc);
  proc.once('exit', () => brokers.delete(proc));
  return { port, logs };
}

async function publish(port: number, topic: string, message: string): Promise<void> {
  const pub = await runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', topic, '-m', message]);
  expect(pub.code, pub.stderr).toBe(0);
}

describe('Mosquitto bridge with default notifications', () => {
  it('into the gateway: the bridge connects once and its events are stored', async () => {
    const gw = await startGateway({ dir, config: { auth: { mqtt: [{ username: 'site-3', password: 'site-3-secret' }] } } });
    try {
      const bridge = await startBridge('site3', gw.mqttPort, 'site-3', { username: 'site-3', password: 'site-3-secret' });
      // Published to the local Mosquitto, which queues it for the bridge and forwards it once connected.
      await publish(bridge.port, 'audit/site-3/events', '{"id":"bridged-1","type":"door.open"}');
      const stored = await waitFor(async () => {
        const events = await gatewayEvents(gw.httpUrl, 'site-3');
        return events.length > 0 ? events : undefined;
      }, 'the bridged event at the gateway', 20_000);
      expect(stored.map((e: StoredEvent) => e.id)).toEqual(['bridged-1']);
      // The notification is no topic of ours to refuse: no refused publish, no reconnect loop.
      expect(gw.logs.filter((l) => l.includes('mqtt publish refused'))).toEqual([]);
      expect(bridge.logs.filter((l) => l.includes('Connecting bridge (step 1)')).length).toBe(1);
    } finally {
      await gw.stop();
    }
  });

  it('into the agent edge broker: bridged device events are buffered', async () => {
    const edgePort = await freePort();
    const agent = await startAgent(dir, {
      id: 'edge-4',
      intake: { http: { listen: '127.0.0.1:0' }, mqtt: { listen: `127.0.0.1:${edgePort}`, users: [{ username: 'hub-1', password: 'hub-1-secret' }] } },
    });
    try {
      const bridge = await startBridge('hub1', edgePort, 'hub-1', { username: 'hub-1', password: 'hub-1-secret' });
      await publish(bridge.port, 'audit/hub-1/events', '{"id":"hub-ev-1","type":"sensor.reading"}');
      const buffered = await waitFor(async () => {
        const text = await (await fetch(`${agent.pullUrl}/v1/events?after=0`)).text();
        const events = text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as StoredEvent);
        return events.length > 0 ? events : undefined;
      }, 'the bridged event in the agent buffer', 20_000);
      expect(buffered.map((e) => [e.id, e.source])).toEqual([['hub-ev-1', 'hub-1']]);
      expect(agent.logs.filter((l) => l.includes('edge mqtt publish refused'))).toEqual([]);
      expect(bridge.logs.filter((l) => l.includes('Connecting bridge (step 1)')).length).toBe(1);
    } finally {
      await agent.stop();
    }
  });
});
