import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, startAgent, waitFor } from './agent-harness.js';
import { removeDir, runProcess, startGateway, tempDir } from './gateway-harness.js';

/**
 * `mqtt.sessionExpiry` (gateway) and `intake.mqtt.sessionExpiry` (agent edge broker), through Mosquitto's own
 * clients: a persistent session (`mosquitto_sub -c -i ID`) whose client comes back in time is handed what was
 * queued for it; one away longer than the expiry is gone, its queued message with it, and counted.
 */

let dir: string;
beforeAll(async () => {
  dir = await tempDir('meteorzx-session-expiry-');
});
afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

const TOPIC = 'audit/dev-1/cmd';

/** mosquitto_sub with a persistent session (-c) as client `id`; `extra`: -E (leave once subscribed) or -C/-W. */
function sub(port: number, id: string, extra: string[]) {
  return runProcess('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-c', '-i', id, '-q', '1', '-t', TOPIC, ...extra]);
}

async function pub(port: number, message: string): Promise<void> {
  const result = await runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', TOPIC, '-m', message]);
  expect(result.code, result.stderr).toBe(0);
}

/** The whole story on one broker; `expired()` reads its expiry counter from /metrics. */
async function sessionStory(port: number, expired: () => Promise<number>): Promise<void> {
  // Back within the expiry: the queued message is delivered.
  expect((await sub(port, 'kept', ['-E'])).code).toBe(0);
  await pub(port, 'for-kept');
  const kept = await sub(port, 'kept', ['-C', '1', '-W', '10']);
  expect(kept.stdout.trim()).toBe('for-kept');
  expect(await expired()).toBe(0);

  // Away longer than the expiry: the session is ended and counted, and the reconnect is handed nothing.
  expect((await sub(port, 'left', ['-E'])).code).toBe(0);
  await pub(port, 'for-left');
  await waitFor(async () => (await expired()) >= 1, 'a session expired', 20_000);
  const left = await sub(port, 'left', ['-C', '1', '-W', '2']);
  // Before: the session was kept for good, and this reconnect printed "for-left" (exit 0). 27: -W timed out.
  expect({ code: left.code, stdout: left.stdout }).toEqual({ code: 27, stdout: '' });
  // "kept" reconnected within its expiry and left again just now; it expires in turn, and nothing else does.
  await waitFor(async () => (await expired()) >= 2, 'the second session expired', 20_000);
  expect(await expired()).toBe(2);
}

/** The value of the unlabelled metric `name` in the Prometheus text at `url`; NaN when absent. */
async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? NaN : Number(line.split(' ')[1]);
}

describe('persistent MQTT sessions expire', () => {
  it('on the gateway broker (mqtt.sessionExpiry)', async () => {
    const gateway = await startGateway({ dir, config: { mqtt: { listen: '127.0.0.1:0', sessionExpiry: '3s' } } });
    try {
      await sessionStory(gateway.mqttPort, () => metric(`${gateway.httpUrl}/metrics`, 'meteorzx_gateway_mqtt_sessions_expired_total'));
    } finally {
      await gateway.stop();
    }
  });

  it('on the agent edge broker (intake.mqtt.sessionExpiry)', async () => {
    const edgePort = await freePort();
    const agent = await startAgent(dir, { id: 'edge-expiry', intake: { mqtt: { listen: `127.0.0.1:${edgePort}`, sessionExpiry: '3s' } } });
    try {
      await sessionStory(edgePort, () => agent.metric('meteorzx_agent_mqtt_sessions_expired_total'));
    } finally {
      await agent.stop();
    }
  });
});
