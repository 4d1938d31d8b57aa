import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredEvent } from '../../protocols/index.js';
import { killAll, postEvents, removeDir, startAgent, tempDir, waitFor } from './agent-harness.js';
import { ndjson, runCli, startGateway, type RunningGateway } from './gateway-harness.js';

/**
 * An agent whose limits.maxEventBytes (64 KiB) is larger than its gateway's
 * (2 KiB) takes a 3 KB event the gateway then refuses. The gateway refused it
 * from its size without reading it: its rejection record named no id and no
 * source, and its seq stayed a hole for good (GET /v1/sources: received 2 of
 * 3, gap 2..2; a gap alert, and backfill pulling it to be refused again).
 */

let dir: string;
let gw: RunningGateway;
beforeAll(async () => {
  dir = await tempDir('oversize-chained');
  gw = await startGateway({ dir, config: { logLevel: 'warn', limits: { maxEventBytes: '2KiB' } } });
});
afterAll(async () => {
  await gw?.stop();
  await killAll();
  if (dir) await removeDir(dir);
});

interface Epoch {
  agent: string;
  lastSeq: number;
  received: number;
  gaps: unknown[];
}

describe.each(['http', 'mqtt'])('an agent event over the gateway maxEventBytes, pushed over %s', (method) => {
  it('is a rejection naming its id and source, and its seq arrived: no hole', async () => {
    const id = `oversize-${method}`;
    const push = method === 'http' ? { http: { url: `${gw.httpUrl}/v1/events` } } : { mqtt: { url: `mqtt://127.0.0.1:${gw.mqttPort}` } };
    const agent = await startAgent(dir, { id, dataDir: `${dir}/${id}`, push: { ...push, batch: { maxWaitMs: '200ms' } } });
    const posted = await postEvents(agent.intakeUrl, [{ type: 'small.a' }, { type: 'too.big', data: { pad: 'x'.repeat(3000) } }, { type: 'small.c' }]);
    expect(posted.body).toMatchObject({ accepted: 3 });
    await waitFor(async () => (await agent.status()).delivered === 3, 'delivered 3');
    const buffered = ndjson<StoredEvent>(await (await fetch(`${agent.pullUrl}/v1/events?after=0`)).text());
    const big = buffered.find((e) => e.seq === 2) as StoredEvent;
    expect(big.type).toBe('too.big');
    await agent.stop();

    const sources = (await (await fetch(`${gw.httpUrl}/v1/sources`)).json()) as { epochs: Epoch[] };
    expect(sources.epochs.filter((e) => e.agent === id).map((e) => ({ lastSeq: e.lastSeq, received: e.received, gaps: e.gaps }))).toEqual([
      { lastSeq: 3, received: 3, gaps: [] },
    ]);
    const custody = ndjson<{ outcome: string; source?: string; reason?: string }>(await (await fetch(`${gw.httpUrl}/v1/custody?id=${big.id}`)).text());
    expect(custody.map((c) => [c.outcome, c.source, c.reason])).toEqual([['rejected', id, expect.stringMatching(/over the limit of 2048 \(maxEventBytes\)/)]]);
    const stored = ndjson<StoredEvent>(await (await fetch(`${gw.httpUrl}/v1/events?source=${id}`)).text());
    expect(stored.map((e) => [e.seq, e.ingest.integrity])).toEqual([
      [1, 'verified'],
      [3, 'verified'],
    ]);
    const verified = await runCli(['verify', gw.httpUrl, '--source', id]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
  });
});
