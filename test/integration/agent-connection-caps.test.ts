import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, postEvents, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';
import { runProcess } from './gateway-harness.js';

/**
 * `intake.http.maxConnections` and `intake.mqtt.maxConnections`: past the
 * cap a connection is closed as it arrives and counted, so a flood of idle
 * connections has a bound; once one goes, producers and devices connect
 * again. The real CLI, curl and mosquitto_pub.
 */

let dir: string;
let agent: Agent;
let mqttPort: number;
const held: Socket[] = [];

beforeAll(async () => {
  dir = await tempDir('connection-caps');
  mqttPort = await freePort();
  agent = await startAgent(dir, {
    id: 'caps',
    intake: { http: { listen: '127.0.0.1:0', maxConnections: 2 }, mqtt: { listen: `127.0.0.1:${mqttPort}`, maxConnections: 1 } },
  });
});

afterAll(async () => {
  for (const s of held) s.destroy();
  await killAll();
  await removeDir(dir);
});

const pub = () => runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(mqttPort), '-q', '1', '-t', 'audit/dev-1/events', '-m', '{"type":"t.mqtt"}']);

/** A TCP connection that sends nothing; resolves once connected, with a promise of its close. */
async function idle(port: number): Promise<{ socket: Socket; closed: Promise<unknown> }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  const closed = new Promise((resolve) => socket.once('close', resolve));
  await new Promise((resolve) => socket.once('connect', resolve));
  held.push(socket);
  return { socket, closed };
}

/** A POST whose headers are sent and whose body never comes: a request in progress, not an idle connection. */
async function uploading(port: number): Promise<{ socket: Socket; closed: Promise<unknown> }> {
  const { socket, closed } = await idle(port);
  socket.write('POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{');
  await new Promise((resolve) => setTimeout(resolve, 100));
  return { socket, closed };
}

/** One POST on a new connection that stays open after its answer (HTTP/1.1 keep-alive): resolves with the answer's status line. */
async function keptAlive(port: number): Promise<{ socket: Socket; status: string; closed: Promise<unknown> }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  const closed = new Promise((resolve) => socket.once('close', resolve));
  held.push(socket);
  const body = '{"type":"t.kept"}';
  socket.write(`POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  let text = '';
  const status = await new Promise<string>((resolve) => {
    socket.on('data', (b: Buffer) => {
      text += b.toString();
      if (text.includes('\r\n\r\n{')) resolve(text.split('\r\n')[0] as string);
    });
    socket.once('close', () => resolve(`closed: ${text.split('\r\n')[0] ?? ''}`));
  });
  return { socket, status, closed };
}

describe('agent connection caps', () => {
  it('HTTP intake: a connection past maxConnections is closed and counted when none can give way; once one goes, curl posts again', async () => {
    // Two uploads in progress (headers sent, body not): neither is idle, so the cap refuses the third connection.
    const port = Number(new URL(agent.intakeUrl).port);
    const a = await uploading(port);
    await uploading(port);
    const refused = await runProcess('curl', ['-sS', '-m', '5', '-H', 'Content-Type: application/json', '-d', '{"type":"t"}', agent.intakeUrl]);
    expect(refused.code).not.toBe(0);
    await waitFor(async () => (await agent.metric('meteorzx_agent_intake_dropped_total{intake="http",reason="connection-refused"}')) >= 1, 'the refusal counted');
    a.socket.destroy();
    await a.closed;
    await waitFor(async () => (await postEvents(agent.intakeUrl, [{ type: 't.after' }]).catch(() => ({ status: 0 }))).status === 200, 'a post once a slot is free');
  });

  it('HTTP intake: at the cap the connection waiting longest without a request gives way, so idle ones never hold every slot', async () => {
    const port = Number(new URL(agent.intakeUrl).port);
    for (const s of held.splice(0)) s.destroy();
    const first = await idle(port);
    const second = await idle(port);
    // The second reached the cap: the first, waiting longer, gave way.
    await first.closed;
    const posted = await runProcess('curl', ['-sS', '-m', '5', '-H', 'Content-Type: application/json', '-d', '{"type":"t.past.idle"}', agent.intakeUrl]);
    expect({ code: posted.code, out: posted.stdout }).toEqual({ code: 0, out: '{"accepted":1,"duplicates":0,"rejected":[]}' });
    await second.closed;
  });

  it('HTTP intake: at the cap an idle kept-alive connection gives way to a new producer instead of the producer being refused', async () => {
    // Client pools (undici's) keep more connections than requests in flight, idle for the keep-alive timeout the
    // intake announces (65 s): with 200 producers retrying through them, thousands of connections were refused
    // below the cap of 256 while most connections held sat idle.
    const port = Number(new URL(agent.intakeUrl).port);
    for (const s of held.splice(0)) s.destroy();
    const refusals = () => agent.metric('meteorzx_agent_intake_dropped_total{intake="http",reason="connection-refused"}');
    const before = await refusals();
    const a = await keptAlive(port);
    expect(a.status).toBe('HTTP/1.1 200 OK');
    const b = await keptAlive(port);
    expect(b.status).toBe('HTTP/1.1 200 OK');
    const posted = await runProcess('curl', ['-sS', '-m', '5', '-H', 'Content-Type: application/json', '-d', '{"type":"t.new"}', agent.intakeUrl]);
    expect({ code: posted.code, out: posted.stdout }).toEqual({ code: 0, out: '{"accepted":1,"duplicates":0,"rejected":[]}' });
    expect(await refusals()).toBe(before);
    // A connection that never sent a request gives way too, when there is no spare (the test above).
  });

  it('edge MQTT broker: a device past maxConnections is refused and counted when the one held is a client; once it goes, mosquitto_pub publishes', async () => {
    // A connected device (mosquitto_sub) holds the one slot: it does not give way.
    const sub = spawn('stdbuf', ['-oL', 'mosquitto_sub', '-d', '-h', '127.0.0.1', '-p', String(mqttPort), '-i', 'dev-2', '-t', 'audit/dev-2/cmd']);
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        sub.stdout.on('data', (b: Buffer) => {
          out += b.toString();
          if (out.includes('CONNACK')) resolve();
        });
        sub.once('exit', (code) => reject(new Error(`mosquitto_sub exited ${code}: ${out}`)));
      });
      expect((await pub()).code).not.toBe(0);
      await waitFor(async () => (await agent.metric('meteorzx_agent_intake_dropped_total{intake="mqtt",reason="connection-refused"}')) >= 1, 'the refusal counted');
    } finally {
      sub.kill();
    }
    await waitFor(async () => (await pub()).code === 0, 'a publish once the slot is free');
  });

  it('edge MQTT broker: a connection that never sent CONNECT gives way to a device at the bound', async () => {
    // Before, it held the slot until aedes' 30 s connect timeout, and a flood of those kept every device out.
    const a = await idle(mqttPort);
    expect((await pub()).code).toBe(0);
    await a.closed;
  });

});
