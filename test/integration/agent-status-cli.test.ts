import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import type { AgentStatus } from '../../protocols/index.js';
import { runCli } from './gateway-harness.js';

/**
 * `meteorzx status <agent>` prints what the agent's `GET /v1/status` says. An agent serves the answer
 * here from a fixed object, so the states that are hard to bring about for real (a full disk) are shown too.
 */

const servers: Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
});

async function agentAnswering(status: AgentStatus): Promise<string> {
  const server = createServer((req, res) => {
    res.writeHead(req.url === '/v1/status' ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(req.url === '/v1/status' ? status : { error: 'no route', code: 'METEORZX_NOT_FOUND' }));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('meteorzx status on an agent', () => {
  it('shows the buffer write error while the buffer cannot write', async () => {
    const writeError = 'group commit failed: IO error: No space left on device';
    const url = await agentAnswering({
      id: 'edge-1',
      epoch: 'E1',
      head: 120,
      delivered: 100,
      oldest: 1,
      bufferedEvents: 20,
      bufferedBytes: 4096,
      push: { state: 'idle', lastError: null },
      writeError,
    });
    const out = await runCli(['status', url]);
    // Before, the human output left it out: the intakes answered 503 and `meteorzx status` looked healthy.
    expect(out.stdout).toContain(`write error     ${writeError}`);
    // And the exit status says so too (before: 0), as for a gateway that is not ready.
    expect(out.code).toBe(1);
    expect(out.stderr.trim()).toBe(`meteorzx: agent edge-1 at ${url} cannot write its buffer: ${writeError}`);
    const json = await runCli(['status', url, '--json']);
    expect((JSON.parse(json.stdout) as AgentStatus).writeError).toBe(writeError);
    expect(json.code).toBe(1);
  });
});
