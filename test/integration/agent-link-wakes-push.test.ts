import { afterAll, describe, expect, it } from 'vitest';
import { freePort, killAll, postEvents, removeDir, startAgent, startGateway, tempDir, waitFor } from './agent-harness.js';

/**
 * The agent's MQTT push link doubles as its command link, which it brings back on its own backoff
 * (push.backoff) when it is lost. When that reconnect succeeds the gateway is back, so the push sender,
 * sitting in a backoff or an open circuit, probes at once instead of waiting it out. The real agent and
 * gateway: the circuit opens after one failure for an hour (push.breaker), the link is retried every
 * ≤ 300 ms; the gateway is stopped, an event is taken meanwhile, the gateway comes back on the same port.
 * Before, that event waited the hour (the test's 20 s wait timed out); now it goes within a second or so.
 */

const dirs: string[] = [];
afterAll(async () => {
  await killAll();
  for (const d of dirs) await removeDir(d);
});

describe('agent push woken by its command link', () => {
  it('pushes within seconds of the gateway returning, though the circuit is open for an hour', { timeout: 90_000 }, async () => {
    const dir = await tempDir('link-wakes-push');
    dirs.push(dir);
    const [httpPort, mqttPort] = [await freePort(), await freePort()];
    const gatewayConfig = { mqtt: { listen: `127.0.0.1:${mqttPort}` } };
    let gateway = await startGateway(dir, httpPort, gatewayConfig);
    const agent = await startAgent(dir, {
      id: 'link-wakes',
      logLevel: 'info',
      push: {
        mqtt: { url: `mqtt://127.0.0.1:${mqttPort}` },
        batch: { maxWaitMs: 0 },
        backoff: { initialMs: '100ms', maxMs: '300ms' },
        breaker: { threshold: 1, cooldownMs: '1h' },
      },
    });
    expect((await postEvents(agent.intakeUrl, [{ type: 'before.outage' }])).status).toBe(200);
    await waitFor(async () => (await agent.status()).delivered === 1, 'first event delivered');

    expect(await gateway.stop()).toBe(0);
    expect((await postEvents(agent.intakeUrl, [{ type: 'during.outage' }])).status).toBe(200);
    await waitFor(async () => (await agent.status()).push.state === 'open', 'circuit open');

    gateway = await startGateway(dir, httpPort, gatewayConfig);
    const back = Date.now();
    await waitFor(async () => (await agent.status()).delivered === 2, 'the event taken during the outage delivered', 20_000);
    const waitedMs = Date.now() - back;
    expect(agent.logs.some((l) => l.includes('probing the gateway now'))).toBe(true);
    const stored = await waitFor(async () => {
      const res = await fetch(`${gateway.url}/v1/events?source=link-wakes`);
      const types = (await res.text()).split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { type: string }).type);
      return types.includes('during.outage') ? types : undefined;
    }, 'stored at the gateway');
    expect(stored).toEqual(['before.outage', 'during.outage']);
    // The measured wait, for the commit message and docs (not asserted: no timings in tests).
    console.log(`pushed ${waitedMs} ms after the gateway returned`);
    expect(await agent.stop()).toBe(0);
    expect(await gateway.stop()).toBe(0);
  });
});
