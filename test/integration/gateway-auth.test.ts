import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../gateway/auth/password.js';
import { ndjson, removeDir, runCli, runProcess, startGateway, tempDir, type RunningGateway } from './gateway-harness.js';

/** Issue 3, done-when 2: who may publish what, and when the gateway refuses to start. */
let dir: string;
let gw: RunningGateway;

beforeAll(async () => {
  dir = await tempDir();
  gw = await startGateway({
    dir,
    config: {
      auth: {
        tokens: [
          { name: 'ops', token: 'ops-token', scopes: ['admin'] },
          { name: 'ingest', token: 'ingest-token', scopes: ['ingest'] },
        ],
        mqtt: [
          { username: 'dev-1', password: await hashPassword('pw-dev-1', { N: 1024, r: 8, p: 1 }) },
          { username: 'edge-7', password: 'pw-edge-7', relayFor: ['dev-*'] },
        ],
      },
    },
  });
});

afterAll(async () => {
  await gw?.stop();
  await removeDir(dir);
});

const pub = (args: string[], input?: string) =>
  runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gw.mqttPort), '-q', '1', ...args], input === undefined ? {} : { input });

async function storedIds(source: string): Promise<string[]> {
  const q = await runCli(['query', gw.httpUrl, '--source', source, '--token', 'ops-token']);
  expect(q.code, q.stderr).toBe(0);
  return ndjson<{ id: string }>(q.stdout).map((e) => e.id);
}

describe('MQTT auth', () => {
  it('accepts its own topic with a scrypt-hashed password', async () => {
    const ok = await pub(['-u', 'dev-1', '-P', 'pw-dev-1', '-t', 'audit/dev-1/events', '-m', '{"id":"own-1","type":"t"}']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(await storedIds('dev-1')).toEqual(['own-1']);
  });

  it('refuses a wrong password and an anonymous client', async () => {
    const wrong = await pub(['-u', 'dev-1', '-P', 'nope', '-t', 'audit/dev-1/events', '-m', '{"id":"wrong-1","type":"t"}']);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/bad user name or password/i);
    const anon = await pub(['-t', 'audit/dev-1/events', '-m', '{"id":"anon-1","type":"t"}']);
    expect(anon.code).not.toBe(0);
    expect(await storedIds('dev-1')).not.toContain('wrong-1');
  });

  it("refuses a publish to another source's topic: the connection is closed and nothing is stored", async () => {
    const other = await pub(['-u', 'dev-1', '-P', 'pw-dev-1', '-t', 'audit/dev-2/events', '-m', '{"id":"other-1","type":"t"}']);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(/connection was lost/i);

    // MQTT.js sees the same: no PUBACK, a closed connection.
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { username: 'dev-1', password: 'pw-dev-1', reconnectPeriod: 0 });
    const outcome = await new Promise<string>((resolve) => {
      client.once('close', () => resolve('closed'));
      client.publish('audit/dev-2/events', '{"id":"other-2","type":"t"}', { qos: 1 }, (err) => resolve(err ? 'error' : 'acked'));
    });
    await client.endAsync(true);
    expect(outcome).toBe('closed');
    expect(await storedIds('dev-2')).toEqual([]);
  });

  it('lets an edge agent relay only for sources matching relayFor, rejecting the rest with the reason', async () => {
    const payload = JSON.stringify([
      { id: 'relay-1', type: 't', source: 'dev-42' },
      { id: 'relay-2', type: 't', source: 'plc-1' },
      { id: 'relay-3', type: 't' },
    ]);
    const r = await pub(['-u', 'edge-7', '-P', 'pw-edge-7', '-t', 'audit/edge-7/events', '-m', payload]);
    expect(r.code, r.stderr).toBe(0);
    expect(await storedIds('dev-42')).toEqual(['relay-1']);
    expect(await storedIds('edge-7')).toEqual(['relay-3']);
    expect(await storedIds('plc-1')).toEqual([]);
    const custody = await runProcess('curl', ['-sS', '-H', 'Authorization: Bearer ops-token', `${gw.httpUrl}/v1/custody?id=relay-2`]);
    const records = ndjson<{ outcome: string; reason?: string; method: string; peer: string }>(custody.stdout);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ outcome: 'rejected', method: 'mqtt' });
    expect(records[0]?.reason).toMatch(/may not send events for "plc-1"/);
  });
});

describe('MQTT auth and chain records', () => {
  it('rejects a chain record naming an agent the client may not use: another agent chain shows no seq or hole from it', async () => {
    const payload = JSON.stringify([
      { id: 'forged-1', type: 't', agent: 'edge-7', epoch: 'E1', seq: 1 },
      { id: 'forged-3', type: 't', agent: 'edge-7', epoch: 'E1', seq: 3 },
      { id: 'own-chain-1', type: 't', agent: 'dev-1', epoch: 'D1', seq: 1 },
    ]);
    const r = await pub(['-u', 'dev-1', '-P', 'pw-dev-1', '-t', 'audit/dev-1/events', '-m', payload]);
    expect(r.code, r.stderr).toBe(0);
    expect(await storedIds('dev-1')).toContain('own-chain-1');
    expect(await storedIds('dev-1')).not.toContain('forged-1');
    const sources = await runProcess('curl', ['-sS', '-H', 'Authorization: Bearer ops-token', `${gw.httpUrl}/v1/sources?source=edge-7`]);
    expect(sources.stdout).not.toContain('"E1"');
    const custody = await runProcess('curl', ['-sS', '-H', 'Authorization: Bearer ops-token', `${gw.httpUrl}/v1/custody?id=forged-3`]);
    const records = ndjson<{ outcome: string; reason?: string }>(custody.stdout);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ outcome: 'rejected' });
    expect(records[0]?.reason).toMatch(/may not send chain records of "edge-7"/);
  });
});

describe('HTTP auth', () => {
  it('needs a token with the right scope', async () => {
    const post = (token?: string) =>
      runProcess('curl', [
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '-X',
        'POST',
        '-H',
        'Content-Type: application/json',
        ...(token ? ['-H', `Authorization: Bearer ${token}`] : []),
        '--data',
        '{"type":"t","source":"tok"}',
        `${gw.httpUrl}/v1/events`,
      ]);
    expect((await post()).stdout).toBe('401');
    expect((await post('wrong')).stdout).toBe('401');
    expect((await post('ingest-token')).stdout).toBe('200');
    const q = await runCli(['query', gw.httpUrl, '--token', 'ingest-token']);
    expect(q.code).toBe(1);
    expect(q.stderr).toMatch(/HTTP 403: token "ingest" lacks the query scope/);
  });
});

describe('refusing to start', () => {
  async function gatewayOnce(config: Record<string, unknown>, args: string[] = []) {
    const d = await tempDir();
    try {
      const file = path.join(d, 'gw.json');
      await writeFile(file, JSON.stringify({ dataDir: path.join(d, 'data'), http: { listen: '127.0.0.1:0' }, mqtt: { listen: '127.0.0.1:0' }, ...config }));
      return await runCli(['gateway', '--config', file, ...args]);
    } finally {
      await removeDir(d);
    }
  }

  it('refuses a non-loopback bind without auth and without --insecure, with one line naming the key', async () => {
    const r = await gatewayOnce({ mqtt: { listen: '0.0.0.0:0' } });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      'meteorzx: refusing to start: mqtt.listen binds 0.0.0.0, a non-loopback address, with no auth.mqtt configured; add auth.mqtt, bind 127.0.0.1, or pass --insecure',
    ]);
    const h = await gatewayOnce({ http: { listen: '0.0.0.0:0' } });
    expect(h.code).toBe(1);
    expect(h.stderr).toMatch(/http\.listen binds 0\.0\.0\.0.*auth\.tokens/);
  });

  it('starts on a non-loopback bind with --insecure', async () => {
    const d = await tempDir();
    try {
      const g = await startGateway({ dir: d, config: { mqtt: { listen: '0.0.0.0:0' } }, args: ['--insecure'] });
      expect(await g.stop()).toBe(0);
    } finally {
      await removeDir(d);
    }
  });

  it('names the port and the config key when the port is in use', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = await gatewayOnce({ http: { listen: `127.0.0.1:${port}` } });
      expect(r.code).toBe(1);
      const errorLines = r.stderr.split('\n').filter((l) => l.startsWith('meteorzx:'));
      expect(errorLines).toEqual([`meteorzx: port ${port} on 127.0.0.1 is already in use: stop the other process or change http.listen in the config`]);
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });
});
