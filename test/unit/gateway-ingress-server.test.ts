import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Agent, request } from 'undici';
import mqtt from 'mqtt';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { parseGatewayConfig } from '../../gateway/config.js';
import { Gateway, type RunningPipeline } from '../../gateway/server.js';
import type { Storage } from '../../gateway/storage/types.js';
import { createGatewayMetrics } from '../../gateway/metrics.js';
import { FakeGatewayCore } from './gateway-ingress-fakes.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.();
});

/** A Gateway over the in-memory core, recording lifecycle calls in order. */
function makeGateway(raw: Record<string, unknown>, insecure = false) {
  const core = new FakeGatewayCore();
  const calls: string[] = [];
  const storage = {
    ...Object.fromEntries(['query', 'custody', 'sources', 'verify'].map((k) => [k, (core as unknown as Record<string, (...a: unknown[]) => unknown>)[k]?.bind(core)])),
    open: async () => void calls.push('storage.open'),
    close: async () => void calls.push('storage.close'),
  } as unknown as Storage;
  const pipeline: RunningPipeline = {
    ingest: (items, ctx) => core.ingest(items, ctx),
    start: async () => void calls.push('pipeline.start'),
    close: async () => void calls.push('pipeline.close'),
  };
  const config = parseGatewayConfig({ http: { listen: '127.0.0.1:0' }, mqtt: { listen: '127.0.0.1:0' }, ...raw });
  const metrics = createGatewayMetrics();
  const gateway = new Gateway({ config, logger: pino({ level: 'silent' }), insecure, storage, createPipeline: () => pipeline, metrics });
  closers.push(() => gateway.close());
  return { gateway, core, calls, metrics };
}

describe('Gateway lifecycle', () => {
  it('starts storage, pipeline, then listeners; serves both ingress; drains in reverse; close is idempotent', async () => {
    const { gateway, core, calls, metrics } = makeGateway({});
    const addrs = await gateway.start();
    expect(gateway.isReady).toBe(true);
    expect(calls).toEqual(['storage.open', 'pipeline.start']);
    const port = addrs.mqtt.find((l) => l.name === 'tcp')?.port;
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
    await client.publishAsync('audit/dev-1/events', JSON.stringify({ id: 'g1', type: 't' }), { qos: 1 });
    expect((await metrics.registry.getSingleMetricAsString('meteorzx_gateway_mqtt_clients'))).toMatch(/ 1$/m);
    await client.endAsync();
    const res = await fetch(`http://127.0.0.1:${addrs.http.port}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'g2', type: 't' }),
    });
    expect(res.status).toBe(200);
    expect(core.events.map((e) => [e.id, e.ingest.method])).toEqual([
      ['g1', 'mqtt'],
      ['g2', 'http'],
    ]);
    const metricsText = await (await fetch(`http://127.0.0.1:${addrs.http.port}/metrics`)).text();
    expect(metricsText).toMatch(/meteorzx_gateway_mqtt_clients/);
    await gateway.close();
    await gateway.close();
    expect(calls).toEqual(['storage.open', 'pipeline.start', 'pipeline.close', 'storage.close']);
    expect(gateway.isReady).toBe(false);
  });

  it('refuses a non-loopback listener without auth, unless insecure or auth is configured', async () => {
    const a = makeGateway({ http: { listen: '0.0.0.0:0' } });
    await expect(a.gateway.start()).rejects.toMatchObject({ code: 'METEORZX_INSECURE_BIND', message: expect.stringMatching(/http\.listen binds 0\.0\.0\.0.*--insecure/) });
    expect(a.calls).toEqual([]); // refused before anything was opened

    const b = makeGateway({ mqtt: { listen: '0.0.0.0:0' } });
    await expect(b.gateway.start()).rejects.toMatchObject({ message: expect.stringMatching(/mqtt\.listen.*auth\.mqtt/) });

    const c = makeGateway({ mqtt: { listen: '0.0.0.0:0' } }, true);
    await c.gateway.start();
    await c.gateway.close();

    const d = makeGateway({ mqtt: { listen: '0.0.0.0:0' }, auth: { mqtt: [{ username: 'dev-1', password: 'x' }] } });
    await d.gateway.start();
  });

  it('names the port and the config key when a port is taken, and closes what it opened', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    closers.push(() => new Promise((r) => blocker.close(r)));
    const taken = (blocker.address() as { port: number }).port;

    const m = makeGateway({ mqtt: { listen: `127.0.0.1:${taken}` } });
    await expect(m.gateway.start()).rejects.toMatchObject({
      code: 'METEORZX_PORT_IN_USE',
      message: `port ${taken} on 127.0.0.1 is already in use: stop the other process or change mqtt.listen in the config`,
    });
    expect(m.calls).toEqual(['storage.open', 'pipeline.start', 'pipeline.close', 'storage.close']);

    const h = makeGateway({ http: { listen: `127.0.0.1:${taken}` } });
    await expect(h.gateway.start()).rejects.toMatchObject({ code: 'METEORZX_PORT_IN_USE', message: expect.stringMatching(/http\.listen/) });
  });
});

describe('TLS and WebSocket listeners', () => {
  it('serves HTTPS and MQTT over TLS and WebSocket when configured', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'meteorzx-tls-'));
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const { gateway, core } = makeGateway({
      http: { listen: '127.0.0.1:0', tls: { cert, key } },
      mqtt: { listen: '127.0.0.1:0', tls: { listen: '127.0.0.1:0', cert, key }, ws: { listen: '127.0.0.1:0' } },
    });
    const addrs = await gateway.start();
    expect(addrs.http.protocol).toBe('https');
    const ca = readFileSync(cert);
    const dispatcher = new Agent({ connect: { ca } });
    const res = await request(`https://127.0.0.1:${addrs.http.port}/healthz`, { dispatcher });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    await dispatcher.close();

    const tlsPort = addrs.mqtt.find((l) => l.name === 'tls')?.port;
    const tlsClient = await mqtt.connectAsync(`mqtts://127.0.0.1:${tlsPort}`, { ca, reconnectPeriod: 0 });
    await tlsClient.publishAsync('audit/tls-dev/events', JSON.stringify({ id: 'tls-1', type: 't' }), { qos: 1 });
    await tlsClient.endAsync();

    const wsPort = addrs.mqtt.find((l) => l.name === 'ws')?.port;
    const wsClient = await mqtt.connectAsync(`ws://127.0.0.1:${wsPort}/mqtt`, { reconnectPeriod: 0 });
    await wsClient.publishAsync('audit/ws-dev/events', JSON.stringify({ id: 'ws-1', type: 't' }), { qos: 1 });
    await wsClient.endAsync();

    expect(core.events.map((e) => [e.id, e.source])).toEqual([
      ['tls-1', 'tls-dev'],
      ['ws-1', 'ws-dev'],
    ]);
    expect(core.contexts[1]?.peer).toMatch(/@127\.0\.0\.1:\d+$/);
  });
});
