import { request as httpRequest } from 'node:http';
import { connect as connectTcp, type Socket } from 'node:net';
import { deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../protocols/index.js';
import { buildHttpApi, HttpApi, type HttpApiOptions } from '../../gateway/http/api.js';
import { TokenAuth } from '../../gateway/auth/tokens.js';
import { GatewayErrors } from '../../gateway/errors.js';
import { FakeGatewayCore } from './gateway-ingress-fakes.js';

const limits = { ...DEFAULT_LIMITS, maxEventBytes: 1024, maxBodyBytes: 64 * 1024, maxBatchEvents: 50 };

function setup(over: Partial<HttpApiOptions> = {}) {
  const core = new FakeGatewayCore(limits);
  const app = buildHttpApi({
    ingestor: core,
    storage: core,
    tokens: new TokenAuth([]),
    limits,
    isReady: () => true,
    maxInflightIngests: 8,
    logger: pino({ level: 'silent' }),
    ...over,
  });
  return { core, app };
}

let apps: { close(): Promise<unknown> }[] = [];
afterEach(async () => {
  await Promise.all(apps.map((a) => a.close()));
  apps = [];
});

function make(over: Partial<HttpApiOptions> = {}) {
  const s = setup(over);
  apps.push(s.app);
  return s;
}

describe('POST /v1/events', () => {
  it('takes a JSON array and counts accepted, duplicates and rejected by index', async () => {
    const { app, core } = make();
    const body = [
      { id: 'a', type: 't', source: 's' },
      { id: 'a', type: 't', source: 's' },
      { id: 'b', type: 7 },
      { id: 'c', type: 't', source: 's' },
    ];
    const res = await app.inject({ method: 'POST', url: '/v1/events', payload: body });
    expect(res.statusCode).toBe(200);
    const json = res.json();
    expect(json.accepted).toBe(2);
    expect(json.duplicates).toBe(1);
    expect(json.rejected).toHaveLength(1);
    expect(json.rejected[0].index).toBe(2);
    expect(json.rejected[0].error).toMatch(/type/);
    expect(core.events.map((e) => e.id)).toEqual(['a', 'c']);
    expect(core.contexts[0]).toMatchObject({ method: 'http' });
  });

  it('takes NDJSON with a gzip body and rejects a bad line alone', async () => {
    const { app, core } = make();
    const lines = Buffer.concat([
      Buffer.from('{"id":"n1","type":"t","source":"s"}\n'),
      Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d, 0x0a]), // invalid UTF-8
      Buffer.from('{"id":"n2","type":\n'),
      Buffer.from('{"id":"n3","type":"t","source":"s"}\n'),
    ]);
    const res = await app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' },
      payload: gzipSync(lines),
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().accepted).toBe(2);
    expect(res.json().rejected.map((r: { index: number; error: string }) => [r.index, r.error.split(':')[0]])).toEqual([
      [1, 'invalid UTF-8'],
      [2, 'malformed JSON'],
    ]);
    expect(core.events.map((e) => e.id)).toEqual(['n1', 'n3']);
  });

  it('takes Content-Encoding: deflate as the zlib format and as the bare deflate stream some clients send', async () => {
    const { app, core } = make();
    const body = (id: string) => Buffer.from(`${JSON.stringify({ id, type: 't', source: 's' })}\n`);
    const post = (payload: Buffer) =>
      app.inject({ method: 'POST', url: '/v1/events', headers: { 'content-type': 'application/x-ndjson', 'content-encoding': 'deflate' }, payload });
    expect((await post(deflateSync(body('z1')))).statusCode).toBe(200);
    // Before: 400 "body is not valid deflate: incorrect header check".
    const bare = await post(deflateRawSync(body('r1')));
    expect(bare.statusCode, bare.body).toBe(200);
    expect((await post(Buffer.from('not deflate at all'))).statusCode).toBe(400);
    expect(core.events.map((e) => e.id)).toEqual(['z1', 'r1']);
  });

  it('takes Fluent Bit json_stream and gelf bodies (objects back to back or one per line, sent as application/json)', async () => {
    const { app, core } = make();
    const headers = { 'content-type': 'application/json' };
    const stream = await app.inject({ method: 'POST', url: '/v1/events', headers, payload: '{"id":"s1","type":"t","source":"fb"}{"id":"s2","type":"t","source":"fb"}' });
    expect(stream.statusCode).toBe(200);
    expect(stream.json()).toMatchObject({ accepted: 2, rejected: [] });
    const lines = await app.inject({ method: 'POST', url: '/v1/events', headers, payload: '{"id":"g1","type":"t","source":"fb"}\n{"id":"g2","type":"t","source":"fb"}\n' });
    expect(lines.json()).toMatchObject({ accepted: 2, rejected: [] });
    expect(core.events.map((e) => e.id)).toEqual(['s1', 's2', 'g1', 'g2']);
  });

  it('answers 400 for an unreadable body, 415 for an unknown type, 413 over the limits', async () => {
    const { app } = make();
    const bad = await app.inject({ method: 'POST', url: '/v1/events', headers: { 'content-type': 'application/json' }, payload: '{"type":' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('METEORZX_BODY_UNREADABLE');

    const xml = await app.inject({ method: 'POST', url: '/v1/events', headers: { 'content-type': 'text/xml' }, payload: '<e/>' });
    expect(xml.statusCode).toBe(415);
    expect(xml.json()).toMatchObject({ code: 'METEORZX_UNSUPPORTED_MEDIA_TYPE' });
    expect(xml.json().error).toMatch(/application\/x-ndjson/);

    const big = await app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ type: 't', data: { pad: 'x'.repeat(70 * 1024) } }),
    });
    expect(big.statusCode).toBe(413);
    expect(big.json().code).toBe('METEORZX_BODY_TOO_LARGE');
    // Named as DESIGN §2 asks, as the other limits are; it was fastify's "Request body is too large".
    expect(big.json().error).toMatch(/over the limit of \d+ bytes \(maxBodyBytes\)/);

    const bomb = await app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' },
      payload: gzipSync(Buffer.alloc(1024 * 1024, 0x20)),
    });
    expect(bomb.statusCode).toBe(413);

    const many = await app.inject({ method: 'POST', url: '/v1/events', payload: Array.from({ length: 51 }, () => ({ type: 't' })) });
    expect(many.statusCode).toBe(413);
    expect(many.json().code).toBe('METEORZX_BATCH_TOO_LARGE');
  });

  it('rejects an oversized or too deep event but keeps its neighbours', async () => {
    const { app, core } = make();
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = { d: deep };
    const res = await app.inject({
      method: 'POST',
      url: '/v1/events',
      payload: [{ id: 'ok1', type: 't' }, { type: 't', data: { pad: 'x'.repeat(2000) } }, { type: 't', data: deep }, { id: 'ok2', type: 't' }],
    });
    expect(res.statusCode).toBe(200);
    const rejected = res.json().rejected as { index: number; error: string }[];
    expect(rejected.map((r) => r.index)).toEqual([1, 2]);
    expect(rejected[0]?.error).toMatch(/maxEventBytes/);
    expect(rejected[1]?.error).toMatch(/maxDepth/);
    expect(core.events.map((e) => e.id)).toEqual(['ok1', 'ok2']);
  });

  it('answers 503 with Retry-After when the pipeline is overloaded', async () => {
    const { app, core } = make();
    core.failNext = { count: 1, error: () => GatewayErrors.METEORZX_GATEWAY_OVERLOADED('queue full') };
    const res = await app.inject({ method: 'POST', url: '/v1/events', payload: { type: 't' } });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.json().code).toBe('METEORZX_GATEWAY_OVERLOADED');
  });

  it('answers 500 without internals for an unexpected error', async () => {
    const { app, core } = make();
    core.failNext = { count: 1, error: () => new Error('secret path /var/x') };
    const res = await app.inject({ method: 'POST', url: '/v1/events', payload: { type: 't' } });
    expect(res.statusCode).toBe(500);
    expect(res.body).not.toMatch(/secret/);
  });
});

describe('auth', () => {
  const tokens = new TokenAuth([
    { name: 'in', token: 'tin', scopes: ['ingest'] },
    { name: 'q', token: 'tq', scopes: ['query'] },
  ]);

  it('needs the ingest scope to POST and the query scope to GET; probes are open', async () => {
    const { app } = make({ tokens });
    const post = (auth?: string) =>
      app.inject({ method: 'POST', url: '/v1/events', payload: { type: 't' }, headers: auth ? { authorization: auth } : {} });
    expect((await post()).statusCode).toBe(401);
    expect((await post()).json().code).toBe('METEORZX_UNAUTHORIZED');
    expect((await post('Bearer tq')).statusCode).toBe(403);
    expect((await post('Bearer tin')).statusCode).toBe(200);
    expect((await app.inject({ url: '/v1/events', headers: { authorization: 'Bearer tin' } })).statusCode).toBe(403);
    expect((await app.inject({ url: '/v1/events', headers: { authorization: 'Bearer tq' } })).statusCode).toBe(200);
    expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/metrics' })).statusCode).toBe(401);
    // The router decodes the path: an encoded one is the same route, with the same scope.
    const encoded = (auth: string) => app.inject({ method: 'POST', url: '/v1/%65vents', payload: { type: 't' }, headers: { authorization: auth } });
    expect((await encoded('Bearer tin')).statusCode).toBe(200);
    expect((await encoded('Bearer tq')).statusCode).toBe(403);
    expect((await app.inject({ url: '/health%7A' })).statusCode).toBe(200);
  });

  it('bounds ingests in flight, whichever spelling of the path reaches the route', async () => {
    const stalled: (() => void)[] = [];
    const ingestor = {
      ingest: () => new Promise<{ accepted: number; duplicates: number; rejected: [] }>((resolve) => stalled.push(() => resolve({ accepted: 1, duplicates: 0, rejected: [] }))),
    };
    const { app } = make({ ingestor, maxInflightIngests: 2 });
    const post = (url: string) => app.inject({ method: 'POST', url, payload: { type: 't', source: 's' } });
    const held = [post('/v1/events'), post('/v1/%65vents')];
    while (stalled.length < 2) await new Promise((r) => setTimeout(r, 5));
    for (const url of ['/v1/events', '/v1/%65vents', '/v1/event%73?x=1']) {
      // Let in, it would stall like the others: 'held' after 2 s.
      const res = await Promise.race([post(url), new Promise<'held'>((r) => setTimeout(() => r('held'), 2000))]);
      expect(res === 'held' ? res : res.json().code).toBe('METEORZX_GATEWAY_OVERLOADED');
    }
    expect(stalled).toHaveLength(2);
    for (const release of stalled) release();
    expect((await Promise.all(held)).map((r) => r.statusCode)).toEqual([200, 200]);
  });

  it('bounds the body bytes ingests hold at once: past maxPendingIngestBytes a post is answered 503, declared or chunked, until they are freed', async () => {
    const stalled: (() => void)[] = [];
    const core = new FakeGatewayCore(limits);
    const ingestor = {
      ingest: (...a: Parameters<FakeGatewayCore['ingest']>) => new Promise<Awaited<ReturnType<FakeGatewayCore['ingest']>>>((resolve) => stalled.push(() => void core.ingest(...a).then(resolve))),
    };
    const api = new HttpApi({ ingestor, storage: core, tokens: new TokenAuth([]), limits, isReady: () => true, maxInflightIngests: 64, maxPendingIngestBytes: 80_000, logger: pino({ level: 'silent' }) });
    apps.push(api);
    const { port } = await api.start('127.0.0.1', 0);
    // 45 events of ≈950 bytes: ≈44 KB, within maxBodyBytes and maxBatchEvents; two are over the budget of 80,000.
    const body = (id: string) => Array.from({ length: 45 }, (_, i) => `${JSON.stringify({ id: `${id}-${i}`, type: 't', source: 's', data: { pad: 'x'.repeat(900) } })}\n`).join('');
    const post = (id: string) => fetch(`http://127.0.0.1:${port}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: body(id) });
    const chunked = (id: string) =>
      new Promise<{ status: number; code: string }>((resolve, reject) => {
        const req = httpRequest({ port, host: '127.0.0.1', method: 'POST', path: '/v1/events', headers: { 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' } }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, code: (JSON.parse(text) as { code?: string }).code ?? 'ok' }));
        });
        req.on('error', reject);
        const text = body(id);
        req.write(text.slice(0, 20_000));
        setTimeout(() => req.end(text.slice(20_000)), 20);
      });
    const first = post('a');
    while (stalled.length < 1) await new Promise((r) => setTimeout(r, 5));
    // 44 KB held: another 44 KB is over the 80,000 bytes, declared or not. Before: both read and ingested.
    const refused = await post('b');
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(((await refused.json()) as { error: string }).error).toMatch(/hold \d+ body bytes \(the limit is 80000\)/);
    expect(await chunked('c')).toEqual({ status: 503, code: 'METEORZX_GATEWAY_OVERLOADED' });
    for (const release of stalled.splice(0)) release();
    expect((await first).status).toBe(200);
    // Freed with the answers: one at a time they fit again.
    for (const id of ['d', 'e']) {
      const next = post(id);
      while (stalled.length < 1) await new Promise((r) => setTimeout(r, 5));
      for (const release of stalled.splice(0)) release();
      expect((await next).status).toBe(200);
    }
    const viaChunks = chunked('f');
    while (stalled.length < 1) await new Promise((r) => setTimeout(r, 5));
    for (const release of stalled.splice(0)) release();
    expect(await viaChunks).toEqual({ status: 200, code: 'ok' });
    expect([...new Set(core.events.map((e) => e.id.split('-')[0]))]).toEqual(['a', 'd', 'e', 'f']);
    expect(core.events).toHaveLength(4 * 45);
  });

  it('ends an upload that stalls (408) and frees its ingest slot for the next client', async () => {
    const core = new FakeGatewayCore(limits);
    const api = new HttpApi({
      ingestor: core,
      storage: core,
      tokens: new TokenAuth([]),
      limits,
      isReady: () => true,
      maxInflightIngests: 2,
      logger: pino({ level: 'silent' }),
      requestTimeoutMs: 300,
    });
    apps.push(api);
    const { port } = await api.start('127.0.0.1', 0);
    // Two uploads that send their headers and one byte of a 100-byte body, then nothing: every slot is taken.
    const stalled = [0, 1].map(
      () =>
        new Promise<string>((resolve) => {
          let answer = '';
          const sock: Socket = connectTcp(port, '127.0.0.1', () =>
            sock.write('POST /v1/events HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{'),
          );
          sock.on('data', (d: Buffer) => (answer += d.toString()));
          sock.on('error', () => undefined);
          sock.on('close', () => resolve(answer));
          setTimeout(() => sock.destroy(), 5000).unref();
        }),
    );
    const post = () => fetch(`http://127.0.0.1:${port}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"id":"n1","type":"t","source":"s"}' });
    await new Promise((r) => setTimeout(r, 100));
    expect((await post()).status).toBe(503);
    // Before the fix: never answered (fastify sets no request timeout), and the neighbour got 503 for good.
    for (const answer of await Promise.all(stalled)) expect(answer).toMatch(/^HTTP\/1\.1 408/);
    const after = await post();
    expect(after.status).toBe(200);
    expect(core.events.map((e) => e.id)).toEqual(['n1']);
  });

  it('Expect: 100-continue: answers 401 or 413 instead of the 100, and invites the body of a good request', async () => {
    const core = new FakeGatewayCore(limits);
    const api = new HttpApi({
      ingestor: core,
      storage: core,
      tokens: new TokenAuth([{ name: 'ops', token: 'secret', scopes: ['ingest'] }]),
      limits,
      isReady: () => true,
      maxInflightIngests: 8,
      logger: pino({ level: 'silent' }),
    });
    apps.push(api);
    const { port } = await api.start('127.0.0.1', 0);
    // The status lines the server writes; the body goes only once a 100 Continue came.
    const send = (headers: string, body?: string) =>
      new Promise<string[]>((resolve, reject) => {
        const lines: string[] = [];
        let text = '';
        const sock: Socket = connectTcp(port, '127.0.0.1', () =>
          sock.write(`POST /v1/events HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n${headers}\r\n`),
        );
        sock.on('error', reject);
        sock.on('data', (d: Buffer) => {
          text += d.toString('latin1');
          for (;;) {
            const m = /^(HTTP\/1\.1 \d{3}[^\r]*)\r\n((?:[^\r]*\r\n)*?)\r\n/.exec(text);
            if (!m) return;
            lines.push(m[1] as string);
            text = text.slice(m[0].length);
            if (!(m[1] as string).startsWith('HTTP/1.1 100') || body === undefined) {
              if (!(m[1] as string).startsWith('HTTP/1.1 100')) lines.push(/^connection: close$/im.test(m[2] as string) ? 'closes' : 'keeps');
              sock.destroy();
              return resolve(lines);
            }
            sock.write(body);
          }
        });
      });
    const auth = 'Authorization: Bearer secret\r\n';
    expect(await send(`${auth}Content-Length: ${limits.maxBodyBytes + 1}\r\n`)).toEqual([expect.stringMatching(/^HTTP\/1\.1 413 /), 'closes']);
    expect(await send('Content-Length: 10\r\n')).toEqual([expect.stringMatching(/^HTTP\/1\.1 401 /), 'closes']);
    const body = '{"id":"c1","type":"t","source":"s"}';
    expect(await send(`${auth}Content-Length: ${body.length}\r\n`, body)).toEqual(['HTTP/1.1 100 Continue', 'HTTP/1.1 200 OK', 'keeps']);
    expect(core.events.map((e) => e.id)).toEqual(['c1']);
  });

  it("gives events without a source the token's name, and none without auth", async () => {
    const { app, core } = make({ tokens });
    const res = await app.inject({ method: 'POST', url: '/v1/events', payload: { type: 't' }, headers: { authorization: 'Bearer tin' } });
    expect(res.statusCode).toBe(200);
    expect(core.contexts[0]).toMatchObject({ method: 'http', defaultSource: 'in' });
    const open = make();
    await open.app.inject({ method: 'POST', url: '/v1/events', payload: { type: 't', source: 's' } });
    expect(open.core.contexts[0]?.defaultSource).toBeUndefined();
  });
});

describe('queries', () => {
  it('pages /v1/events with X-Next-Cursor and validates parameters', async () => {
    const { app } = make();
    await app.inject({ method: 'POST', url: '/v1/events', payload: [1, 2, 3, 4, 5].map((i) => ({ id: `e${i}`, type: 't', source: 's' })) });
    const first = await app.inject({ url: '/v1/events?limit=2' });
    expect(first.headers['content-type']).toMatch(/application\/x-ndjson/);
    expect(first.body.trim().split('\n').map((l) => JSON.parse(l).id)).toEqual(['e1', 'e2']);
    const cursor = first.headers['x-next-cursor'];
    expect(typeof cursor).toBe('string');
    const second = await app.inject({ url: `/v1/events?limit=10&cursor=${String(cursor)}` });
    expect(second.body.trim().split('\n')).toHaveLength(3);
    expect(second.headers['x-next-cursor']).toBeUndefined();

    expect((await app.inject({ url: '/v1/events?limit=0' })).statusCode).toBe(400);
    expect((await app.inject({ url: '/v1/events?since=yesterday' })).json().code).toBe('METEORZX_BAD_REQUEST');
    expect((await app.inject({ url: '/v1/events?since=2026-01-01T00:00:00Z&until=1700000000000' })).statusCode).toBe(200);
  });

  it('serves custody records by id and needs a filter', async () => {
    const { app } = make();
    await app.inject({ method: 'POST', url: '/v1/events', payload: [{ id: 'x1', type: 't', source: 's' }, { id: 'x2', type: 5, source: 's' }] });
    const res = await app.inject({ url: '/v1/custody?id=x1' });
    expect(res.statusCode).toBe(200);
    const rows = res.body.trim().split('\n').map((l) => JSON.parse(l));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: 'x1', outcome: 'accepted', method: 'http' });
    expect((await app.inject({ url: '/v1/custody' })).statusCode).toBe(400);
  });

  it('answers JSON errors for unknown routes and readiness', async () => {
    let ready = false;
    const { app } = make({ isReady: () => ready });
    const nf = await app.inject({ url: '/nope' });
    expect(nf.statusCode).toBe(404);
    expect(nf.json().code).toBe('METEORZX_NOT_FOUND');
    expect((await app.inject({ url: '/readyz' })).statusCode).toBe(503);
    ready = true;
    expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200);
  });
});
