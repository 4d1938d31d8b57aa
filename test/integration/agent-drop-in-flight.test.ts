import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, removeDir, startAgent, tempDir, waitFor } from './agent-harness.js';

/**
 * drop-oldest while batches are in flight: a gateway that holds its answers
 * (slow, not gone) while the producers overflow the buffer, then acks every
 * batch it was sent. The events of those batches reach the gateway; a gap
 * event must not name them lost. Before, the buffer named every undelivered
 * seq it deleted, in flight or not (the delivered cursor was its only
 * measure), so the gap events overstated the loss by whatever the push sink
 * had in flight or had been acked past an earlier batch.
 */

let dir: string;
let server: Server | undefined;
beforeAll(async () => {
  dir = await tempDir('drop-in-flight');
});
afterAll(async () => {
  await killAll();
  server?.close();
  await removeDir(dir);
});

interface Received {
  seq: number;
  type: string;
  data?: { from?: number; to?: number; reason?: string };
}

async function body(req: IncomingMessage): Promise<Received[]> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  let raw = Buffer.concat(chunks);
  if (req.headers['content-encoding'] === 'gzip') raw = gunzipSync(raw);
  return raw
    .toString('utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Received);
}

describe('drop-oldest with batches in flight', () => {
  it('a gap event names only seqs the gateway never got', async () => {
    const received = new Map<number, Received>();
    let hold = true;
    const held: (() => void)[] = [];
    const heldSeqs: number[] = [];
    const port = await freePort();
    server = createServer((req, res) => {
      void body(req).then((events) => {
        const answer = () => {
          for (const e of events) received.set(e.seq, e);
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ accepted: events.length, duplicates: 0, rejected: [] }));
        };
        if (hold) {
          held.push(answer);
          heldSeqs.push(...events.map((e) => e.seq));
        }
        else answer();
      });
    });
    await new Promise<void>((r) => server?.listen(port, '127.0.0.1', r));
    const agent = await startAgent(dir, {
      id: 'drop-in-flight',
      limits: { maxEventBytes: '2KiB' },
      buffer: { maxBytes: '32KiB', whenFull: 'drop-oldest' },
      push: { http: { url: `http://127.0.0.1:${port}/v1/events`, maxInFlight: 4 }, batch: { maxEvents: 20, maxWaitMs: 5 }, backoff: { initialMs: 50, maxMs: 200 } },
    });
    const post = async (n: number) => {
      const lines = Array.from({ length: 5 }, (_, i) => JSON.stringify({ type: 'in.flight', data: { n, i, pad: randomBytes(150).toString('base64') } }));
      const res = await fetch(agent.intakeUrl, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: lines.join('\n') });
      expect(res.status).toBe(200);
    };
    // Enough for four batches in flight, then overflow the buffer several times over while they wait.
    for (let n = 0; n < 16; n += 1) await post(n);
    await waitFor(() => held.length === 4, 'four batches held by the gateway');
    for (let n = 16; n < 80; n += 1) await post(n);
    hold = false;
    for (const answer of held.splice(0)) answer();
    const head = (await agent.status()).head;
    await waitFor(async () => {
      const s = await agent.status();
      return s.delivered === s.head && s.push.state === 'idle';
    }, 'agent drained');
    await agent.stop();

    const gaps = [...received.values()].filter((e) => e.type === 'meteorzx.gap');
    expect(gaps.length).toBeGreaterThan(0);
    const named = new Set<number>();
    for (const g of gaps) for (let s = g.data?.from ?? 0; s <= (g.data?.to ?? -1); s += 1) named.add(s);
    const arrived = [...received.values()].filter((e) => e.type !== 'meteorzx.gap').map((e) => e.seq);
    // The held batches were acked, so they arrived; no gap event names any of them, nor any other event
    // that arrived; and every seq up to the head either arrived or is named.
    expect(heldSeqs.length).toBeGreaterThanOrEqual(20);
    expect(heldSeqs.filter((s) => named.has(s))).toEqual([]);
    expect(arrived.filter((s) => named.has(s))).toEqual([]);
    const missing: number[] = [];
    for (let s = 1; s <= head; s += 1) if (!received.has(s)) missing.push(s);
    expect(missing.filter((s) => !named.has(s))).toEqual([]);
  });
});
