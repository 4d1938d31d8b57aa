import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayEvents, killAll, postEvents, removeDir, startAgent, tempDir, type Agent } from './agent-harness.js';
import { runCli, startGateway, type RunningGateway } from './gateway-harness.js';
import { makePki } from './test-pki.js';

/**
 * `meteorzx pull --ca` and `"ca"` in POST /v1/pull: a real agent serving
 * its pull API over HTTPS with a certificate from a throw-away CA (made
 * with openssl for this run). Without the CA the pull fails with a TLS
 * error that says what to do; with it the events arrive — in a file
 * (direct) and in the real gateway's store (--into, a URL not in pullFrom).
 */

const N = 40;
let dir: string;
let agent: Agent;
let agentUrl: string;
let gateway: RunningGateway;
let caFile: string;

function seqsOf(text: string): number[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { seq: number }).seq);
}

beforeAll(async () => {
  dir = await tempDir('pull-tls');
  const pki = join(dir, 'pki');
  await mkdir(pki);
  const { ca, cert, key } = await makePki(pki);
  caFile = ca;
  const agentDir = join(dir, 'agent');
  await mkdir(agentDir);
  agent = await startAgent(agentDir, { id: 'tls-src', pull: { listen: '127.0.0.1:0', tls: { cert, key } } });
  agentUrl = agent.pullUrl.replace(/^http:/, 'https:');
  const res = await postEvents(agent.intakeUrl, Array.from({ length: N }, (_, i) => ({ type: 'test.tls', data: { i } })));
  expect(res.status).toBe(200);
  const gwDir = join(dir, 'gw');
  await mkdir(gwDir);
  gateway = await startGateway({ dir: gwDir, config: { backfill: { enabled: false } } });
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  await killAll();
  await removeDir(dir);
});

describe('meteorzx pull from an https agent with a private CA', () => {
  it('without --ca fails with one line naming the TLS error and --ca; with --ca writes every event', async () => {
    const out = join(dir, 'direct.ndjson');
    const bad = await runCli(['pull', agentUrl, '--out', out]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^meteorzx: cannot reach https:\/\/127\.0\.0\.1:\d+: TLS: the certificate is not signed by a trusted CA \(UNABLE_TO_VERIFY_LEAF_SIGNATURE: .*\) \(pass --ca FILE/);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);

    const good = await runCli(['pull', agentUrl, '--out', out, '--ca', caFile]);
    expect(good.code, good.stderr).toBe(0);
    expect(seqsOf(await readFile(out, 'utf8'))).toEqual(Array.from({ length: N }, (_, i) => i + 1));
  });

  it('--into: without --ca the gateway answers 502 with the TLS error; with it the gateway stores every event', async () => {
    const bad = await runCli(['pull', agentUrl, '--into', gateway.httpUrl]);
    expect(bad.code).toBe(1);
    // One line, the gateway's error as text: a long error answer was shown as its raw JSON, cut off.
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^meteorzx: gateway pull failed: HTTP 502: pull from https:\/\/127\.0\.0\.1:\d+ failed: /);
    expect(bad.stderr).toMatch(/TLS: the certificate is not signed by a trusted CA \(UNABLE_TO_VERIFY_LEAF_SIGNATURE: [^)]*\); trust its CA with pullFrom\[\]\.ca, or "ca" in POST \/v1\/pull \(meteorzx pull --ca\)$/m);
    expect(await gatewayEvents(gateway.httpUrl, 'tls-src')).toEqual([]);

    const good = await runCli(['pull', agentUrl, '--into', gateway.httpUrl, '--ca', caFile]);
    expect(good.code, good.stderr).toBe(0);
    expect(JSON.parse(good.stdout)).toMatchObject({ url: agentUrl, agent: 'tls-src', pulled: N, accepted: N, lastSeq: N });
    const stored = await gatewayEvents(gateway.httpUrl, 'tls-src');
    expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    expect(stored.every((e) => e.ingest?.method === 'pull')).toBe(true);
  });

  it('refuses a --ca that is not a CA certificate, or with an http agent, with one usage line', async () => {
    const key = join(dir, 'pki', 'server.key');
    const notPem = join(dir, 'not-pem.txt');
    await writeFile(notPem, 'hello\n');
    const cases: [string[], RegExp][] = [
      [['pull', agentUrl, '--ca', key], /--ca .*server\.key holds a private key; give the CA certificate only/],
      [['pull', agentUrl, '--into', gateway.httpUrl, '--ca', notPem], /--ca .*not-pem\.txt holds no PEM certificate/],
      [['pull', agentUrl, '--ca', join(dir, 'missing.pem')], /--ca .*missing\.pem: cannot read it: ENOENT/],
      // Read whole, a device grew the CLI until the OOM killer came.
      [['pull', agentUrl, '--ca', '/dev/zero'], /--ca \/dev\/zero is 65537 bytes; at most 65536/],
      [['query', gateway.httpUrl.replace('http:', 'https:'), '--ca', '/dev/zero'], /--ca \/dev\/zero: cannot read it: larger than 4 MiB: not a PEM file/],
      [['pull', agent.pullUrl, '--ca', caFile], /--ca is for an https agent URL; http:\/\/127\.0\.0\.1:\d+ is http/],
    ];
    for (const [args, message] of cases) {
      const res = await runCli(args);
      expect({ code: res.code, args }).toEqual({ code: 2, args });
      expect(res.stderr).toMatch(message);
      expect(res.stderr.trim().split('\n')).toHaveLength(1);
    }
  });
});

describe('POST /v1/pull with ca', () => {
  async function post(body: unknown): Promise<{ status: number; body: { error?: string; code?: string; pulled?: number } }> {
    const res = await fetch(`${gateway.httpUrl}/v1/pull`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as { error?: string; code?: string; pulled?: number } };
  }

  it('pulls with the PEM text given, and answers 400 with the reason for a bad one', async () => {
    const pem = await readFile(caFile, 'utf8');
    expect(await post({ url: agentUrl, ca: pem, after: 0, until: 5 })).toMatchObject({ status: 200, body: { pulled: 5 } });
    const bad: [unknown, RegExp][] = [
      [{ url: agentUrl, ca: 42 }, /^ca must be a string/],
      [{ url: agent.pullUrl, ca: pem }, /^ca is for an https url only/],
      [{ url: agentUrl, ca: 'x'.repeat(64 * 1024 + 1) }, /^ca is 65537 bytes; at most 65536/],
      [{ url: agentUrl, ca: 'not a certificate' }, /^ca holds no PEM certificate/],
      [{ url: agentUrl, ca: pem.replace(/^(-----BEGIN CERTIFICATE-----\n)(.{8})/, '$1AAAAAAAA') }, /^ca certificate 1 of 1 does not parse/],
      [{ url: agentUrl, ca: `${pem}${await readFile(join(dir, 'pki', 'ca.key'), 'utf8')}` }, /^ca holds a private key/],
    ];
    for (const [body, message] of bad) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('METEORZX_BAD_REQUEST');
      expect(res.body.error).toMatch(message);
    }
  });
});
