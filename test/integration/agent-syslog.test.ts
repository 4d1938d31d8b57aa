import { execFile, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredEvent } from '../../protocols/index.js';
import { freePort, gatewayEvents, killAll, parseLine, removeDir, startAgent, startGateway, tempDir, waitFor, type Agent, type Gateway } from './agent-harness.js';

/**
 * Issue 6, done-when: util-linux `logger` (a sender we did not write) sends
 * RFC 5424 and RFC 3164 over UDP and TCP to a real agent (`meteorzx agent`),
 * which pushes to a real gateway; the parsed fields are read back from the
 * gateway's GET /v1/events.
 */

const run = promisify(execFile);
const AGENT = 'syslog-agent';

let dir: string;
let gateway: Gateway;
let agent: Agent;
let udp: number;
let tcp: number;

beforeAll(async () => {
  dir = await tempDir('agent-syslog');
  gateway = await startGateway(dir, await freePort());
  udp = await freePort();
  tcp = await freePort();
  agent = await startAgent(dir, {
    id: AGENT,
    intake: { http: { listen: '127.0.0.1:0' }, syslog: { listen: [`udp://127.0.0.1:${udp}`, `tcp://127.0.0.1:${tcp}`] } },
    push: { http: { url: `${gateway.url}/v1/events` }, batch: { maxEvents: 100, maxWaitMs: 20 } },
  });
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

function logger(args: string[]): Promise<unknown> {
  return run('logger', ['-n', '127.0.0.1', ...args]);
}

async function stored(marker: string): Promise<StoredEvent> {
  return waitFor(async () => (await gatewayEvents(gateway.url, AGENT)).find((e) => e.data?.message === marker), `"${marker}" at the gateway`);
}

describe('syslog intake → gateway, with util-linux logger', () => {
  it('RFC 5424 over UDP: facility, severity, host, app, procid, msgid, structured data, peer', async () => {
    await logger(['-P', String(udp), '-d', '--rfc5424', '-t', 'payments', '-i', '--msgid', 'LOGIN', '-p', 'authpriv.notice', '--sd-id', 'audit@32473', '--sd-param', 'user="alice"', '5424-udp']);
    const e = await stored('5424-udp');
    expect(e).toMatchObject({
      type: 'syslog.authpriv.notice',
      source: AGENT,
      data: { facility: 'authpriv', severity: 'notice', format: 'rfc5424', transport: 'udp', app: 'payments', msgid: 'LOGIN' },
    });
    expect(e.data?.structuredData).toMatchObject({ 'audit@32473': { user: 'alice' } });
    expect(e.data?.procid).toMatch(/^\d+$/);
    expect(typeof e.data?.host).toBe('string');
    expect(String(e.data?.peer)).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(e.ingest?.integrity).toBe('verified');
  });

  it('RFC 5424 structured data with the SD-ID __proto__ reaches the gateway, its chain verified', async () => {
    const sock = createSocket('udp4');
    await new Promise<void>((r) => sock.send('<13>1 - - - - - [__proto__ a="b"][x y="1"] 5424-sd-proto', udp, '127.0.0.1', () => r()));
    sock.close();
    const e = await stored('5424-sd-proto');
    expect(JSON.stringify(e.data?.structuredData)).toBe('{"__proto__":{"a":"b"},"x":{"y":"1"}}');
    expect(e.ingest?.integrity).toBe('verified');
  });

  it('RFC 5424 over TCP, newline-framed and octet-counted', async () => {
    await logger(['-P', String(tcp), '-T', '--rfc5424', '-t', 'svc', '-p', 'daemon.err', '5424-tcp-lf']);
    await logger(['-P', String(tcp), '-T', '--octet-count', '--rfc5424', '-t', 'svc', '5424-tcp-octet']);
    expect(await stored('5424-tcp-lf')).toMatchObject({ type: 'syslog.daemon.err', data: { transport: 'tcp', format: 'rfc5424', app: 'svc' } });
    expect(await stored('5424-tcp-octet')).toMatchObject({ data: { transport: 'tcp', format: 'rfc5424', app: 'svc' } });
  });

  it('RFC 3164 over UDP and TCP: host, tag, pid and a BSD time in the current year', async () => {
    await logger(['-P', String(udp), '-d', '--rfc3164', '-t', 'legacy', '-i', '-p', 'local7.warning', '3164-udp']);
    await logger(['-P', String(tcp), '-T', '--rfc3164', '-t', 'legacy', '3164-tcp']);
    const u = await stored('3164-udp');
    expect(u).toMatchObject({ type: 'syslog.local7.warning', data: { format: 'rfc3164', transport: 'udp', app: 'legacy' } });
    expect(u.data?.procid).toMatch(/^\d+$/);
    expect(typeof u.data?.host).toBe('string');
    expect(new Date(u.time).getFullYear()).toBe(new Date().getFullYear());
    expect(await stored('3164-tcp')).toMatchObject({ type: 'syslog.user.notice', data: { format: 'rfc3164', transport: 'tcp' } });
  });

  it('a CRLF-framed message of exactly maxMessageBytes is taken, as an LF-framed one is (socat)', async () => {
    const header = '<13>1 - - - - - - ';
    const body = `crlf-at-limit-${'x'.repeat(8192 - header.length - 'crlf-at-limit-'.length)}`;
    expect(Buffer.byteLength(header + body)).toBe(8192);
    const sender = spawn('socat', ['-u', '-', `TCP:127.0.0.1:${tcp}`], { stdio: ['pipe', 'ignore', 'ignore'] });
    sender.stdin.end(`${header}${body}\r\n${header}crlf-after\r\n`);
    await stored('crlf-after');
    const atLimit = (await gatewayEvents(gateway.url, AGENT)).filter((e) => String(e.data?.message).startsWith('crlf-at-limit-'));
    expect(atLimit.map((e) => e.data?.message === body)).toEqual([true]);
    expect(await agent.metric('meteorzx_agent_intake_dropped_total{intake="syslog",reason="oversize"}')).toBe(0);
  });

  it('an octet count over maxMessageBytes is a framing error: the connection is closed, a new one is unaffected', async () => {
    // socat (bidirectional) exits once the agent closes the connection; its stdin stays open until then.
    const sender = spawn('socat', ['-t', '1', '-', `TCP:127.0.0.1:${tcp}`], { stdio: ['pipe', 'ignore', 'ignore'] });
    const exited = new Promise<number | null>((r) => sender.once('exit', (code) => r(code)));
    const before = '<13>1 - - - - - - frame-before';
    sender.stdin.write(`${Buffer.byteLength(before)} ${before}999999999 <13>1 - - - - - - inside\n<13>1 - - - - - - frame-after-same\n`);
    await stored('frame-before');
    const next = '<13>1 - - - - - - frame-new-connection';
    const other = spawn('socat', ['-u', '-', `TCP:127.0.0.1:${tcp}`], { stdio: ['pipe', 'ignore', 'ignore'] });
    other.stdin.end(`${Buffer.byteLength(next)} ${next}`);
    await stored('frame-new-connection');
    expect(await agent.metric('meteorzx_agent_intake_dropped_total{intake="syslog",reason="framing-error"}')).toBe(1);
    expect(await agent.metric('meteorzx_agent_intake_dropped_total{intake="syslog",reason="oversize"}')).toBe(0);
    const warning = agent.logs.map(parseLine).find((l) => l?.reason === 'framing-error');
    expect(warning).toMatchObject({ octets: 999999999, limit: 8192, msg: 'syslog tcp: framing error, octet count over maxMessageBytes; connection closed' });
    await exited;
    sender.stdin.destroy();
    const texts = (await gatewayEvents(gateway.url, AGENT)).map((e) => String(e.data?.message));
    expect(texts.filter((t) => t.startsWith('frame-') || t === 'inside')).toEqual(['frame-before', 'frame-new-connection']);
  });
});
