import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';
import { runProcess } from './gateway-harness.js';
import { IdleFlood, silentAnswer } from './idle-flood.js';

/**
 * A flood of TCP connections that never send a request (slowloris style)
 * against the agent's HTTP intake. Measured before with the real agent and
 * curl: 256 such connections (intake.http.maxConnections) held every slot
 * for 58 s (Node's 30 s headersTimeout, checked every 30 s), and every curl
 * meanwhile got "Connection reset by peer"; a flood that reopens what is
 * closed held them for good. Now, at the cap, the connection that has waited
 * longest without a request gives way to the newcomer, and a connection that
 * sends no headers within intake.http.headersTimeout (default 10 s, checked
 * every second) is answered 408 and closed.
 */
let dir: string;
let agent: Agent;
let port: number;
const flood = new IdleFlood();

beforeAll(async () => {
  dir = await tempDir('agent-idle-flood');
  await mkdir(join(dir, 'a'), { recursive: true });
  agent = await startAgent(join(dir, 'a'), { id: 'idle-flood', logLevel: 'info', intake: { http: { listen: '127.0.0.1:0', maxConnections: 32, headersTimeout: '2s' } } });
  port = Number(new URL(agent.intakeUrl).port);
}, 30_000);

afterAll(async () => {
  flood.stop();
  await killAll();
  await removeDir(dir);
});

const post = () =>
  runProcess('curl', ['-sS', '-m', '5', '-w', '\n%{http_code}', '-H', 'content-type: application/json', '-d', '{"type":"door.open"}', agent.intakeUrl]);

describe('idle connections flooding the HTTP intake', () => {
  it('do not keep a real client out: curl gets its 200 while the flood holds the cap and reopens', async () => {
    flood.open(port, 32);
    await waitFor(() => flood.sockets.size >= 32 || undefined, 'the flood connected');
    for (let i = 0; i < 5; i += 1) {
      const r = await post();
      expect(r.stdout, r.stderr).toMatch(/"accepted":1.*\n200$/s);
    }
    expect((await agent.status()).head).toBe(5);
    // The flood still holds its connections (reopened as they gave way): the slots were not simply free.
    expect(flood.sockets.size).toBeGreaterThanOrEqual(30);
  });

  it('a connection that sends no headers is answered 408 and closed after intake.http.headersTimeout', async () => {
    flood.stop();
    expect(await silentAnswer(port)).toMatch(/^HTTP\/1\.1 408 Request Timeout/);
  }, 30_000);
});
