import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, removeDir, startGateway, tempDir, waitFor } from './agent-harness.js';
import { makePki, type TestPki } from './test-pki.js';

/** The gateway's ready line names each MQTT listener by its scheme: a secure WebSocket one (mqtt.ws.tls) is wss://, not ws://. */

let dir: string;
let pki: TestPki;
beforeAll(async () => {
  dir = await tempDir('gateway-ready-wss');
  await mkdir(join(dir, 'pki'));
  pki = await makePki(join(dir, 'pki'));
}, 60_000);
afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

describe('gateway ready line', () => {
  it('says wss:// for MQTT over secure WebSocket and ws:// for the clear one', async () => {
    const [wssPort, wsPort] = [await freePort(), await freePort()];
    const tls = { cert: pki.cert, key: pki.key };
    for (const [name, ws, scheme] of [
      ['secure', { listen: `127.0.0.1:${wssPort}`, tls }, `wss://127.0.0.1:${wssPort}`],
      ['clear', { listen: `127.0.0.1:${wsPort}` }, `ws://127.0.0.1:${wsPort}`],
    ] as const) {
      await mkdir(join(dir, name));
      const gateway = await startGateway(join(dir, name), await freePort(), { mqtt: { listen: '127.0.0.1:0', ws } });
      const ready = await waitFor(() => gateway.stdout.find((l) => l.startsWith('meteorzx gateway ready:')), 'the ready line');
      expect(ready.split(' ').at(-1)).toBe(scheme);
      await gateway.stop();
    }
  }, 60_000);
});
