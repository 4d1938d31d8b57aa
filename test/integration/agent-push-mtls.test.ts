import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, postEvents, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';
import { ndjson, runCli, runProcess, startGateway, type RunningGateway } from './gateway-harness.js';
import { makePki, type TestPki } from './test-pki.js';

/**
 * Mutual TLS between the agent and the real gateway: the gateway's HTTPS and
 * MQTT-over-TLS listeners require a client certificate from a throw-away CA
 * (`requestClientCert`), and the agent pushes with `push.http|mqtt.cert/key`.
 * Without a certificate the handshake is refused and nothing is delivered.
 */

let dir: string;
let pki: TestPki;
let gateway: RunningGateway;
let httpsUrl: string;
let mqttsPort: number;
let wssPort: number;

beforeAll(async () => {
  dir = await tempDir('push-mtls');
  await mkdir(join(dir, 'pki'));
  pki = await makePki(join(dir, 'pki'));
  mqttsPort = await freePort();
  wssPort = await freePort();
  const tls = { cert: pki.cert, key: pki.key, ca: pki.ca, requestClientCert: true };
  await mkdir(join(dir, 'gw'));
  gateway = await startGateway({
    dir: join(dir, 'gw'),
    config: {
      http: { listen: '127.0.0.1:0', tls },
      mqtt: { listen: '127.0.0.1:0', tls: { listen: `127.0.0.1:${mqttsPort}`, ...tls }, ws: { listen: `127.0.0.1:${wssPort}`, tls } },
    },
  });
  httpsUrl = `https://127.0.0.1:${gateway.httpPort}`;
}, 60_000);

afterAll(async () => {
  await killAll();
  await gateway?.stop();
  await removeDir(dir);
});

/** The ids the gateway stored for a source, read over HTTPS with the client certificate (curl). */
async function storedIds(source: string): Promise<string[]> {
  const res = await runProcess('curl', ['-sS', '--cacert', pki.ca, '--cert', pki.clientCert, '--key', pki.clientKey, `${httpsUrl}/v1/events?source=${source}`]);
  expect(res.code, res.stderr).toBe(0);
  return ndjson<{ id: string }>(res.stdout).map((e) => e.id).sort();
}

async function agentPushing(name: string, push: Record<string, unknown>): Promise<Agent> {
  const agentDir = join(dir, name);
  await mkdir(agentDir);
  return startAgent(agentDir, { id: name, push: { ...push, backoff: { initialMs: 50, maxMs: 200 } } });
}

const events = (prefix: string) => Array.from({ length: 20 }, (_, i) => ({ id: `${prefix}-${String(i).padStart(2, '0')}`, type: 't.mtls' }));
const ids = (prefix: string) => events(prefix).map((e) => e.id);

describe('agent push with a client certificate (mutual TLS)', () => {
  it('delivers over HTTPS, MQTT over TLS and MQTT over wss to a gateway that requires a client certificate', async () => {
    const overHttp = await agentPushing('mtls-http', { http: { url: `${httpsUrl}/v1/events`, ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } });
    const overMqtt = await agentPushing('mtls-mqtt', { mqtt: { url: `mqtts://127.0.0.1:${mqttsPort}`, ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } });
    const overWss = await agentPushing('mtls-wss', { mqtt: { url: `wss://127.0.0.1:${wssPort}/mqtt`, ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } });
    expect((await postEvents(overHttp.intakeUrl, events('h'))).status).toBe(200);
    expect((await postEvents(overMqtt.intakeUrl, events('m'))).status).toBe(200);
    expect((await postEvents(overWss.intakeUrl, events('w'))).status).toBe(200);
    await waitFor(async () => (await storedIds('mtls-http')).length === 20, 'the HTTPS agent delivered');
    await waitFor(async () => (await storedIds('mtls-mqtt')).length === 20, 'the MQTT agent delivered');
    await waitFor(async () => (await storedIds('mtls-wss')).length === 20, 'the MQTT over wss agent delivered');
    expect(await storedIds('mtls-http')).toEqual(ids('h'));
    expect(await storedIds('mtls-mqtt')).toEqual(ids('m'));
    expect(await storedIds('mtls-wss')).toEqual(ids('w'));
  });

  it('without a client certificate the gateway refuses the handshake: nothing delivered, the error in the status', async () => {
    const agent = await agentPushing('mtls-none', { http: { url: `${httpsUrl}/v1/events`, ca: pki.ca } });
    expect((await postEvents(agent.intakeUrl, events('n'))).status).toBe(200);
    const status = await waitFor(async () => {
      const s = await agent.status();
      return s.push.lastError !== null && s.push.lastError !== undefined ? s : undefined;
    }, 'a push error');
    expect(status.push.lastError).toMatch(/certificate|socket|closed|reset/i);
    expect(status.delivered).toBe(0);
    expect(await storedIds('mtls-none')).toEqual([]);
  });

  it('meteorzx send, query and status reach the gateway with --ca, --cert and --key; without them, one line saying why', async () => {
    const tlsArgs = ['--ca', pki.ca, '--cert', pki.clientCert, '--key', pki.clientKey];
    const input = `${events('c').map((e) => JSON.stringify({ ...e, source: 'mtls-cli' })).join('\n')}\n`;
    const sent = await runCli(['send', httpsUrl, '-', ...tlsArgs], { input });
    expect(sent.code, sent.stderr).toBe(0);
    const q = await runCli(['query', httpsUrl, '--source', 'mtls-cli', ...tlsArgs]);
    expect(q.code, q.stderr).toBe(0);
    expect(ndjson<{ id: string }>(q.stdout).map((e) => e.id)).toEqual(ids('c'));
    const st = await runCli(['status', httpsUrl, '--source', 'mtls-cli', ...tlsArgs]);
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toMatch(/^gateway ready: 1 sources/);

    const untrusted = await runCli(['query', httpsUrl, '--source', 'mtls-cli']);
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toMatch(/^meteorzx: cannot reach https:\/\/127\.0\.0\.1:\d+: TLS: .*\(pass --ca FILE, or set NODE_EXTRA_CA_CERTS/);
    const noCert = await runCli(['query', httpsUrl, '--source', 'mtls-cli', '--ca', pki.ca]);
    expect(noCert.code).not.toBe(0);
    expect(noCert.stderr).toMatch(/^meteorzx: cannot reach https:\/\/127\.0\.0\.1:\d+: .+\n$/);
    const halfPair = await runCli(['query', httpsUrl, '--ca', pki.ca, '--cert', pki.clientCert]);
    expect(halfPair.stderr).toMatch(/^meteorzx: --cert needs --key: give the client certificate and its key together\n$/);
    const missing = await runCli(['status', httpsUrl, '--ca', join(dir, 'no-such.pem')]);
    expect(missing.stderr).toMatch(/^meteorzx: --ca .*no-such\.pem: cannot read it: ENOENT/);
    // http:// to the HTTPS listener: before, only "connection closed unexpectedly".
    const plain = await runCli(['status', httpsUrl.replace(/^https:/, 'http:')]);
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toMatch(/^meteorzx: cannot reach http:\/\/127\.0\.0\.1:\d+: (connection closed unexpectedly|connection reset) \(if it speaks TLS, use https:\/\/\)\n$/);
  });

  it('config check names an unreadable push CA and a client key of another certificate, key and file', async () => {
    const file = join(dir, 'bad-files.json');
    const check = async (push: Record<string, unknown>) => {
      await writeFile(file, JSON.stringify({ id: 'mtls-files', push: { http: { url: `${httpsUrl}/v1/events`, ...push } } }));
      return runCli(['config', 'check', file, '--type', 'agent']);
    };
    const missing = await check({ ca: join(dir, 'no-such-ca.pem') });
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/push\.http\.ca: \S+no-such-ca\.pem: no such file/);
    const mismatched = await check({ ca: pki.ca, cert: pki.clientCert, key: pki.key });
    expect(mismatched.stderr).toMatch(/push\.http\.key: \S+server\.key: is not the key of push\.http\.cert/);
    expect((await check({ ca: pki.ca, cert: pki.clientCert, key: pki.clientKey })).code).toBe(0);
  });

  it('config check names a certificate given without its key', async () => {
    const file = join(dir, 'half.json');
    await writeFile(file, JSON.stringify({ id: 'mtls-half', push: { http: { url: `${httpsUrl}/v1/events`, cert: pki.clientCert } } }));
    const res = await runCli(['config', 'check', file, '--type', 'agent']);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/push\.http\.key: give the client certificate and its key together/);
  });
});
