import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';
import { ndjson, runCli, runProcess, startGateway, type RunningGateway } from './gateway-harness.js';
import { makePki, type TestPki } from './test-pki.js';

/**
 * The agent's HTTP intake and pull listener with TLS, mutual TLS and a
 * bearer token (DESIGN §6: TLS and mutual TLS on every listener; no
 * non-loopback bind without auth). Real curl and the real CLI.
 */

const BIN = join(process.cwd(), 'bin', 'meteorzx.js');
const TOKEN = 'intake-secret-1';
let dir: string;
let pki: TestPki;
let agent: Agent;
let intakeUrl: string;
let pullUrl: string;
let syslogPort: number;
let mqttPort: number;

beforeAll(async () => {
  dir = await tempDir('intake-tls');
  await mkdir(join(dir, 'pki'));
  pki = await makePki(join(dir, 'pki'));
  const tls = { cert: pki.cert, key: pki.key, ca: pki.ca, requestClientCert: true };
  await mkdir(join(dir, 'agent'));
  syslogPort = await freePort();
  mqttPort = await freePort();
  agent = await startAgent(join(dir, 'agent'), {
    id: 'tls-intake',
    intake: { http: { listen: '127.0.0.1:0', token: TOKEN, tls }, syslog: { listen: `tls://127.0.0.1:${syslogPort}`, tls },
      mqtt: { listen: `127.0.0.1:${mqttPort}`, tls },
    },
    pull: { listen: '127.0.0.1:0', tls },
  });
  intakeUrl = agent.intakeUrl.replace(/^http:/, 'https:');
  pullUrl = agent.pullUrl.replace(/^http:/, 'https:');
}, 60_000);

let gateway: RunningGateway | undefined;

afterAll(async () => {
  await gateway?.stop();
  await killAll();
  await removeDir(dir);
});

const clientTls = () => ['--cacert', pki.ca, '--cert', pki.clientCert, '--key', pki.clientKey];

/** POSTs NDJSON with curl; the answer's status line and body. */
async function curlPost(args: string[], body: string): Promise<{ code: number; status: string; body: string }> {
  const res = await runProcess('curl', ['-sS', '-w', '\n%{http_code}', '-H', 'Content-Type: application/x-ndjson', '--data-binary', '@-', ...args, intakeUrl], { input: body });
  const nl = res.stdout.lastIndexOf('\n');
  return { code: res.code ?? -1, status: res.stdout.slice(nl + 1), body: res.stdout.slice(0, nl) };
}

async function head(): Promise<number> {
  const res = await runProcess('curl', ['-sS', ...clientTls(), `${pullUrl}/v1/status`]);
  expect(res.code, res.stderr).toBe(0);
  return (JSON.parse(res.stdout) as { head: number }).head;
}

describe('agent HTTP intake and pull listener over mutual TLS, with a token', () => {
  it('takes events from a client with the certificate and the token, and refuses the rest without buffering them', async () => {
    const lines = '{"type":"t.tls","data":{"n":1}}\n{"type":"t.tls","data":{"n":2}}\n';
    const ok = await curlPost([...clientTls(), '-H', `Authorization: Bearer ${TOKEN}`], lines);
    expect(ok.status).toBe('200');
    expect(JSON.parse(ok.body)).toMatchObject({ accepted: 2, rejected: [] });
    expect(await head()).toBe(2);

    const noToken = await curlPost(clientTls(), lines);
    expect(noToken.status).toBe('401');
    expect(noToken.body).toMatch(/METEORZX_UNAUTHORIZED/);
    const wrongToken = await curlPost([...clientTls(), '-H', 'Authorization: Bearer nope'], lines);
    expect(wrongToken.status).toBe('401');
    const noCert = await curlPost(['--cacert', pki.ca, '-H', `Authorization: Bearer ${TOKEN}`], lines);
    expect(noCert.code).not.toBe(0); // the handshake is refused: no HTTP answer at all
    expect(await head()).toBe(2);

    const noPullCert = await runProcess('curl', ['-sS', '--cacert', pki.ca, `${pullUrl}/v1/status`]);
    expect(noPullCert.code).not.toBe(0);
  });

  it('meteorzx send reaches the intake with --ca, --cert, --key and --token', async () => {
    const input = '{"type":"t.cli"}\n{"type":"t.cli"}\n{"type":"t.cli"}\n';
    const sent = await runCli(['send', intakeUrl, '-', '--token', TOKEN, '--ca', pki.ca, '--cert', pki.clientCert, '--key', pki.clientKey], { input });
    expect(sent.code, sent.stderr).toBe(0);
    expect(await head()).toBe(5);
  });

  it('the CLI names a --ca without a certificate and a --key of another certificate, in one line, before connecting', async () => {
    const garbage = join(dir, 'garbage.pem');
    await writeFile(garbage, 'not a certificate\n');
    const badCa = await runCli(['send', intakeUrl, '-', '--token', TOKEN, '--ca', garbage], { input: '{"type":"t.cli"}\n' });
    expect(badCa.code).toBe(2);
    expect(badCa.stderr).toBe(`meteorzx: --ca ${garbage}: holds no PEM certificate\n`);
    const otherKey = await runCli(['status', pullUrl, '--ca', pki.ca, '--cert', pki.clientCert, '--key', pki.key]);
    expect(otherKey.code).toBe(2);
    expect(otherKey.stderr).toBe(`meteorzx: --key ${pki.key}: is not the key of --cert ${pki.clientCert}\n`);
  });

  it('syslog over TLS (tls://, RFC 5425) from socat with a client certificate; none without one', async () => {
    const before = await head();
    const message = (text: string) => `<38>1 2026-12-07T10:00:00Z host-a sshd 77 LOGIN - ${text}`;
    const framed = [message('tls-syslog-1'), message('tls-syslog-2')].map((m) => `${Buffer.byteLength(m)} ${m}`).join('');
    const openssl = (extra: string) => `OPENSSL:127.0.0.1:${syslogPort},cafile=${pki.ca},verify=1${extra}`;
    const sent = await runProcess('socat', ['-u', '-', openssl(`,cert=${pki.clientCert},key=${pki.clientKey}`)], { input: framed });
    expect(sent.code, sent.stderr).toBe(0);
    await waitFor(async () => (await head()) === before + 2, 'two syslog events buffered');
    const pulled = await runProcess('curl', ['-sS', ...clientTls(), `${pullUrl}/v1/events?after=${before}`]);
    const events = pulled.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; data: { transport: string; message: string; app: string } });
    expect(events.map((e) => [e.type, e.data.transport, e.data.app, e.data.message])).toEqual([
      ['syslog.auth.info', 'tls', 'sshd', 'tls-syslog-1'],
      ['syslog.auth.info', 'tls', 'sshd', 'tls-syslog-2'],
    ]);

    // Without a client certificate: with TLS 1.3 socat may finish writing before the refusal reaches it, so
    // its exit code says little; what counts is that nothing is buffered.
    await runProcess('socat', ['-u', '-', openssl('')], { input: framed });
    const plain = await runProcess('socat', ['-u', '-', `TCP:127.0.0.1:${syslogPort}`], { input: `${framed}\n` });
    expect(plain.code).toBe(0); // TCP connects; the bytes are no TLS handshake and are dropped
    await new Promise((r) => setTimeout(r, 300));
    expect(await head()).toBe(before + 2);
  });

  it('the edge MQTT broker speaks MQTT over TLS: mosquitto_pub with a client certificate is buffered, without one refused', async () => {
    const before = await head();
    const pub = (extra: string[]) =>
      runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(mqttPort), '--cafile', pki.ca, ...extra, '-q', '1', '-t', 'audit/meter-9/events', '-m', '{"type":"meter.read","data":{"kwh":7}}']);
    const ok = await pub(['--cert', pki.clientCert, '--key', pki.clientKey]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(await head()).toBe(before + 1); // PUBACK = buffered
    const refused = await pub([]);
    expect(refused.code).not.toBe(0);
    const plain = await runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(mqttPort), '-q', '1', '-t', 'audit/meter-9/events', '-m', '{"type":"x"}']);
    expect(plain.code).not.toBe(0);
    expect(await head()).toBe(before + 1);
  });

  it('a pull listener that requires a client certificate: meteorzx pull --cert/--key and a gateway with pullFrom[].cert/key get every event', async () => {
    const headNow = await head();
    const tlsArgs = ['--ca', pki.ca, '--cert', pki.clientCert, '--key', pki.clientKey];
    const direct = await runCli(['pull', pullUrl, ...tlsArgs]);
    expect(direct.code, direct.stderr).toBe(0);
    expect(ndjson<{ seq: number }>(direct.stdout).map((e) => e.seq)).toEqual(Array.from({ length: headNow }, (_, i) => i + 1));
    const noCert = await runCli(['pull', pullUrl, '--ca', pki.ca]);
    expect(noCert.code).not.toBe(0);
    expect(noCert.stderr).toMatch(/^meteorzx: cannot reach https:\/\/127\.0\.0\.1:\d+: .+\n$/);

    await mkdir(join(dir, 'gw'));
    gateway = await startGateway({ dir: join(dir, 'gw'), config: { pullFrom: [{ url: pullUrl, every: '1h', ca: pki.ca, cert: pki.clientCert, key: pki.clientKey }] } });
    const into = await runCli(['pull', pullUrl, '--into', gateway.httpUrl]);
    expect(into.code, into.stderr).toBe(0);
    // The agent's own events, and the one the edge device meter-9 published through it.
    const seqs: number[] = [];
    for (const source of ['tls-intake', 'meter-9']) {
      const stored = await runCli(['query', gateway.httpUrl, '--source', source]);
      seqs.push(...ndjson<{ seq: number }>(stored.stdout).map((e) => e.seq));
    }
    expect(seqs.sort((a, b) => a - b)).toEqual(Array.from({ length: headNow }, (_, i) => i + 1));
    const intoWithCert = await runCli(['pull', pullUrl, '--into', gateway.httpUrl, ...tlsArgs]);
    expect(intoWithCert.stderr).toMatch(/^meteorzx: --cert and --key are for a direct pull; with --into the gateway presents pullFrom\[\]\.cert and key\n$/);
  });

  it('refuses to start with the intake on a non-loopback address and no token, naming the key', async () => {
    const file = join(dir, 'open.json');
    await writeFile(file, JSON.stringify({ id: 'open', dataDir: join(dir, 'open-data'), intake: { http: { listen: '0.0.0.0:0' } }, pull: { listen: '127.0.0.1:0' } }));
    const run = spawnSync(process.execPath, [BIN, 'agent', '--config', file], { encoding: 'utf8', timeout: 30_000 });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/intake\.http\.listen 0\.0\.0\.0:0 is not a loopback address and intake\.http\.token is not set; set a token, bind 127\.0\.0\.1, or pass --insecure/);
  });
});
