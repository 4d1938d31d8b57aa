import path from 'node:path';
import { Level } from 'level';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainEvent } from '../../protocols/hash-chain.js';
import type { AuditEvent, SourcesResponse } from '../../protocols/index.js';
import { ingest, ndjson, removeDir, runCli, runProcess, startGateway, tempDir, type RunningGateway } from './gateway-harness.js';

/**
 * A damaged registry key is mended by the next commit that needs it
 * (docs/operations.md, "A damaged registry key"): `rs!<source>` is counted
 * again from the ledger, `ra!<agent>!<epoch>` starts afresh; the damaged
 * bytes are kept under `q!`, and a `registry-repaired` alert is raised.
 * Before, every later commit of that source failed with a 500 — and every
 * other event group-committed with it — and a damaged `rs!` key counted
 * again at open (after a crash) kept the gateway from starting.
 */

/** Seqs `from`..`to` of agent a1's epoch e1, chained. */
function chain(from: number, to: number, prev?: string): AuditEvent[] {
  const out: AuditEvent[] = [];
  for (let seq = from; seq <= to; seq += 1) {
    const e = chainEvent({ id: `a1-${seq}`, source: 'a1', agent: 'a1', epoch: 'e1', seq, type: 'door.open', time: '2026-01-01T00:00:00Z' }, prev);
    prev = e.hash;
    out.push(e);
  }
  return out;
}

async function withDb<T>(dataDir: string, fn: (db: Level<string, Buffer>) => Promise<T>): Promise<T> {
  const db = new Level<string, Buffer>(path.join(dataDir, 'store'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

async function curl(args: string[]): Promise<{ code: string; body: string }> {
  const r = await runProcess('curl', ['-sS', '-w', '\n%{http_code}', ...args]);
  const nl = r.stdout.lastIndexOf('\n');
  return { body: r.stdout.slice(0, nl), code: r.stdout.slice(nl + 1) };
}

describe('damaged rs! and ra! keys, met by a commit', () => {
  let dir: string;
  let gw: RunningGateway;
  const first = chain(1, 3);

  beforeAll(async () => {
    dir = await tempDir('meteorzx-registry-repair-');
    const before = await startGateway({ dir });
    await ingest(before.httpUrl, [...first, { id: 'b1', source: 's2', type: 'door.open' }]);
    expect(await before.stop()).toBe(0); // the stop writes the registry checkpoint
    await withDb(before.dataDir, async (db) => {
      expect(await db.get('rs!a1')).toBeDefined();
      expect(await db.get('ra!a1!e1')).toBeDefined();
      await db.put('rs!a1', Buffer.from('{x'));
      await db.put('ra!a1!e1', Buffer.from('\u0000garbage'));
    });
    gw = await startGateway({ dir });
  }, 30_000);

  afterAll(async () => {
    await gw.stop();
    await removeDir(dir);
  });

  it('stores the next events of that source, and the neighbours posted with them', async () => {
    const next = chain(4, 5, first[2]?.hash);
    const body = [...next, { id: 'b2', source: 's2', type: 'door.open' }].map((e) => JSON.stringify(e)).join('\n');
    const r = await curl(['-H', 'content-type: application/x-ndjson', '--data-binary', body, `${gw.httpUrl}/v1/events`]);
    expect(r.code, r.body).toBe('200');
    expect(JSON.parse(r.body)).toEqual({ accepted: 3, duplicates: 0, rejected: [] });
  });

  it('counts the source again from the ledger, and starts the epoch afresh with the seqs below as a gap', async () => {
    // rs! keys are written at the next checkpoint (≤ 1 s); the answer merges what the writer holds meanwhile.
    const s = JSON.parse((await curl([`${gw.httpUrl}/v1/sources`])).body) as SourcesResponse;
    expect(s.sources.find((x) => x.source === 'a1')).toMatchObject({ accepted: 5, duplicates: 0, rejected: 0 });
    const epoch = s.epochs.find((e) => e.agent === 'a1');
    expect(epoch).toMatchObject({ epoch: 'e1', lastSeq: 5, received: 2 });
    expect(epoch?.gaps.map((g) => [g.from, g.to])).toEqual([[1, 3]]);
    const stored = ndjson<AuditEvent & { ingest: { integrity: string } }>((await curl([`${gw.httpUrl}/v1/events?source=a1`])).body);
    expect(stored.map((e) => [e.seq, e.ingest.integrity])).toEqual([[1, 'verified'], [2, 'verified'], [3, 'verified'], [4, 'verified'], [5, 'verified']]);
  });

  it('raises one registry-repaired alert per key, logged with the key its bytes are kept under', async () => {
    const metrics = (await curl([`${gw.httpUrl}/metrics`])).body;
    expect(metrics).toMatch(/^meteorzx_gateway_alerts_total\{rule="registry-repaired"\} 2$/m);
    const logged = gw.logs.map((l) => JSON.parse(l) as { alert?: string; key?: string; quarantinedAs?: string }).filter((l) => l.alert === 'registry-repaired');
    expect(logged.map((l) => l.key).sort()).toEqual(['ra!a1!e1', 'rs!a1']);
    for (const l of logged) expect(l.quarantinedAs).toMatch(new RegExp(`^q!${l.key ?? ''}![0-9a-f]{16}$`));
  });

  it('keeps the damaged bytes, and leaves a store that meteorzx verify finds intact', async () => {
    expect(await gw.stop()).toBe(0);
    const kept = await withDb(gw.dataDir, async (db) => {
      const out: Record<string, string> = {};
      for await (const [k, v] of db.iterator({ gt: 'q!', lt: 'q"' })) out[k.replace(/![0-9a-f]{16}$/, '')] = v.toString('latin1');
      return out;
    });
    expect(kept).toEqual({ 'q!rs!a1': '{x', 'q!ra!a1!e1': '\u0000garbage' });
    const v = await runCli(['verify', '--data-dir', gw.dataDir]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    gw = await startGateway({ dir });
    const s = JSON.parse((await curl([`${gw.httpUrl}/v1/sources`])).body) as SourcesResponse;
    expect(s.damaged).toBeUndefined();
    expect(s.sources.find((x) => x.source === 'a1')).toMatchObject({ accepted: 5 });
  });
});

describe('a damaged rs! key counted again at open, after a crash', () => {
  let dir: string;
  let gw: RunningGateway | undefined;

  beforeAll(async () => {
    dir = await tempDir('meteorzx-registry-repair-open-');
  });

  afterAll(async () => {
    await gw?.stop();
    await removeDir(dir);
  });

  it('no longer keeps the gateway from starting; the counts include the commits after the checkpoint', async () => {
    const one = await startGateway({ dir });
    await ingest(one.httpUrl, [{ id: 'c1', source: 's3', type: 'door.open' }]);
    expect(await one.stop()).toBe(0); // rs!s3 written
    const two = await startGateway({ dir });
    // Two commits back to back: the second is no checkpoint (one per second at most), so a kill leaves it to replay.
    await ingest(two.httpUrl, [{ id: 'c2', source: 's3', type: 'door.open' }]);
    await ingest(two.httpUrl, [{ id: 'c3', source: 's3', type: 'door.open' }]);
    await two.kill9();
    await withDb(two.dataDir, async (db) => {
      const head = JSON.parse((await db.get('m!head'))?.toString() ?? '{}') as { commit: number; sourcesAt: number };
      expect(head.sourcesAt).toBeLessThan(head.commit);
      await db.put('rs!s3', Buffer.from('not json'));
    });
    gw = await startGateway({ dir });
    const s = JSON.parse((await curl([`${gw.httpUrl}/v1/sources?source=s3`])).body) as SourcesResponse;
    expect(s.sources).toMatchObject([{ source: 's3', accepted: 3 }]);
    expect(gw.logs.some((l) => l.includes('registry key rs!s3 was damaged'))).toBe(true);
  }, 30_000);
});
