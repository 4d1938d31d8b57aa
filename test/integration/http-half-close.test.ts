import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayEvents, killAll, removeDir, startAgent, tempDir } from './agent-harness.js';
import { runProcess, startGateway } from './gateway-harness.js';

/**
 * A shell script on a legacy host posting with `printf … | socat - TCP:…`
 * (or `nc -N`) half-closes its side once its input ends. node:http ended
 * the connection at that FIN, so the answer to a POST still waiting for
 * its durable write was never sent: the events were taken, the client saw
 * no answer and would post them again.
 */

let dir: string;
afterAll(async () => {
  await killAll();
  if (dir) await removeDir(dir);
});
beforeAll(async () => {
  dir = await tempDir('half-close');
});

/** One raw HTTP/1.1 request through socat, which half-closes after writing it and prints what comes back. */
async function socatRequest(port: number, request: string): Promise<string> {
  // -t 10: how long socat keeps reading after its input ended (the answer comes well before).
  const res = await runProcess('socat', ['-t', '10', '-', `TCP:127.0.0.1:${port}`], { input: request });
  return res.stdout;
}

function post(body: string): string {
  return `POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

describe('HTTP clients that half-close after their request (socat)', () => {
  it('agent intake: the answer comes after the durable append', async () => {
    const agent = await startAgent(dir, { id: 'half-1' });
    try {
      const answer = await socatRequest(Number(new URL(agent.intakeUrl).port), post('{"id":"hc-1","type":"half.closed"}'));
      expect(answer).toMatch(/^HTTP\/1\.1 200 /);
      expect(answer).toContain('"accepted":1');
      expect((await agent.status()).head).toBe(1);
    } finally {
      await agent.stop();
    }
  });

  it('gateway ingest: the answer comes after the events are stored', async () => {
    const gw = await startGateway({ dir });
    try {
      const answer = await socatRequest(gw.httpPort, post('{"id":"hc-2","type":"half.closed","source":"script-1"}'));
      expect(answer).toMatch(/^HTTP\/1\.1 200 /);
      expect(answer).toContain('"accepted":1');
      expect((await gatewayEvents(gw.httpUrl, 'script-1')).map((e) => e.id)).toEqual(['hc-2']);
    } finally {
      await gw.stop();
    }
  });
});
