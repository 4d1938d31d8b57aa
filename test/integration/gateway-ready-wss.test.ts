import { mkdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, removeDir, startGateway, tempDir, waitFor } from './agent-harness.js';
import { makePki, type TestPki } from './test-pki.js';

/**
 * The gateway's ready line names each listener by a URL that works: the scheme of each MQTT listener (a
 * secure WebSocket one, mqtt.ws.tls, is wss://, not ws://), and an IPv6 address in brackets.
 */

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

  it('runs on through a reload after the reader of its stdout has gone (`meteorzx gateway | head -1`)', async () => {
    await mkdir(join(dir, 'epipe'));
    const port = await freePort();
    const gateway = await startGateway(join(dir, 'epipe'), port, { logLevel: 'info' });
    await waitFor(() => gateway.stdout.find((l) => l.startsWith('meteorzx gateway ready:')), 'the ready line');
    // The reader closes its end: the ready line written again after the reload meets EPIPE.
    gateway.proc.stdout?.destroy();
    gateway.proc.kill('SIGHUP');
    await waitFor(() => gateway.logs.filter((l) => l.includes('"msg":"listening"')).length === 2, 'listening again after the reload');
    // Before: exit 1 at once, with Node's "Unhandled 'error' event … write EPIPE" stack trace on stderr.
    const healthy = await waitFor(async () => {
      if (gateway.proc.exitCode !== null) throw new Error(`gateway exited ${gateway.proc.exitCode}: ${gateway.logs.slice(-3).join('\n')}`);
      return (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok;
    }, '/healthz after the reload');
    expect(healthy).toBe(true);
    expect(gateway.proc.exitCode).toBeNull();
    expect(gateway.logs.join('\n')).not.toContain('EPIPE');
    expect(await gateway.stop()).toBe(0);
  }, 60_000);

  it('puts an IPv6 listen address in brackets, so that each URL can be used as it is', async () => {
    await mkdir(join(dir, 'ipv6'));
    const gateway = await startGateway(join(dir, 'ipv6'), await freePort(), { mqtt: { listen: '[::1]:0', ws: { listen: '[::1]:0' } } });
    const ready = await waitFor(() => gateway.stdout.find((l) => l.startsWith('meteorzx gateway ready:')), 'the ready line');
    const [mqtt, ws] = ready.split(' ').slice(-2) as [string, string];
    // Before: mqtt://::1:40623, which no URL parser takes (nor mosquitto_sub -L, nor curl).
    expect(mqtt).toMatch(/^mqtt:\/\/\[::1\]:\d+$/);
    expect(ws).toMatch(/^ws:\/\/\[::1\]:\d+$/);
    const url = new URL(mqtt);
    // The address it names is the listener's.
    await new Promise<void>((resolve, reject) => {
      const socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) }, () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', reject);
    });
    await gateway.stop();
  }, 60_000);
});
