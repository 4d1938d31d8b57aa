import path from 'node:path';
import { Level } from 'level';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ingest, ndjson, removeDir, runCli, runProcess, startGateway, tempDir, type RunningGateway } from './gateway-harness.js';

/**
 * One damaged block on disk (a byte flipped in a deflated event or custody
 * block, written while the gateway was stopped) costs its own events only:
 * GET /v1/events and /v1/custody answer 200 with the readable ones and name
 * the damage in X-Damaged-Blocks, `meteorzx query` writes every readable
 * event, warns on stderr and exits 1. Before, the whole page answered 500.
 */
let dir: string;
let gw: RunningGateway;

/**
 * Flips a byte in the middle of the `which`-th key from `prefix` on (`b!` event blocks, `k!` custody blocks,
 * `id!<id>` a dedup pointer), or writes `value` there instead.
 */
async function damage(dataDir: string, prefix: string, which: number, value?: Buffer): Promise<string> {
  const db = new Level<string, Buffer>(path.join(dataDir, 'store'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  try {
    const keys: string[] = [];
    for await (const key of db.keys({ gte: prefix, lt: "~", limit: which + 1 })) keys.push(key);
    const key = keys[which] as string;
    const stored = (await db.get(key)) as Buffer;
    stored.writeUInt8((stored[stored.length >> 1] as number) ^ 0xff, stored.length >> 1);
    await db.put(key, value ?? stored);
    return key;
  } finally {
    await db.close();
  }
}

const curl = async (url: string): Promise<{ status: number; headers: string; body: string }> => {
  const r = await runProcess('curl', ['-sS', '-i', '-w', '\n%{http_code}', url]);
  const end = r.stdout.indexOf('\r\n\r\n');
  const rest = r.stdout.slice(end + 4);
  const nl = rest.lastIndexOf('\n');
  return { headers: r.stdout.slice(0, end), body: rest.slice(0, nl), status: Number(rest.slice(nl + 1)) };
};
const damagedHeader = (headers: string): unknown => {
  const m = /^x-damaged-blocks: (.*)$/im.exec(headers);
  return m === null ? undefined : JSON.parse((m[1] as string).trim());
};

beforeAll(async () => {
  dir = await tempDir('meteorzx-damaged-');
  const first = await startGateway({ dir });
  // Three commits of three events: one block each.
  for (const b of [0, 1, 2]) await ingest(first.httpUrl, [0, 1, 2].map((i) => ({ id: `e${b}-${i}`, source: 's1', type: 'door.open' })));
  expect(await first.stop()).toBe(0);
  expect(await damage(first.dataDir, 'b!', 1)).toMatch(/^b!/);
  expect(await damage(first.dataDir, 'k!', 2)).toMatch(/^k!/);
  expect(await damage(first.dataDir, 'id!e0-0', 0)).toBe('id!e0-0'); // its dedup pointer
  expect(await damage(first.dataDir, 'id!e2-2', 0, Buffer.from('x'))).toBe('id!e2-2'); // a pointer that leads nowhere
  gw = await startGateway({ dir });
});

afterAll(async () => {
  await gw.stop();
  await removeDir(dir);
});

describe('a gateway store with a damaged event block', () => {
  it('GET /v1/events serves its neighbours and names it in X-Damaged-Blocks', async () => {
    const r = await curl(`${gw.httpUrl}/v1/events`);
    expect(r.status, r.body).toBe(200);
    expect(ndjson(r.body).map((e) => e.id)).toEqual(['e0-0', 'e0-1', 'e0-2', 'e2-0', 'e2-1', 'e2-2']);
    expect(damagedHeader(r.headers)).toEqual([
      expect.objectContaining({ kind: 'event', block: 2, events: 3, error: expect.stringMatching(/^event block 2 cannot be decoded: /) as unknown }),
    ]);
    // Paging goes on past it: the cursor of a page that ends there resumes after it.
    const page = await curl(`${gw.httpUrl}/v1/events?limit=3`);
    const cursor = (/^x-next-cursor: (\S+)/im.exec(page.headers) as RegExpExecArray)[1] as string;
    const next = await curl(`${gw.httpUrl}/v1/events?limit=3&cursor=${cursor}`);
    expect(ndjson(next.body).map((e) => e.id)).toEqual(['e2-0', 'e2-1', 'e2-2']);
    expect(damagedHeader(next.headers)).toBeUndefined();
  });

  it('GET /v1/events?id= of an event in it answers 200 with no event and names the block', async () => {
    const r = await curl(`${gw.httpUrl}/v1/events?id=e1-1`);
    expect(r.status).toBe(200);
    expect(r.body).toBe('');
    expect(damagedHeader(r.headers)).toMatchObject([{ kind: 'event', block: 2 }]);
  });

  it('meteorzx query writes every readable event, names the damage on stderr and exits 1', async () => {
    for (const args of [[], ['--limit', '5']]) {
      const q = await runCli(['query', gw.httpUrl, ...args]);
      expect(q.code, q.stderr).toBe(1);
      expect(ndjson(q.stdout).map((e) => e.id)).toEqual(['e0-0', 'e0-1', 'e0-2', 'e2-0', 'e2-1', 'e2-2'].slice(0, args.length > 0 ? 5 : 6));
      const lines = q.stderr.trim().split('\n');
      expect(lines[0]).toMatch(/^meteorzx: warning: left out damaged event block 2 \(3 event\(s\), received [^)]+\): event block 2 cannot be decoded: /);
      expect(lines[1]).toMatch(/^meteorzx: 1 damaged block\(s\) left out \(named above\); every other event was written/);
      expect(lines).toHaveLength(2);
    }
  });

  it('GET /v1/events?id= and meteorzx query --id name a damaged dedup pointer, not answer as if the id were never stored', async () => {
    const r = await curl(`${gw.httpUrl}/v1/events?id=e2-2`);
    expect(r.status).toBe(200);
    expect(r.body).toBe('');
    // Before: 200, no event, and no header: the same answer as for an id never stored; only meteorzx verify found it.
    expect(damagedHeader(r.headers)).toEqual([{ kind: 'pointer', key: 'id!e2-2', error: 'dedup pointer id!e2-2 holds "x", not a dedup pointer' }]);
    const q = await runCli(['query', gw.httpUrl, '--id', 'e2-2']);
    expect(q.code, q.stderr).toBe(1);
    expect(q.stdout).toBe('');
    const lines = q.stderr.trim().split('\n');
    expect(lines[0]).toBe('meteorzx: warning: the event under this id cannot be looked up: dedup pointer id!e2-2 holds "x", not a dedup pointer');
    expect(lines[1]).toMatch(/^meteorzx: 1 damaged dedup pointer\(s\) left out \(named above\); every other event was written/);
    expect(lines).toHaveLength(2);
    // A sound id is found by --id, so is one whose pointer's damage still leads to it (e0-0: a byte of its receive
    // time flipped), and one never stored is no damage: all exit 0.
    for (const id of ['e2-1', 'e0-0']) {
      const found = await runCli(['query', gw.httpUrl, '--id', id]);
      expect({ code: found.code, ids: ndjson(found.stdout).map((e) => e.id), stderr: found.stderr }).toEqual({ code: 0, ids: [id], stderr: '' });
    }
    const never = await runCli(['query', gw.httpUrl, '--id', 'never-stored']);
    expect({ code: never.code, stdout: never.stdout, stderr: never.stderr }).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  it('custody pages skip a damaged custody block and name it', async () => {
    const r = await curl(`${gw.httpUrl}/v1/custody?source=s1`);
    expect(r.status, r.body).toBe(200);
    expect(ndjson(r.body).map((c) => c.id)).toEqual(['e0-0', 'e0-1', 'e0-2', 'e1-0', 'e1-1', 'e1-2']);
    expect(damagedHeader(r.headers)).toMatchObject([{ kind: 'custody', block: 3 }]);
    const byId = await curl(`${gw.httpUrl}/v1/custody?id=e2-0`);
    expect(byId.status).toBe(200);
    expect(damagedHeader(byId.headers)).toMatchObject([{ kind: 'custody', block: 3 }]);
    // An id whose dedup pointer leads nowhere: its accepted record's commit is unknown, and the answer says so.
    const byDamagedPointer = await curl(`${gw.httpUrl}/v1/custody?id=e2-2`);
    expect(byDamagedPointer.status).toBe(200);
    expect(damagedHeader(byDamagedPointer.headers)).toEqual([{ kind: 'pointer', key: 'id!e2-2', error: 'dedup pointer id!e2-2 holds "x", not a dedup pointer' }]);
  });

  it('a repeat of an id whose dedup pointer is damaged is a duplicate, not stored a second time', async () => {
    expect(await ingest(gw.httpUrl, [{ id: 'e0-0', source: 's1', type: 'door.open' }])).toMatchObject({ accepted: 0, duplicates: 1 });
    const r = await curl(`${gw.httpUrl}/v1/events?source=s1`);
    expect(ndjson(r.body).filter((e) => e.id === 'e0-0')).toHaveLength(1);
    expect(gw.logs.join('\n')).toMatch(/dedup: a damaged id pointer; its id is taken as stored/);
  });

  it('counts the damaged blocks it read in meteorzx_gateway_damaged_blocks_read_total', async () => {
    const metrics = await curl(`${gw.httpUrl}/metrics`);
    const count = (kind: string): number => Number(new RegExp(`^meteorzx_gateway_damaged_blocks_read_total\\{kind="${kind}"\\} (\\d+)$`, 'm').exec(metrics.body)?.[1]);
    expect(count('event')).toBeGreaterThanOrEqual(4);
    expect(count('custody')).toBe(2);
    expect(count('pointer')).toBe(3);
  });
});
