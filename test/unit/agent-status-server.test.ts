import { once } from 'node:events';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentStatus } from '../../protocols/index.js';
import { AgentMetrics } from '../../agent/metrics.js';
import { StatusServer } from '../../agent/status/server.js';
import { FakeBuffer } from './agent-fake-buffer.js';

const servers: StatusServer[] = [];
async function start(buffer: FakeBuffer, options: { token?: string; host?: string; insecure?: boolean; idleTimeoutMs?: number; maxPullBytesHeld?: number } = {}) {
  const metrics = new AgentMetrics({ buffer: () => buffer.state(), push: () => 'backoff' });
  const status = (): AgentStatus => ({ ...buffer.state(), push: { state: 'backoff', lastError: 'ECONNREFUSED' } });
  const server = new StatusServer({
    listen: { host: options.host ?? '127.0.0.1', port: 0 },
    status,
    metrics,
    buffer,
    ...(options.token ? { token: options.token } : {}),
    ...(options.insecure ? { insecure: true } : {}),
    ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
    ...(options.maxPullBytesHeld !== undefined ? { maxPullBytesHeld: options.maxPullBytesHeld } : {}),
  });
  servers.push(server);
  await server.start();
  return `http://127.0.0.1:${server.address().port}`;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('agent status server', () => {
  it('serves /v1/status as AgentStatus and /metrics in Prometheus text', async () => {
    const buffer = new FakeBuffer();
    await buffer.fill(7);
    buffer.delivered = 3;
    const url = await start(buffer);
    const status = (await (await fetch(`${url}/v1/status`)).json()) as AgentStatus;
    expect(status).toMatchObject({ id: 'fake-agent', epoch: 'EPOCH1', head: 7, delivered: 3, bufferedEvents: 4, push: { state: 'backoff', lastError: 'ECONNREFUSED' } });
    const res = await fetch(`${url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/^meteorzx_agent_buffered_events 4$/m);
    expect(text).toMatch(/^meteorzx_agent_head_seq 7$/m);
    expect(text).toMatch(/^meteorzx_agent_delivered_seq 3$/m);
    expect(text).toMatch(/^meteorzx_agent_push_state\{state="backoff"\} 1$/m);
    expect(text).toMatch(/^meteorzx_agent_push_state\{state="idle"\} 0$/m);
    expect(text).toMatch(/^meteorzx_agent_process_resident_memory_bytes /m);
  });

  it('serves the pull range GET /v1/events?after=&limit= as NDJSON', async () => {
    const buffer = new FakeBuffer();
    await buffer.fill(10);
    const url = await start(buffer);
    const res = await fetch(`${url}/v1/events?after=4&limit=3`);
    const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as { seq: number });
    expect(lines.map((e) => e.seq)).toEqual([5, 6, 7]);
    expect(res.headers.get('x-last-seq')).toBe('7');
    expect((await fetch(`${url}/v1/events?after=-1`)).status).toBe(400);
  });

  it('requires the bearer token when one is configured', async () => {
    const buffer = new FakeBuffer();
    const url = await start(buffer, { token: 's3cret' });
    expect((await fetch(`${url}/v1/status`)).status).toBe(401);
    expect((await fetch(`${url}/v1/status`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer s3cret' } })).status).toBe(200);
  });

  it('refuses a non-loopback bind without a token unless insecure', async () => {
    const buffer = new FakeBuffer();
    await expect(start(buffer, { host: '0.0.0.0' })).rejects.toMatchObject({ code: 'METEORZX_INSECURE_BIND' });
    await expect(start(buffer, { host: '0.0.0.0', insecure: true })).resolves.toMatch(/^http:/);
  });

  it('answers 404 for an unknown route and 405 for a wrong method', async () => {
    const url = await start(new FakeBuffer());
    expect((await fetch(`${url}/nope`)).status).toBe(404);
    expect((await fetch(`${url}/v1/status`, { method: 'POST' })).status).toBe(405);
  });

  it('answers 400 to a request target that is not a URL path, before the token check', async () => {
    const url = await start(new FakeBuffer(), { token: 'secret' });
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    socket.end('GET //[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    let answer = '';
    for await (const chunk of socket) answer += String(chunk);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('METEORZX_BAD_REQUEST');
  });

  it('closes a pull client that stops reading once it has been idle for idleTimeoutMs, and its page budget comes back', async () => {
    const buffer = new FakeBuffer();
    // ≈ 10 MB of lines: more than loopback's socket buffers take, so the answer cannot all be written.
    await buffer.append(Array.from({ length: 500 }, (_, i) => ({ type: 'fill', data: { i, pad: 'x'.repeat(20_000) } })));
    const url = await start(buffer, { idleTimeoutMs: 500, maxPullBytesHeld: 12 << 20 });
    const page = `/v1/events?after=0&limit=500&maxBytes=${8 << 20}`;
    const stalled = connect(Number(new URL(url).port), '127.0.0.1', () => stalled.write(`GET ${page} HTTP/1.1\r\nHost: agent\r\n\r\n`));
    stalled.on('error', () => undefined);
    stalled.pause(); // never reads
    // While it holds its 8 MiB page, a second one does not fit the budget.
    await expect.poll(async () => (await fetch(`${url}${page}`)).status, { timeout: 5000 }).toBe(503);
    // Idle for 500 ms, the stalled connection is ended by the server, and the budget serves a page again.
    await expect.poll(async () => (await fetch(`${url}${page}`)).status, { timeout: 10_000, interval: 200 }).toBe(200);
    // The client, reading now, finds its answer cut short: the server closed the connection, not the client.
    let received = 0;
    stalled.on('data', (chunk: Buffer) => (received += chunk.length));
    const closed = once(stalled, 'close');
    stalled.resume();
    await closed;
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThan(8 << 20);
  });
});
