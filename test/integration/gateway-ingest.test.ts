import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainEvent, type AuditEvent, type SourcesResponse } from '../../protocols/index.js';
import { ingest, ndjson, removeDir, runCli, runProcess, startGateway, tempDir, type RunningGateway } from './gateway-harness.js';

/**
 * Issue 3, done-when 1: real peers (mosquitto_pub, curl) against the real
 * CLI; `meteorzx query` reads back what they sent.
 */
let dir: string;
let gw: RunningGateway;

beforeAll(async () => {
  dir = await tempDir();
  gw = await startGateway({ dir });
});

afterAll(async () => {
  await gw?.stop();
  await removeDir(dir);
});

interface Stored {
  id: string;
  source: string;
  type: string;
  ingest: { method: string; peer: string; integrity: string };
}

describe('gateway ingest with real peers', () => {
  it('stores 1,000 events mosquitto_pub publishes at QoS 1, and query returns each once with method mqtt', async () => {
    const lines = Array.from({ length: 1000 }, (_, i) => JSON.stringify({ id: `mq-${i}`, type: 'door.open', data: { n: i } })).join('\n');
    const pub = await runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gw.mqttPort), '-q', '1', '-t', 'audit/door-7/events', '-l', '-i', 'door-7'], {
      input: `${lines}\n`,
    });
    expect(pub.code, pub.stderr).toBe(0);

    const q = await runCli(['query', gw.httpUrl, '--source', 'door-7']);
    expect(q.code, q.stderr).toBe(0);
    const events = ndjson<Stored>(q.stdout);
    expect(events).toHaveLength(1000);
    expect(new Set(events.map((e) => e.id)).size).toBe(1000);
    expect(events.every((e) => e.ingest.method === 'mqtt' && e.source === 'door-7' && e.type === 'door.open')).toBe(true);
    expect(events[0]?.ingest.peer).toMatch(/^door-7@127\.0\.0\.1:\d+$/);

    // Paging: --limit below the total stops early; the table format has a header and one row per event.
    const some = await runCli(['query', gw.httpUrl, '--source', 'door-7', '--limit', '3', '--format', 'table']);
    expect(some.code, some.stderr).toBe(0);
    expect(some.stdout.trim().split('\n')).toHaveLength(4);
    expect(some.stdout).toMatch(/^RECEIVED\s+SOURCE\s+TYPE/);
  });

  it('forwards stored events to an anonymous loopback subscriber once one subscribes to them', async () => {
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { reconnectPeriod: 0, protocolVersion: 4 });
    try {
      const heard: string[] = [];
      sub.on('message', (topic, payload) => heard.push(`${topic} ${payload.toString()}`));
      await sub.subscribeAsync('audit/+/events', { qos: 1 });
      const lines = [0, 1, 2].map((i) => JSON.stringify({ id: `fwd-${i}`, type: 'door.open' }));
      const pub = await runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gw.mqttPort), '-q', '1', '-t', 'audit/door-9/events', '-l', '-i', 'door-9'], {
        input: `${lines.join('\n')}\n`,
      });
      expect(pub.code, pub.stderr).toBe(0);
      for (let waited = 0; heard.length < 3 && waited < 5000; waited += 20) await new Promise((r) => setTimeout(r, 20));
      expect(heard).toEqual(lines.map((l) => `audit/door-9/events ${l}`));
      const q = await runCli(['query', gw.httpUrl, '--source', 'door-9']);
      expect(ndjson<Stored>(q.stdout).map((e) => e.id)).toEqual(['fwd-0', 'fwd-1', 'fwd-2']);
    } finally {
      await sub.endAsync();
    }
  });

  it('counts accepted, duplicates and rejected exactly for a curl batch, and records the rejection in custody', async () => {
    const batch = [
      { id: 'c-1', source: 'app-1', type: 'auth.login', outcome: 'success' },
      { id: 'c-2', source: 'app-1', type: 'auth.login', outcome: 'failure' },
      { id: 'c-1', source: 'app-1', type: 'auth.login', outcome: 'success' },
      { id: 'c-bad', source: 'app-1', type: 'auth.login', outcome: 'maybe' },
      { id: 'c-3', source: 'app-1', type: 'auth.logout' },
      { id: 'c-2', source: 'app-1', type: 'auth.login', outcome: 'failure' },
    ];
    const res = await runProcess('curl', ['-sS', '-X', 'POST', '-H', 'Content-Type: application/json', '--data-binary', '@-', `${gw.httpUrl}/v1/events`], {
      input: JSON.stringify(batch),
    });
    expect(res.code, res.stderr).toBe(0);
    const answer = JSON.parse(res.stdout) as { accepted: number; duplicates: number; rejected: { index: number; error: string }[] };
    expect(answer.accepted).toBe(3);
    expect(answer.duplicates).toBe(2);
    expect(answer.rejected).toHaveLength(1);
    expect(answer.rejected[0]?.index).toBe(3);
    expect(answer.rejected[0]?.error).toMatch(/outcome/);

    const custody = await runProcess('curl', ['-sS', `${gw.httpUrl}/v1/custody?source=app-1`]);
    const records = ndjson<{ outcome: string; id?: string; reason?: string; method: string }>(custody.stdout);
    const rejected = records.filter((r) => r.outcome === 'rejected');
    expect(rejected).toHaveLength(1);
    expect(rejected[0]?.reason).toMatch(/outcome: must be one of success, failure, unknown/);
    expect(rejected[0]?.method).toBe('http');
    expect(records.filter((r) => r.outcome === 'accepted').map((r) => r.id).sort()).toEqual(['c-1', 'c-2', 'c-3']);
    expect(records.filter((r) => r.outcome === 'duplicate')).toHaveLength(2);

    const q = await runCli(['query', gw.httpUrl, '--source', 'app-1']);
    expect(ndjson<Stored>(q.stdout).map((e) => e.id).sort()).toEqual(['c-1', 'c-2', 'c-3']);
  });

  it('GET /v1/events?id= returns the stored event of that id, as an alert webhook is told to ask', async () => {
    // The parameter was ignored: the answer was the first page of every event (1,000 of them here, and more).
    const odd = 'c/odd id é&!';
    await ingest(gw.httpUrl, [
      { id: 'byid-1', source: 'by-id', type: 'auth.login' },
      { id: odd, source: 'by-id', type: 'auth.logout' },
      ...Array.from({ length: 998 }, (_, i) => ({ id: `byid-x-${i}`, source: 'by-id-other', type: 't' })),
    ]);
    await ingest(gw.httpUrl, [{ id: 'byid-1', source: 'by-id', type: 'auth.login' }]);
    const get = async (query: string): Promise<{ status: number; ids: string[] }> => {
      const res = await fetch(`${gw.httpUrl}/v1/events?${query}`);
      const text = await res.text();
      return { status: res.status, ids: res.status === 200 ? ndjson<Stored>(text).map((e) => e.id) : [text] };
    };
    expect(await get('id=byid-1')).toEqual({ status: 200, ids: ['byid-1'] });
    expect(await get(`id=${encodeURIComponent(odd)}`)).toEqual({ status: 200, ids: [odd] });
    expect(await get('id=byid-1&type=auth.login&source=by-id')).toEqual({ status: 200, ids: ['byid-1'] });
    expect(await get('id=byid-1&source=by-id-other')).toEqual({ status: 200, ids: [] });
    expect(await get('id=no-such-id')).toEqual({ status: 200, ids: [] });
    expect((await get(`id=${'x'.repeat(129)}`)).status).toBe(400);
  });

  it('answers 400 naming a query parameter it does not know, instead of ignoring the filter', async () => {
    // `from`/`to` for since/until, a tag, a typo: each was dropped in silence, and the answer was every event (or record).
    for (const [path, known] of [
      ['/v1/events?source=by-id&from=2026-01-01T00:00:00Z', 'id, source, type, since, until, limit, cursor'],
      ['/v1/events?sorce=by-id', 'id, source, type, since, until, limit, cursor'],
      ['/v1/custody?source=by-id&outcome=rejected', 'id, source, limit, cursor'],
      ['/v1/sources?sources=by-id', 'source, after, limit'],
    ] as const) {
      const res = await fetch(`${gw.httpUrl}${path}`);
      const body = (await res.json()) as { error: string; code: string };
      const unknown = /[?&]([a-z]+)=[^&]*$/.exec(path)?.[1] ?? '';
      expect({ status: res.status, body }).toEqual({ status: 400, body: { code: 'METEORZX_BAD_REQUEST', error: `unknown parameter "${unknown}" (known: ${known})` } });
    }
    expect((await fetch(`${gw.httpUrl}/v1/verify?sorce=x`, { method: 'POST' })).status).toBe(400);
    expect((await fetch(`${gw.httpUrl}/v1/events?source=by-id&type=t&since=0&until=99999999999999&limit=5`)).status).toBe(200);
  });

  it('pages custody records by source with X-Next-Cursor: every record once, none past the last page', async () => {
    // Three posts, so the records span several commits; a duplicate and a rejection among them.
    const post = async (lines: string[]): Promise<void> => {
      const res = await runProcess('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Content-Type: application/x-ndjson', '--data-binary', '@-', `${gw.httpUrl}/v1/events`], {
        input: `${lines.join('\n')}\n`,
      });
      expect(res.stdout).toBe('200');
    };
    const ev = (i: number): string => JSON.stringify({ id: `cp-${i}`, source: 'custody-pager', type: 't' });
    await post(Array.from({ length: 9 }, (_, i) => ev(i)));
    await post([ev(3), JSON.stringify({ id: 'cp-bad', source: 'custody-pager', type: 't', outcome: 'maybe' }), ev(9)]);
    await post(Array.from({ length: 12 }, (_, i) => ev(10 + i)));

    const pages: Array<Array<{ n: number; outcome: string; id?: string }>> = [];
    let cursor: string | undefined;
    do {
      const url = `${gw.httpUrl}/v1/custody?source=custody-pager&limit=5${cursor === undefined ? '' : `&cursor=${cursor}`}`;
      const res = await runProcess('curl', ['-sS', '-D', '-', url]);
      const [head = '', body = ''] = res.stdout.split('\r\n\r\n');
      expect(head).toMatch(/^HTTP\/1\.1 200/);
      cursor = /^x-next-cursor: (\S+)$/im.exec(head)?.[1];
      pages.push(ndjson(body));
      expect(pages.length).toBeLessThan(10);
    } while (cursor !== undefined);
    // 24 records: 5 + 5 + 5 + 5 + 4, the last page without a cursor.
    expect(pages.map((p) => p.length)).toEqual([5, 5, 5, 5, 4]);
    const ns = pages.flat().map((r) => r.n);
    expect(ns).toEqual([...ns].sort((a, b) => a - b));
    expect(new Set(ns).size).toBe(24);
    const records = pages.flat();
    expect(records.filter((r) => r.outcome === 'accepted')).toHaveLength(22);
    expect(records.filter((r) => r.outcome === 'duplicate').map((r) => r.id)).toEqual(['cp-3']);
    expect(records.filter((r) => r.outcome === 'rejected').map((r) => r.id)).toEqual(['cp-bad']);
    // Exactly a page's worth left: no cursor on a full last page.
    const all = await runProcess('curl', ['-sS', '-D', '-', `${gw.httpUrl}/v1/custody?source=custody-pager&limit=24`]);
    expect(all.stdout).not.toMatch(/x-next-cursor/i);

    const bad = await runProcess('curl', ['-sS', '-w', '\n%{http_code}', `${gw.httpUrl}/v1/custody?source=custody-pager&cursor=bm9wZQ`]);
    expect(bad.stdout).toMatch(/METEORZX_INVALID_CURSOR[\s\S]*\n400$/);
  });

  it('send posts a file in batches and exits 1 naming rejected events; status reports the gateway', async () => {
    const lines = [...Array.from({ length: 2500 }, (_, i) => JSON.stringify({ id: `s-${i}`, source: 'sender', type: 't' })), '{"type": broken'];
    const sent = await runCli(['send', gw.httpUrl, '-'], { input: `${lines.join('\n')}\n` });
    expect(sent.code).toBe(1);
    expect(sent.stdout).toMatch(/^batch 1: 1000 events: accepted 1000, duplicates 0, rejected 0$/m);
    expect(sent.stdout).toMatch(/^batch 3: 501 events: accepted 500, duplicates 0, rejected 1$/m);
    expect(sent.stdout).toMatch(/rejected event 2500: malformed JSON/);
    expect(sent.stderr.trim()).toBe('meteorzx: 1 of 2501 events rejected (listed above)');

    const again = await runCli(['send', gw.httpUrl], { input: `${lines.slice(0, 10).join('\n')}\n` });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/total: 10 events in 1 batches: accepted 0, duplicates 10, rejected 0/);

    const status = await runCli(['status', gw.httpUrl]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^gateway ready: \d+ sources/);
    expect(status.stdout).toMatch(/sender .*accepted 2500/);
  });

  it('status exits 1 for a gateway that answers but is not ready, after its report', async () => {
    // A stand-in: up (/healthz), not ready (/readyz 503, as while draining or with storage that cannot write).
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (path === '/healthz') res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      else if (path === '/readyz') res.writeHead(503, { 'content-type': 'application/json' }).end('{"status":"not ready"}');
      else if (path === '/v1/sources') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sources: [], epochs: [] }));
      else res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"no route","code":"METEORZX_NOT_FOUND"}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const status = await runCli(['status', url]);
      // Before: exit 0, so a probe reading the exit status took a gateway that stores nothing for a healthy one.
      expect(status.code).toBe(1);
      expect(status.stdout).toMatch(/^gateway NOT READY: 0 sources/);
      expect(status.stderr.trim()).toBe(`meteorzx: gateway at ${url} is not ready (GET /readyz answered 503)`);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('send takes a pretty-printed JSON event, and events one after another as `jq .` prints them', async () => {
    // Read line by line, one such event was 5 "malformed JSON" rejections and never stored.
    const pretty = (n: number) => JSON.stringify({ id: `pretty-${n}`, source: 'pretty', type: 't', data: { n, list: [1, { a: 'x}' }, {}] } }, null, 2);
    const one = await runCli(['send', gw.httpUrl], { input: `${pretty(0)}\n` });
    expect(one.code, one.stdout + one.stderr).toBe(0);
    expect(one.stdout).toMatch(/^total: 1 events in 1 batches: accepted 1, duplicates 0, rejected 0$/m);
    const run = await runCli(['send', gw.httpUrl, '--batch', '2'], { input: `${[1, 2, 3].map(pretty).join('\n')}\n\n${pretty(0)}\n` });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^total: 4 events in 2 batches: accepted 3, duplicates 1, rejected 0$/m);
    const q = await runCli(['query', gw.httpUrl, '--source', 'pretty']);
    expect(ndjson<{ id: string; data: unknown }>(q.stdout).map((e) => [e.id, e.data])).toEqual(
      [0, 1, 2, 3].map((n) => [`pretty-${n}`, { n, list: [1, { a: 'x}' }, {}] }]),
    );

    // NDJSON whose first line is broken is still read line by line: that line alone is rejected.
    const lines = ['{"id": "nd-0", "type": broken', '{"id":"nd-1","source":"pretty","type":"t"}', '{"id":"nd-2","source":"pretty","type":"t"}'];
    const nd = await runCli(['send', gw.httpUrl], { input: `${lines.join('\n')}\n` });
    expect(nd.code).toBe(1);
    expect(nd.stdout).toMatch(/^total: 3 events in 1 batches: accepted 2, duplicates 0, rejected 1$/m);
    expect(nd.stdout).toMatch(/rejected event 0: malformed JSON/);
    // With a byte-order mark first (a Windows editor's), and a broken line further down: that line alone.
    const bom = await runCli(['send', gw.httpUrl], { input: `\ufeff${lines[1]}\n${lines[0]}\n${lines[2]}\n` });
    expect(bom.stdout).toMatch(/^total: 3 events in 1 batches: accepted 0, duplicates 2, rejected 1$/m);
    expect(bom.stdout).toMatch(/rejected event 1: malformed JSON/);
    // A JSON array after a byte-order mark (PowerShell 5's Out-File -Encoding utf8 writes one): was refused whole,
    // 'input starts with "[" but is not a JSON array: Unexpected token \'\ufeff\''.
    const bomArray = await runCli(['send', gw.httpUrl], { input: `\ufeff[${lines[1]},\n${lines[2]}]\n` });
    expect(bomArray.code, bomArray.stdout + bomArray.stderr).toBe(0);
    expect(bomArray.stdout).toMatch(/^total: 2 events in 1 batches: accepted 0, duplicates 2, rejected 0$/m);
    // A pretty-printed value cut short costs only itself: the next one starts at its unindented `{`.
    const cut = await runCli(['send', gw.httpUrl], { input: `${pretty(5).split('\n').slice(0, 4).join('\n')}\n${pretty(6)}\n${pretty(7)}\n` });
    expect(cut.stdout).toMatch(/^total: 3 events in 1 batches: accepted 2, duplicates 0, rejected 1$/m);
    expect(cut.stdout).toMatch(/rejected event 0: malformed JSON/);
  });

  it('send splits a batch the receiver answers 413, and sizes batches in bytes, not characters', async () => {
    // A gateway taking smaller bodies than send's batches: the whole send failed at its first batch
    // ("batch 1 (events 0-299): HTTP 413: body is … bytes, over the limit of 65536 (maxBodyBytes)").
    const sdir = await tempDir();
    const small = await startGateway({ dir: sdir, config: { limits: { maxBodyBytes: '64KiB', maxEventBytes: '16KiB' } } });
    try {
      // 300 events of ≈1 KB, ≈300 characters each: 3 bytes per character in UTF-8.
      const events = Array.from({ length: 300 }, (_, i) => ({ id: `big-${i}`, source: 'big', type: 't', data: { s: '中'.repeat(300) } }));
      const nd = await runCli(['send', small.httpUrl], { input: `${events.map((e) => JSON.stringify(e)).join('\n')}\n` });
      expect(nd.code, nd.stdout + nd.stderr).toBe(0);
      expect(nd.stdout).toMatch(/^total: 300 events in 1 batches: accepted 300, duplicates 0, rejected 0$/m);
      const arr = await runCli(['send', small.httpUrl], { input: JSON.stringify(events.map((e) => ({ ...e, id: `arr-${e.id}` }))) });
      expect(arr.code, arr.stdout + arr.stderr).toBe(0);
      expect(arr.stdout).toMatch(/^total: 300 events in 1 batches: accepted 300, duplicates 0, rejected 0$/m);
      // One event over the body limit cannot be split: named, exit 1.
      const one = await runCli(['send', small.httpUrl], { input: `${JSON.stringify({ type: 't', source: 'big', data: { s: 'x'.repeat(70_000) } })}\n` });
      expect(one.code).toBe(1);
      expect(one.stderr).toMatch(/batch 1 \(events 0-0\): HTTP 413: body is over the limit of 65536 bytes \(maxBodyBytes\)/);
    } finally {
      await small.stop();
      await removeDir(sdir);
    }
    // Multi-byte text counted in characters made batches of 1,000 such events 10.5 MB, over the default 8 MiB.
    const cjk = Array.from({ length: 1000 }, (_, i) => JSON.stringify({ id: `cjk-${i}`, source: 'cjk', type: 't', data: { s: '中'.repeat(3500) } }));
    const sent = await runCli(['send', gw.httpUrl], { input: `${cjk.join('\n')}\n` });
    expect(sent.code, sent.stdout + sent.stderr).toBe(0);
    expect(sent.stdout).toMatch(/^total: 1000 events in \d+ batches: accepted 1000, duplicates 0, rejected 0$/m);
  });

  it('GET /v1/sources?source= and status --source list one source and the epochs of that agent only', async () => {
    const chained = (agent: string): AuditEvent[] => {
      let prev: string | undefined;
      return [1, 2, 4].map((seq) => {
        const e = chainEvent({ id: `${agent}-${seq}`, type: 't', source: agent, agent, epoch: 'E1', seq }, prev);
        prev = e.hash;
        return e;
      });
    };
    const posted = await runProcess('curl', ['-sS', '-X', 'POST', '-H', 'Content-Type: application/x-ndjson', '--data-binary', '@-', `${gw.httpUrl}/v1/events`], {
      input: [...chained('ag-one'), ...chained('ag-two')].map((e) => JSON.stringify(e)).join('\n'),
    });
    expect(JSON.parse(posted.stdout)).toMatchObject({ accepted: 6 });
    const one = JSON.parse((await runProcess('curl', ['-sS', `${gw.httpUrl}/v1/sources?source=ag-one`])).stdout) as SourcesResponse;
    expect({ sources: one.sources.map((s) => [s.source, s.accepted]), epochs: one.epochs.map((e) => [e.agent, e.lastSeq, e.gaps.map((g) => [g.from, g.to])]) }).toEqual({
      sources: [['ag-one', 3]],
      epochs: [['ag-one', 4, [[3, 3]]]],
    });
    const none = JSON.parse((await runProcess('curl', ['-sS', `${gw.httpUrl}/v1/sources?source=nobody`])).stdout) as SourcesResponse;
    expect(none).toMatchObject({ sources: [], epochs: [] });
    const bad = await runProcess('curl', ['-sS', '-w', '\\n%{http_code}', `${gw.httpUrl}/v1/sources?source=a%21b`]);
    expect(bad.stdout.trim().split('\n').at(-1)).toBe('400');
    const status = await runCli(['status', gw.httpUrl, '--source', 'ag-two']);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^gateway ready: 1 sources, 1 agent epochs\n {2}ag-two .*accepted 3 .*\n {2}agent ag-two epoch E1: last seq 4, received 3, gaps 3\n$/);
  });

  it('GET /v1/sources pages at 10,000 sources (next, after=), and status --json follows the pages', async () => {
    const total = 10_050;
    const before = JSON.parse((await runProcess('curl', ['-sS', `${gw.httpUrl}/v1/sources`])).stdout) as SourcesResponse;
    expect(before.next).toBeUndefined();
    const events = Array.from({ length: total }, (_, i) => JSON.stringify({ id: `pg-${i}`, source: `pg-${String(i).padStart(5, '0')}`, type: 't' }));
    const sent = await runCli(['send', gw.httpUrl], { input: `${events.join('\n')}\n` });
    expect(sent.code, sent.stderr).toBe(0);
    const all = before.sources.length + total;
    const first = JSON.parse((await runProcess('curl', ['-sS', `${gw.httpUrl}/v1/sources`])).stdout) as SourcesResponse;
    expect({ n: first.sources.length, next: first.next }).toEqual({ n: 10_000, next: first.sources.at(-1)?.source });
    const rest = JSON.parse((await runProcess('curl', ['-sS', `${gw.httpUrl}/v1/sources?after=${first.next ?? ''}`])).stdout) as SourcesResponse;
    expect({ n: rest.sources.length, next: rest.next }).toEqual({ n: all - 10_000, next: undefined });
    const small = JSON.parse((await runProcess('curl', ['-sS', `${gw.httpUrl}/v1/sources?limit=3&after=pg-00009`])).stdout) as SourcesResponse;
    expect({ sources: small.sources.map((x) => x.source), next: small.next }).toEqual({ sources: ['pg-00010', 'pg-00011', 'pg-00012'], next: 'pg-00012' });
    const bad = await runProcess('curl', ['-sS', '-w', '\n%{http_code}', `${gw.httpUrl}/v1/sources?after=a%21b`]);
    expect(bad.stdout.trim().split('\n').at(-1)).toBe('400');
    const status = await runCli(['status', gw.httpUrl, '--json']);
    expect(status.code, status.stderr).toBe(0);
    const listed = (JSON.parse(status.stdout) as SourcesResponse).sources.map((x) => x.source);
    expect({ n: listed.length, distinct: new Set(listed).size, hasLast: listed.includes('pg-10049') }).toEqual({ n: all, distinct: all, hasLast: true });
  });

  it('prints one line and exits non-zero for a user mistake', async () => {
    const refused = await runCli(['query', 'http://127.0.0.1:1']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:1: connection refused/);

    const badUrl = await runCli(['query', 'not a url']);
    expect(badUrl.code).not.toBe(0);
    expect(badUrl.stderr.trim()).toBe('meteorzx: not a URL: "not a url" (expected e.g. http://127.0.0.1:7400)');

    // https:// to a plain HTTP gateway: was OpenSSL's raw text, ending in a line break ("…ssl3_get_record:wrong version number:../deps/openssl/…:350:\n").
    const notTls = await runCli(['query', gw.httpUrl.replace('http:', 'https:')]);
    expect(notTls.code).not.toBe(0);
    expect(notTls.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(notTls.stderr.trimEnd()).toBe(`meteorzx: cannot reach ${gw.httpUrl.replace('http:', 'https:')}: the server does not speak TLS (is it http://?)`);

    // A directory for the file: was "EISDIR: illegal operation on a directory, read", exit 1.
    const dirAsFile = await runCli(['send', gw.httpUrl, tmpdir()]);
    expect(dirAsFile.code).toBe(2);
    expect(dirAsFile.stderr.trimEnd()).toBe(`meteorzx: cannot read ${tmpdir()}: it is a directory; give a file of events, or - for stdin`);

    // A line with no end (a device): was "RangeError: Invalid string length" with a stack, at ≈ 620 MB of RSS.
    const endless = await runCli(['send', gw.httpUrl, '/dev/zero']);
    expect({ code: endless.code, stderr: endless.stderr.trimEnd() }).toEqual({ code: 2, stderr: 'meteorzx: line 1 of the input is longer than 64 MiB: not events this command can send' });
    // A pretty-printed JSON array is read whole: its text is bounded the same way.
    const line = `  {"type":"big","data":{"pad":"${'x'.repeat(1000)}"}},\n`;
    const array = Buffer.from(`[\n${line.repeat(Math.ceil((65 * 1024 * 1024) / line.length))}  {"type":"end"}\n]\n`);
    const huge = await runCli(['send', gw.httpUrl], { input: array });
    expect({ code: huge.code, stderr: huge.stderr.trimEnd() }).toEqual({
      code: 2,
      stderr: 'meteorzx: the input is a JSON array longer than 64 MiB: send it as NDJSON (one event per line), or in parts',
    });
  });
});

describe('gateway broker: what subscribers hear, and what it keeps', () => {
  it('forwards no event publish while the pipeline masks or drops events: a subscription must not undo a mask', async () => {
    const own = await tempDir();
    const masked = await startGateway({
      dir: own,
      config: { pipeline: { transforms: [{ mask: ['data.card'] }], rules: [{ name: 'no-test', if: 'data.test == true', drop: true }] } },
    });
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${masked.mqttPort}`, { reconnectPeriod: 0, protocolVersion: 4 });
    try {
      const heard: string[] = [];
      sub.on('message', (topic, payload) => heard.push(`${topic} ${payload.toString()}`));
      await sub.subscribeAsync('audit/#', { qos: 1 });
      const lines = [JSON.stringify({ id: 'm-1', type: 'pay', data: { card: '4111111111111111' } }), JSON.stringify({ id: 'm-2', type: 'pay', data: { test: true } })];
      const pub = await runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(masked.mqttPort), '-q', '1', '-t', 'audit/pos-1/events', '-l'], { input: `${lines.join('\n')}\n` });
      expect(pub.code, pub.stderr).toBe(0);
      // A status publish after the events still reaches the subscriber: by then the events would have.
      await runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(masked.mqttPort), '-q', '1', '-t', 'audit/pos-1/status', '-m', '{"state":"online"}']);
      for (let waited = 0; !heard.some((h) => h.startsWith('audit/pos-1/status')) && waited < 5000; waited += 20) await new Promise((r) => setTimeout(r, 20));
      expect(heard).toEqual(['audit/pos-1/status {"state":"online"}']);
      const stored = ndjson<Stored & { data: { card?: string } }>((await runCli(['query', masked.httpUrl, '--source', 'pos-1'])).stdout);
      expect(stored.map((e) => [e.id, e.data.card])).toEqual([['m-1', '***']]);
    } finally {
      await sub.endAsync();
      await masked.stop();
      await removeDir(own);
    }
  });

  it('refuses a status payload over 4 KiB (retained payloads live in memory) and never retains a command', async () => {
    const big = 'x'.repeat(5000);
    const refused = await runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gw.mqttPort), '-q', '1', '-r', '-t', 'audit/big-1/status', '-m', big]);
    expect(refused.code).not.toBe(0);
    await runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gw.mqttPort), '-q', '1', '-r', '-t', 'audit/small-1/status', '-m', '{"state":"online"}']);
    await runProcess('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gw.mqttPort), '-q', '1', '-r', '-t', 'audit/small-1/cmd', '-m', '{"op":"pull","after":0}']);
    // A late subscriber gets what is retained: the small status, neither the big one nor the command.
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { reconnectPeriod: 0, protocolVersion: 4 });
    try {
      const heard: string[] = [];
      sub.on('message', (topic) => heard.push(topic));
      await sub.subscribeAsync(['audit/big-1/#', 'audit/small-1/#'], { qos: 1 });
      await new Promise((r) => setTimeout(r, 300));
      expect(heard).toEqual(['audit/small-1/status']);
    } finally {
      await sub.endAsync();
    }
  });
});
