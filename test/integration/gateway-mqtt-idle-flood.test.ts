import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, runProcess, startGateway, tempDir, type RunningGateway } from './gateway-harness.js';
import { IdleFlood } from './idle-flood.js';

/**
 * Connections that never send CONNECT, against the gateway's MQTT listener.
 * Measured before with the real gateway under `ulimit -n 1024`: 1,100 of
 * them took every descriptor, and curl's POST to the HTTP API got
 * "Connection reset by peer" until aedes' 30 s connect timeout (for good
 * while the flood reopened them). Now mqtt.maxConnections (default: half of
 * the open-file limit) bounds them, and the one waiting longest gives way to
 * a newcomer: HTTP ingest answers, and mosquitto_pub connects and publishes.
 */
let dir: string;
let gw: RunningGateway;
const flood = new IdleFlood();

beforeAll(async () => {
  dir = await tempDir('meteorzx-mqtt-idle-flood-');
  gw = await startGateway({ dir, nofile: 1024 });
}, 30_000);

afterAll(async () => {
  flood.stop();
  await gw.stop();
  await removeDir(dir);
});

describe('idle connections flooding the MQTT listener (ulimit -n 1024)', () => {
  it('leave HTTP ingest answering, and a device still connects and publishes', async () => {
    flood.open(gw.mqttPort, 1100);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const r = await runProcess('curl', ['-sS', '-m', '5', '-w', '\n%{http_code}', '-H', 'content-type: application/json', '-d', '{"type":"door.open","source":"s1"}', `${gw.httpUrl}/v1/events`]);
    expect(r.stdout, r.stderr).toMatch(/"accepted":1.*\n200$/s);
    const pub = await runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gw.mqttPort), '-q', '1', '-i', 'dev1', '-t', 'audit/dev1/events', '-m', '{"id":"m1","type":"t"}']);
    expect(pub.code, pub.stderr).toBe(0);
    const stored = await runProcess('curl', ['-sS', `${gw.httpUrl}/v1/events?id=m1`]);
    expect(stored.stdout).toContain('"id":"m1"');
  }, 60_000);
});
