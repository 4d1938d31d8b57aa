import { connect as connectTcp, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_LIMITS } from '../../protocols/index.js';
import { HttpApi } from '../../gateway/http/api.js';
import { TokenAuth } from '../../gateway/auth/tokens.js';
import { FakeGatewayCore } from './gateway-ingress-fakes.js';

/** Holds each gunzip's answer until the test lets it go: the client can leave while its body is decompressed. */
const gate = vi.hoisted(() => ({ started: [] as (() => void)[] }));

vi.mock('node:zlib', async (importOriginal) => {
  const zlib = await importOriginal<typeof import('node:zlib')>();
  const gunzip = (buf: Buffer, opts: object, cb: (err: Error | null, out: Buffer) => void): void =>
    zlib.gunzip(buf, opts, (err, out) => gate.started.push(() => cb(err, out)));
  return { ...zlib, gunzip };
});

const limits = { ...DEFAULT_LIMITS, maxEventBytes: 1024, maxBodyBytes: 64 * 1024, maxBatchEvents: 50 };

let apps: HttpApi[] = [];
afterEach(async () => {
  await Promise.all(apps.map((a) => a.close()));
  apps = [];
});

const until = async (ok: () => boolean): Promise<void> => {
  while (!ok()) await new Promise((r) => setTimeout(r, 5));
};

describe('gateway HTTP ingest: clients that leave mid-request', () => {
  it('frees the decompressed bytes of a gzip post whose client left while it was decompressed', async () => {
    const core = new FakeGatewayCore(limits);
    const api = new HttpApi({ ingestor: core, storage: core, tokens: new TokenAuth([]), limits, isReady: () => true, maxInflightIngests: 64, maxPendingIngestBytes: 100_000, logger: pino({ level: 'silent' }) });
    apps.push(api);
    const { port } = await api.start('127.0.0.1', 0);
    const serverSockets: Socket[] = [];
    api.app.server.on('connection', (s: Socket) => serverSockets.push(s));
    // 45 events of ≈950 bytes: ≈44 KB inflated; two such bodies fit the budget of 100,000 bytes, three do not.
    const body = (id: string) => Array.from({ length: 45 }, (_, i) => `${JSON.stringify({ id: `${id}-${i}`, type: 't', source: 's', data: { pad: 'x'.repeat(900) } })}\n`).join('');

    for (let round = 0; round < 2; round += 1) {
      const gz = gzipSync(body(`gone${round}`));
      const sock: Socket = connectTcp(port, '127.0.0.1');
      sock.on('error', () => undefined);
      const closed = new Promise((resolve) => sock.on('close', resolve));
      sock.write(`POST /v1/events HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-ndjson\r\nContent-Encoding: gzip\r\nContent-Length: ${gz.byteLength}\r\n\r\n`);
      sock.write(gz);
      await until(() => gate.started.length > 0);
      // The client leaves (a reset: a FIN alone is a half-close, which is answered) while its body is inflated:
      // the gateway sees the close first, then the inflated body.
      sock.resetAndDestroy();
      await closed;
      await until(() => serverSockets.every((s) => s.destroyed));
      await new Promise((r) => setImmediate(r));
      for (const release of gate.started.splice(0)) release();
      await until(() => core.events.some((e) => e.id === `gone${round}-44`));
    }

    // Nothing is in progress now: a post of ≈44 KB fits the budget. Before, each left body's inflated bytes stayed
    // counted for good, and this one was answered 503 (ingests in progress hold ≈88,000 body bytes).
    const res = await fetch(`http://127.0.0.1:${port}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: body('after') });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { accepted: number }).accepted).toBe(45);
  });
});
