import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, postEvents, removeDir, startAgent, tempDir, type Agent } from './agent-harness.js';
import { runCli } from './gateway-harness.js';

/**
 * The CLI pointed at the wrong one of the agent's and gateway's listeners (7402 typed for 7400) says so in
 * one line and a non-zero exit, instead of answering as if it were the right one.
 */

let dir: string;
let agent: Agent;

beforeAll(async () => {
  dir = await tempDir('cli-wrong-service');
  agent = await startAgent(dir, { id: 'wrong-svc' });
  expect((await postEvents(agent.intakeUrl, [{ type: 'auth.login' }, { type: 'auth.logout' }])).status).toBe(200);
}, 60_000);

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

describe('meteorzx query against an agent', () => {
  it("refuses the agent's pull listener, whose answer is its whole buffer, unfiltered", async () => {
    const res = await runCli(['query', agent.pullUrl, '--type', 'no.such.type']);
    // Before: both buffered events on stdout and exit 0, as if they were of type no.such.type.
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe(`meteorzx: ${agent.pullUrl} is an agent's pull listener, not a gateway: it does not filter events (meteorzx pull reads it)\n`);
    expect(res.code).toBe(2);
  });
});
