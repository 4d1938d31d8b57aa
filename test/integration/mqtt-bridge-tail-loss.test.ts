import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, postEvents, removeDir, sleep, startAgent, tempDir, waitFor } from './agent-harness.js';
import { startGateway, type RunningGateway } from './gateway-harness.js';
import { killProcesses } from './kill-procs.js';
import { startMosquitto } from './private-mosquitto.js';
import { webhookReceiver, type Receiver } from './pull-helpers.js';

/**
 * An agent pushing through a Mosquitto bridge that loses what it acked (here
 * it forwards the agent's status but not its events: the loss of a tail, as
 * a bridge's queue dropped while its link was down, or its restart without
 * persistence). The agent counts the events delivered (Mosquitto PUBACKed
 * them); the gateway saw the loss only when a later event of that agent
 * arrived, so a lost tail stayed invisible while the agent was quiet. The
 * agent now says its delivered cursor in its retained status, and the
 * gateway alerts (seq-gap) on what it was told was delivered and never got.
 */

let dir: string;
let gw: RunningGateway;
let hook: Receiver;
const brokers = new Set<ChildProcess>();
beforeAll(async () => {
  dir = await tempDir('bridge-tail');
  hook = await webhookReceiver();
  gw = await startGateway({ dir, config: { logLevel: 'warn', alerts: { webhook: hook.url }, backfill: { grace: '1s', every: '100ms' } } });
});
afterAll(async () => {
  await gw?.stop();
  await hook?.close();
  await killProcesses(brokers);
  await killAll();
  if (dir) await removeDir(dir);
});

const gapAlerts = (agent: string) => hook.bodies.filter((a) => a.kind === 'seq-gap' && a.agent === agent).map((a) => [a.from, a.to]);

describe('a tail lost behind a Mosquitto bridge', () => {
  it('raises a seq-gap alert for the seqs the agent reports delivered and the gateway never got; none for an agent with nothing lost', async () => {
    const { proc, port } = await startMosquitto(dir, 'lossy-bridge', await freePort(), [
      'allow_anonymous true',
      'persistence false',
      'connection to-gateway',
      `address 127.0.0.1:${gw.mqttPort}`,
      'topic audit/tail-1/status out 1',
      'restart_timeout 1 2',
    ]);
    brokers.add(proc);
    const lossy = await startAgent(dir, { id: 'tail-1', dataDir: `${dir}/tail-1`, push: { mqtt: { url: `mqtt://127.0.0.1:${port}` }, batch: { maxWaitMs: '20ms' } } });
    const direct = await startAgent(dir, { id: 'tail-2', dataDir: `${dir}/tail-2`, push: { mqtt: { url: `mqtt://127.0.0.1:${gw.mqttPort}` }, batch: { maxWaitMs: '20ms' } } });
    for (const agent of [lossy, direct]) {
      expect((await postEvents(agent.intakeUrl, Array.from({ length: 5 }, (_, i) => ({ type: 'tail.event', data: { i } })))).status).toBe(200);
      await waitFor(async () => (await agent.status()).delivered === 5, 'delivered 5');
    }
    const [alert] = await waitFor(() => (gapAlerts('tail-1').length > 0 ? gapAlerts('tail-1') : undefined), 'the seq-gap alert of the lost tail', 20_000);
    expect(alert).toEqual([1, 5]);
    // The agent that lost nothing: its events are stored, and past the grace no alert names it.
    await sleep(1500);
    expect(gapAlerts('tail-2')).toEqual([]);
    expect(gapAlerts('tail-1')).toEqual([[1, 5]]);
    await lossy.stop();
    await direct.stop();
  });
});
