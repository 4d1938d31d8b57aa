import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Alert } from '../../gateway/alerts/alert.js';
import { AlertSink } from '../../gateway/alerts/alert-sink.js';
import { WebhookQueue, type DropReason } from '../../gateway/alerts/webhook-queue.js';
import { GatewayMetrics } from '../../gateway/metrics.js';

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setTimeout(r, 5));
}

const alert = (n: number): Alert => ({ kind: 'rule', rule: 'every-event', detail: `alert ${n}`, id: `e${n}`, source: 's1', type: 't', at: '2026-01-01T00:00:00.000Z' });

/** Records warnings instead of printing them. */
function recordingLogger(): { warn: (...args: unknown[]) => void; lines: unknown[][] } {
  const lines: unknown[][] = [];
  return { lines, warn: (...args: unknown[]) => void lines.push(args) };
}

function dropCounter(): { onDropped: (reason: DropReason, n: number) => void; dropped: Record<string, number> } {
  const dropped: Record<string, number> = {};
  return { dropped, onDropped: (reason, n) => void (dropped[reason] = (dropped[reason] ?? 0) + n) };
}

describe('alert webhook queue', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r) ?? r(undefined));
    server = undefined;
  });

  async function receiver(answer: (req: IncomingMessage, body: string) => number): Promise<string> {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (b: Buffer) => (body += b.toString()));
      req.on('end', () => {
        res.statusCode = answer(req, body);
        res.end();
      });
    });
    await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  }

  it('POSTs the alerts queued together as one JSON array', async () => {
    const posts: { type: string | undefined; body: unknown }[] = [];
    const url = await receiver((req, body) => {
      posts.push({ type: req.headers['content-type'], body: JSON.parse(body) });
      return 200;
    });
    const queue = new WebhookQueue({ url, logger: recordingLogger(), flushMs: 20 });
    queue.push(alert(1));
    queue.push(alert(2));
    queue.push(alert(3));
    await until(() => posts.length > 0);
    await queue.close();
    expect(posts).toEqual([{ type: 'application/json', body: [alert(1), alert(2), alert(3)] }]);
  });

  it('splits a burst into POSTs of at most maxBatch alerts, one at a time', async () => {
    const batches: Alert[][] = [];
    let inFlight = 0;
    let most = 0;
    const queue = new WebhookQueue({
      url: 'http://unused',
      logger: recordingLogger(),
      maxBatch: 10,
      flushMs: 10,
      post: async (_url, body) => {
        inFlight += 1;
        most = Math.max(most, inFlight);
        await new Promise((r) => setTimeout(r, 2));
        batches.push(JSON.parse(body) as Alert[]);
        inFlight -= 1;
      },
    });
    for (let i = 0; i < 35; i++) queue.push(alert(i));
    await until(() => batches.flat().length === 35);
    await queue.close();
    expect(batches.map((b) => b.length)).toEqual([10, 10, 10, 5]);
    expect(batches.flat().map((a) => a.id)).toEqual(Array.from({ length: 35 }, (_, i) => `e${i}`));
    expect(most).toBe(1);
  });

  it('a receiver that never answers: one POST in flight, the queue stays bounded, drops are counted and logged once', async () => {
    let posts = 0;
    const logger = recordingLogger();
    const { dropped, onDropped } = dropCounter();
    const queue = new WebhookQueue({
      url: 'http://unused',
      logger,
      maxQueued: 50,
      maxBatch: 10,
      flushMs: 10,
      timeoutMs: 50,
      onDropped,
      post: () => {
        posts += 1;
        return new Promise<void>(() => undefined); // never settles
      },
    });
    for (let i = 0; i < 10_000; i++) {
      queue.push(alert(i));
      expect(queue.queued).toBeLessThanOrEqual(50);
    }
    expect(posts).toBe(1);
    expect(queue.posting).toBe(true);
    expect(queue.queued).toBe(50);
    expect(dropped).toEqual({ 'queue-full': 10_000 - 10 - 50 });
    expect(logger.lines).toHaveLength(1);
    // Close gives up after one POST timeout and counts what was left.
    await queue.close();
    expect(dropped).toEqual({ 'queue-full': 10_000 - 10 - 50, shutdown: 50 });
    expect(queue.queued).toBe(0);
    queue.push(alert(0));
    expect(dropped['shutdown']).toBe(51);
  });

  it('a POST the receiver refuses drops its batch, counted as post-failed', async () => {
    const url = await receiver(() => 500);
    const logger = recordingLogger();
    const { dropped, onDropped } = dropCounter();
    const queue = new WebhookQueue({ url, logger, flushMs: 10, onDropped });
    queue.push(alert(1));
    queue.push(alert(2));
    await until(() => dropped['post-failed'] === 2);
    await queue.close();
    expect(logger.lines).toHaveLength(1);
    expect(JSON.stringify(logger.lines[0])).toContain('answered 500');
  });

  it('sends the user and password of a webhook URL as HTTP Basic auth, and never logs the password', async () => {
    // They were dropped: the receiver saw no Authorization header, answered 401, and every batch counted as post-failed.
    const auth: (string | undefined)[] = [];
    const plain = await receiver((req) => {
      auth.push(req.headers.authorization);
      return req.headers.authorization === undefined ? 401 : 204;
    });
    const url = plain.replace('http://', 'http://alert%20bot:p%40ss:w0rd@');
    const logger = recordingLogger();
    const { dropped, onDropped } = dropCounter();
    const queue = new WebhookQueue({ url, logger, flushMs: 10, onDropped });
    queue.push(alert(1));
    await until(() => auth.length === 1);
    await queue.close();
    expect(auth).toEqual([`Basic ${Buffer.from('alert bot:p@ss:w0rd').toString('base64')}`]);
    expect(dropped).toEqual({});

    // A refused batch is logged with the URL, the password left out.
    const refusing = await receiver(() => 500);
    const queue2 = new WebhookQueue({ url: refusing.replace('http://', 'http://bot:s3cret@'), logger, flushMs: 10, onDropped });
    queue2.push(alert(2));
    await until(() => dropped['post-failed'] === 1);
    await queue2.close();
    expect(JSON.stringify(logger.lines)).not.toContain('s3cret');
    expect(JSON.stringify(logger.lines)).toContain(refusing.replace('http://', 'http://bot:***@'));
  });

  it('the sink logs and counts every alert, and counts the undelivered ones by reason', async () => {
    const metrics = new GatewayMetrics();
    const sink = new AlertSink({
      webhook: 'http://unused',
      metrics,
      logger: recordingLogger(),
      queue: { maxQueued: 2, maxBatch: 100, flushMs: 60_000, timeoutMs: 10, post: () => new Promise<void>(() => undefined) },
    });
    for (let i = 0; i < 5; i++) sink.raise(alert(i));
    sink.raise({ kind: 'seq-gap', detail: 'hole', agent: 'a1', epoch: 'e', from: 2, to: 3, at: '2026-01-01T00:00:00.000Z' });
    await sink.close();
    const text = await metrics.registry.metrics();
    expect(text).toContain('meteorzx_gateway_alerts_total{rule="every-event"} 5');
    expect(text).toContain('meteorzx_gateway_alerts_total{rule="seq-gap"} 1');
    expect(text).toContain('meteorzx_gateway_alerts_dropped_total{reason="queue-full"} 4');
  });
});

describe('alert log bound', () => {
  it('a rule alerting on every event logs its first burst per window and one count of the rest; metrics and the webhook get all', async () => {
    const metrics = new GatewayMetrics();
    const logger = recordingLogger();
    const posted: Alert[] = [];
    const sink = new AlertSink({
      webhook: 'http://unused',
      metrics,
      logger,
      log: { burst: 3, windowMs: 100 },
      queue: { maxQueued: 10_000, maxBatch: 10_000, flushMs: 1, timeoutMs: 1000, post: async (_url, body) => void posted.push(...(JSON.parse(body) as Alert[])) },
    });
    for (let i = 0; i < 1000; i++) sink.raise(alert(i));
    sink.raise({ kind: 'seq-gap', detail: 'hole', agent: 'a1', epoch: 'e', from: 2, to: 3, at: '2026-01-01T00:00:00.000Z' });
    const inWindow = logger.lines.length;
    await until(() => logger.lines.length > inWindow);
    // A new window: the rule logs again.
    sink.raise(alert(1000));
    await sink.close();
    const texts = logger.lines.map((l) => String(l[1]));
    // Before the fix: 1,002 warn lines.
    expect({ inWindow, texts }).toEqual({
      inWindow: 4,
      texts: ['alert: alert 0', 'alert: alert 1', 'alert: alert 2', 'alert: hole', expect.stringMatching(/^alert: 997 more "every-event" alerts in 0.1 s/) as unknown, 'alert: alert 1000'],
    });
    expect(logger.lines[4]?.[0]).toEqual({ rule: 'every-event', suppressed: 997, windowMs: 100 });
    expect(await metrics.registry.metrics()).toContain('meteorzx_gateway_alerts_total{rule="every-event"} 1001');
    expect(posted.length).toBe(1002);
  });
});
