import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, runProcess, startGateway, tempDir, type RunningGateway } from './gateway-harness.js';
import { IdleFlood, silentAnswer } from './idle-flood.js';

/**
 * Connections that never send a request, against the gateway's HTTP API.
 * Measured before with the real gateway under `ulimit -n 1024`: 1,100 such
 * connections took every descriptor; curl's POST and /readyz got "Connection
 * reset by peer" and mosquitto_pub could not connect either (rc 7), for the
 * 60 s headersTimeout plus up to 30 s until Node's next check, and for good
 * while the flood reopened them. Now http.maxConnections caps them (default:
 * a quarter of the open-file limit, at most 4096), the connection waiting
 * longest gives way to a newcomer at the cap, and http.headersTimeout
 * (default 10 s, checked every second) answers a silent one 408.
 */
let dir: string;
const flood = new IdleFlood();
let gw: RunningGateway | undefined;

async function floodWith(port: number, n: number): Promise<void> {
  flood.open(port, n);
  // Connected (or refused and reopened) at least once each.
  await new Promise((resolve) => setTimeout(resolve, 1500));
}

beforeAll(async () => {
  dir = await tempDir('meteorzx-http-idle-flood-');
});

afterEach(async () => {
  flood.stop();
  await gw?.stop();
  gw = undefined;
});

afterAll(async () => {
  await removeDir(dir);
});

const post = (url: string) =>
  runProcess('curl', ['-sS', '-m', '5', '-w', '\n%{http_code}', '-H', 'content-type: application/json', '-d', '{"type":"door.open","source":"s1"}', `${url}/v1/events`]);

describe('idle connections flooding the gateway HTTP API', () => {
  it('under ulimit -n 1024, 1,100 of them leave HTTP ingest, /readyz and MQTT working (default cap)', async () => {
    gw = await startGateway({ dir, nofile: 1024 });
    await floodWith(gw.httpPort, 1100);
    const r = await post(gw.httpUrl);
    expect(r.stdout, r.stderr).toMatch(/"accepted":1.*\n200$/s);
    const ready = await runProcess('curl', ['-sS', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `${gw.httpUrl}/readyz`]);
    expect(ready.stdout).toBe('200');
    const pub = await runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gw.mqttPort), '-q', '1', '-t', 'audit/dev1/events', '-m', '{"type":"t"}']);
    expect(pub.code, pub.stderr).toBe(0);
  }, 60_000);

  it('at http.maxConnections a flood that reopens what is closed keeps no client out; a silent connection gets 408', async () => {
    gw = await startGateway({ dir, config: { http: { listen: '127.0.0.1:0', maxConnections: 32, headersTimeout: '2s' } } });
    const port = gw.httpPort;
    await floodWith(port, 64);
    for (let i = 0; i < 5; i += 1) {
      const r = await post(gw.httpUrl);
      expect(r.stdout, r.stderr).toMatch(/"rejected":\[\]\}\n200$/);
    }
    flood.stop();
    expect(await silentAnswer(port)).toMatch(/^HTTP\/1\.1 408 Request Timeout/);
  }, 60_000);
});
