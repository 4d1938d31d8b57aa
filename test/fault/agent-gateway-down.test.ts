import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  gatewayEvents,
  holesPerEpoch,
  killAll,
  parseLine,
  postEvents,
  removeDir,
  rssBytes,
  sleep,
  startAgent,
  startGateway,
  tempDir,
  waitFor,
} from '../integration/agent-harness.js';

/**
 * Issue 4 done-when: the gateway is stopped for METEORZX_OUTAGE_MS under a
 * steady load through the agent's intake, then restarted on the same port.
 * Everything acknowledged arrives exactly once; the agent's RSS stays
 * bounded; and the sender backs off instead of storming: its send attempts
 * during the outage stay within what the backoff and breaker allow.
 */
const OUTAGE_MS = Number(process.env.METEORZX_OUTAGE_MS ?? 8000);
const THRESHOLD = 5; // push.breaker.threshold
const COOLDOWN_MS = 1000; // push.breaker.cooldownMs
const MAX_IN_FLIGHT = 4; // push.http.maxInFlight
/** RSS ceiling while the backlog grows on disk. V8's default heap sizing lets garbage pile up to ~200 MB under load; with --max-semi-space-size=2 --max-old-space-size=64 it stays near 95 MB. What matters here: it does not grow with the backlog. */
const RSS_LIMIT = Number(process.env.METEORZX_AGENT_RSS_LIMIT ?? 256 * 1024 * 1024);

let dir: string;

const mb = (bytes: number) => (bytes / 1048576).toFixed(1);
const quarterMax = (xs: number[], q: number) => Math.max(0, ...xs.slice(Math.floor((xs.length * q) / 4), Math.floor((xs.length * (q + 1)) / 4)));

beforeAll(async () => {
  dir = await tempDir('agent-gw-down');
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

describe('gateway outage under load', () => {
  it(`delivers everything after a ${OUTAGE_MS} ms outage, with bounded RSS and bounded retries`, { timeout: 120_000 + OUTAGE_MS * 2 }, async () => {
    const port = await freePort();
    let gateway = await startGateway(dir, port);
    const id = 'gw-down';
    const agent = await startAgent(dir, {
      id,
      push: {
        http: { url: `${gateway.url}/v1/events`, maxInFlight: MAX_IN_FLIGHT, timeoutMs: '5s' },
        batch: { maxEvents: 500, maxWaitMs: 20 },
        backoff: { initialMs: 100, maxMs: 2000 },
        breaker: { threshold: THRESHOLD, cooldownMs: COOLDOWN_MS },
      },
    });

    const acked = new Set<string>();
    let running = true;
    let n = 0;
    const producer = (async () => {
      while (running) {
        const events = Array.from({ length: 100 }, (_, i) => ({ id: `${id}-${n}-${i}`, type: 'fault.outage', data: { n, i, pad: 'x'.repeat(150) } }));
        n += 1;
        const res = await postEvents(agent.intakeUrl, events);
        if (res.status === 200) for (const e of events) acked.add(e.id);
        await sleep(5);
      }
    })();
    const rss: number[] = [];
    const rssDuringOutage: number[] = [];
    let inOutage = false;
    const sampler = setInterval(() => {
      void rssBytes(agent.pid).then((v) => {
        if (v === undefined) return;
        rss.push(v);
        if (inOutage) rssDuringOutage.push(v);
      });
    }, 250);

    await sleep(1500);
    const sendsBefore = await agent.metric('meteorzx_agent_push_sends_total');
    const logsBefore = agent.logs.length;
    await gateway.stop();
    const down = Date.now();
    inOutage = true;
    await sleep(OUTAGE_MS);
    inOutage = false;
    const sendsDuring = (await agent.metric('meteorzx_agent_push_sends_total')) - sendsBefore;
    const outage = Date.now() - down;
    const statusDuring = await agent.status();
    gateway = await startGateway(dir, port);
    await sleep(1000);
    running = false;
    await producer;

    const final = await waitFor(async () => {
      const s = await agent.status();
      return s.delivered === s.head && s.push.state === 'idle' ? s : undefined;
    }, 'agent drained after the outage', 60_000 + OUTAGE_MS);
    clearInterval(sampler);

    // Delivery: every acknowledged event once, no holes.
    const stored = await gatewayEvents(gateway.url, id);
    const storedIds = new Set(stored.map((e) => e.id));
    expect([...acked].filter((x) => !storedIds.has(x))).toEqual([]);
    expect(stored.length).toBe(storedIds.size);
    expect([...holesPerEpoch(stored).values()]).toEqual([[]]);
    // Retries after the outage land out of order and twice: none of that is a break (gateway chain checks link late events).
    expect(stored.filter((e) => e.ingest.integrity !== 'verified').map((e) => `${e.seq}:${e.ingest.integrity}`)).toEqual([]);

    // Backoff, not a storm: at most THRESHOLD failed rounds of MAX_IN_FLIGHT sends before the breaker
    // opens, then one probe per cool-down (each probe's failure reopens it); plus the round in flight at the stop.
    const bound = (THRESHOLD + 1) * MAX_IN_FLIGHT + Math.ceil(outage / COOLDOWN_MS) + 2;
    expect(sendsDuring).toBeLessThanOrEqual(bound);
    expect(['open', 'half-open', 'backoff']).toContain(statusDuring.push.state);
    expect(statusDuring.push.lastError).toBeTruthy();
    const backoffLines = agent.logs.slice(logsBefore).map(parseLine).filter((l) => l?.msg === 'push failed; backing off');
    expect(backoffLines.length).toBeGreaterThan(0);

    // Memory: the backlog lives on disk, not in the heap.
    const maxRss = Math.max(...rss);
    expect(maxRss).toBeLessThanOrEqual(RSS_LIMIT);
    console.log(
      `[agent-gateway-down] outage=${outage}ms acked=${acked.size} backlog=${statusDuring.bufferedEvents} sends during outage=${sendsDuring} (bound ${bound}) ` +
        `maxRSS=${mb(maxRss)}MB (outage: first quarter max ${mb(quarterMax(rssDuringOutage, 0))}MB, last quarter max ${mb(quarterMax(rssDuringOutage, 3))}MB) final head=${final.head}`,
    );
    await agent.stop();
  });
});
