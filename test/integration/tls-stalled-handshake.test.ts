import { mkdir } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, removeDir, startAgent, startGateway, tempDir } from './agent-harness.js';
import { startGateway as startHarnessGateway } from './gateway-harness.js';
import { makePki, type TestPki } from './test-pki.js';

/**
 * Clients that connect to a TLS listener and never complete the handshake
 * (a scanner, a slowloris, a plain-text client that waits to be spoken to).
 * On the listeners built on tls.Server (syslog tls://, the edge MQTT broker,
 * the gateway's mqtt.tls) Node reported the handshake timeout and left the
 * socket open, and a stop waited for it: SIGTERM never finished while such
 * a client stayed connected.
 */

let dir: string;
let pki: TestPki;
const sockets: Socket[] = [];

beforeAll(async () => {
  dir = await tempDir('tls-stalled');
  await mkdir(join(dir, 'pki'));
  pki = await makePki(join(dir, 'pki'));
}, 60_000);

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await killAll();
  await removeDir(dir);
});

/** A TCP connection that sends nothing; resolves once connected, with a promise of its close. */
function silent(port: number): Promise<{ closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve({ closed: new Promise<void>((r) => socket.once('close', () => r())) }));
    socket.on('error', reject);
    sockets.push(socket);
  });
}

describe('stop with clients stalled in their TLS handshake', () => {
  it('the agent exits on SIGTERM with such clients on its syslog tls:// and MQTT over TLS listeners', async () => {
    const tls = { cert: pki.cert, key: pki.key };
    const [syslogPort, mqttPort] = [await freePort(), await freePort()];
    await mkdir(join(dir, 'agent'));
    const agent = await startAgent(join(dir, 'agent'), {
      id: 'tls-stalled',
      intake: { http: { listen: '127.0.0.1:0' }, syslog: { listen: `tls://127.0.0.1:${syslogPort}`, tls }, mqtt: { listen: `127.0.0.1:${mqttPort}`, tls } },
    });
    const clients = await Promise.all([silent(syslogPort), silent(mqttPort)]);
    await new Promise((r) => setTimeout(r, 200)); // let the agent take both
    // Killed (code null) if the stop hangs; it used to hang as long as the clients stayed.
    expect(await agent.stop(8_000)).toBe(0);
    await Promise.all(clients.map((c) => c.closed));
  }, 30_000);

  it('the gateway exits on SIGTERM with such a client on mqtt.tls', async () => {
    const mqttsPort = await freePort();
    await mkdir(join(dir, 'gateway'));
    const gateway = await startGateway(join(dir, 'gateway'), await freePort(), {
      mqtt: { listen: '127.0.0.1:0', tls: { listen: `127.0.0.1:${mqttsPort}`, cert: pki.cert, key: pki.key } },
    });
    const client = await silent(mqttsPort);
    await new Promise((r) => setTimeout(r, 200));
    expect(await gateway.stop(8_000)).toBe(0);
    await client.closed;
  }, 30_000);

  it('the gateway stops at once with clients stalled in their handshake on its HTTPS API and wss listener', async () => {
    const wssPort = await freePort();
    await mkdir(join(dir, 'gateway-https'));
    const tls = { cert: pki.cert, key: pki.key };
    const gateway = await startHarnessGateway({ dir: join(dir, 'gateway-https'), config: { http: { listen: '127.0.0.1:0', tls }, mqtt: { listen: '127.0.0.1:0', ws: { listen: `127.0.0.1:${wssPort}`, tls } } } });
    const clients = await Promise.all([silent(gateway.httpPort), silent(wssPort), silent(gateway.httpPort)]);
    // One of them inside its ClientHello: the start of a TLS record, then nothing.
    sockets.at(-1)?.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01]));
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    // The handshake timeout is 10 s and the API's close grace 5 s: well under both means they were dropped.
    expect(await gateway.stop()).toBe(0);
    expect(Date.now() - started).toBeLessThan(4_000);
    await Promise.all(clients.map((c) => c.closed));
  }, 30_000);
});
