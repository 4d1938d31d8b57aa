import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, removeDir, startAgent, tempDir, type Agent } from './agent-harness.js';
import { runProcess } from './gateway-harness.js';
import { IdleFlood } from './idle-flood.js';

/**
 * Connections that never send a request, against the agent's pull listener
 * (`pull.listen`: status, metrics, pull). Measured before with the real
 * agent under `ulimit -n 1024`: 1,100 of them took every descriptor, and a
 * curl POST to the HTTP intake got "Connection reset by peer" and GET
 * /v1/status "Empty reply from server" (up to 30 s each time, for good
 * while the flood reopened them). Now pull.maxConnections (default 64)
 * caps them, and the one waiting longest gives way to a newcomer.
 */
let dir: string;
let agent: Agent;
const flood = new IdleFlood();

beforeAll(async () => {
  dir = await tempDir('agent-pull-idle-flood');
  agent = await startAgent(dir, { id: 'pull-flood', logLevel: 'info' }, {}, { nofile: 1024 });
}, 30_000);

afterAll(async () => {
  flood.stop();
  await killAll();
  await removeDir(dir);
});

describe('idle connections flooding the pull listener', () => {
  it('leave the HTTP intake and the pull listener itself answering (under ulimit -n 1024)', async () => {
    const port = Number(new URL(agent.pullUrl).port);
    flood.open(port, 1100);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const posted = await runProcess('curl', ['-sS', '-m', '5', '-w', '\n%{http_code}', '-H', 'content-type: application/json', '-d', '{"type":"door.open"}', agent.intakeUrl]);
    expect(posted.stdout, posted.stderr).toMatch(/"accepted":1.*\n200$/s);
    const status = await runProcess('curl', ['-sS', '-m', '5', '-w', '\n%{http_code}', `${agent.pullUrl}/v1/status`]);
    expect(status.stdout, status.stderr).toMatch(/"head":1.*\n200$/s);
  }, 60_000);
});
