import { cp } from 'node:fs/promises';
import path from 'node:path';
import { deflateSync, inflateSync } from 'node:zlib';
import { Level } from 'level';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LevelStorage } from '../../gateway/storage/level/index.js';
import { removeDir, runCli, runProcess, startGateway, tempDir } from './gateway-harness.js';

/**
 * Issue 3, done-when 5: `meteorzx verify --data-dir` finds one changed byte
 * in stored data and names where it is; untouched data passes.
 */
let dir: string;
let dataDir: string;
const EVENTS = 300;

async function withDb<T>(fn: (db: Level<string, Buffer>) => Promise<T>): Promise<T> {
  const db = new Level<string, Buffer>(path.join(dataDir, 'store'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

/** The key of the first stored event block (`b!<commit>`, gateway/storage/level/keys.ts). */
async function firstBlockKey(db: Level<string, Buffer>): Promise<string> {
  for await (const key of db.keys({ gt: 'b!', lt: 'b"', limit: 1 })) return key;
  throw new Error('no event block stored');
}

/** Every key under `prefix` (e.g. `d!`), in order. */
async function keys(db: Level<string, Buffer>, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const k of db.keys({ gt: prefix, lt: `${prefix.slice(0, -1)}"` })) out.push(k);
  return out;
}

beforeAll(async () => {
  dir = await tempDir();
  const gw = await startGateway({ dir });
  dataDir = gw.dataDir;
  const lines = Array.from({ length: EVENTS }, (_, i) => JSON.stringify({ id: `v-${i}`, source: 'vsrc', type: 'door.open', actor: 'alice' }));
  const sent = await runCli(['send', gw.httpUrl], { input: lines.join('\n') });
  expect(sent.code, sent.stderr).toBe(0);

  // Through the running gateway (POST /v1/verify), and refusing the locked directory meanwhile.
  const online = await runCli(['verify', gw.httpUrl]);
  expect(online.code, online.stderr).toBe(0);
  expect(online.stdout).toMatch(/^verify ok: \d+ custody records, 300 events$/m);
  // A source no event can have: a clear error, not "ok, 0 events" (the route itself, as curl sees it, and the CLI).
  const curl = await runProcess('curl', ['-sS', '-X', 'POST', '-w', '%{http_code}', `${gw.httpUrl}/v1/verify?source=a!b`]);
  expect(curl.stdout).toMatch(/source must match.*400$/s);
  for (const args of [['verify', gw.httpUrl, '--source', 'a!b'], ['verify', '--data-dir', dataDir, '--source', 'a!b']]) {
    const bad = await runCli(args);
    expect({ code: bad.code, stderr: bad.stderr.trim() }).toMatchObject({ code: 2, stderr: expect.stringMatching(/--source must match/) as unknown });
  }
  const locked = await runCli(['verify', '--data-dir', dataDir]);
  expect(locked.code).toBe(1);
  expect(locked.stderr.trim()).toMatch(/^meteorzx: cannot open .*: it is in use \(stop the gateway first/);

  expect(await gw.stop()).toBe(0);
});

afterAll(async () => {
  await removeDir(dir);
});

describe('meteorzx verify --data-dir', () => {
  it('passes on untouched data', async () => {
    const r = await runCli(['verify', '--data-dir', dataDir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(/^verify ok: \d+ custody records, 300 events$/),
      expect.stringMatching(/^ledger head: \d+:[0-9a-f]{64}$/),
    ]);
    const bySource = await runCli(['verify', '--data-dir', dataDir, '--source', 'vsrc']);
    expect(bySource.code, bySource.stderr).toBe(0);
  });

  it('finds one changed byte inside a stored event and names the event', async () => {
    const { key, original } = await withDb(async (db) => {
      const key = await firstBlockKey(db);
      const original = (await db.get(key)) as Buffer;
      const text = inflateSync(original);
      // Change one byte of the first event: "alice" → "alicf".
      const at = text.indexOf('alice');
      expect(at).toBeGreaterThan(-1);
      text[at + 4] = 'f'.charCodeAt(0);
      await db.put(key, deflateSync(text));
      return { key, original };
    });
    const r = await runCli(['verify', '--data-dir', dataDir]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^meteorzx: verify failed .*first: event v-\d+: stored event differs from its hash in ledger record \d+/);
    await withDb((db) => db.put(key, original));
    expect((await runCli(['verify', '--data-dir', dataDir])).code).toBe(0);
  });

  it('counts every problem it found, not only the 100 it lists', async () => {
    const blocks = await withDb(async (db) => {
      const originals = new Map<string, Buffer>();
      for (const key of await keys(db, 'b!')) originals.set(key, (await db.get(key)) as Buffer);
      // Every one of the 300 events: "alice" → "alicf".
      for (const [key, value] of originals) await db.put(key, deflateSync(Buffer.from(inflateSync(value).toString('utf8').replaceAll('"alice"', '"alicf"'))));
      return originals;
    });
    const r = await runCli(['verify', '--data-dir', dataDir]);
    expect(r.code).toBe(1);
    expect(r.stdout.trim().split('\n')).toHaveLength(100);
    expect(r.stderr).toMatch(/^meteorzx: verify failed \(\d+ custody records, 300 events checked; 300 problem\(s\), the first 100 listed\); first: event v-0:/);
    await withDb((db) => db.batch([...blocks].map(([key, value]) => ({ type: 'put' as const, key, value }))));
    expect((await runCli(['verify', '--data-dir', dataDir])).code).toBe(0);
  });

  it('finds a flipped byte in the raw stored block', async () => {
    const { key, original } = await withDb(async (db) => {
      const key = await firstBlockKey(db);
      const original = (await db.get(key)) as Buffer;
      const flipped = Buffer.from(original);
      const i = Math.floor(flipped.length / 2);
      flipped[i] = (flipped[i] as number) ^ 0x01;
      await db.put(key, flipped);
      return { key, original };
    });
    const r = await runCli(['verify', '--data-dir', dataDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/verify failed .*first: event v-\d+: event block \d+ cannot be decoded/);
    await withDb((db) => db.put(key, original));
  });

  it('finds a changed custody record and names its ledger position', async () => {
    const { key, original } = await withDb(async (db) => {
      let key = '';
      for await (const k of db.keys({ gt: 'k!', lt: 'k"', limit: 1 })) key = k;
      const original = (await db.get(key)) as Buffer;
      const text = inflateSync(original).toString('utf8').replace('"accepted"', '"rejected"');
      await db.put(key, deflateSync(Buffer.from(text)));
      return { key, original };
    });
    const r = await runCli(['verify', '--data-dir', dataDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/first: custody ledger record \d+:/);
    await withDb((db) => db.put(key, original));
  });

  it('finds a custody block added past the ledger head', async () => {
    const added = await withDb(async (db) => {
      let last = '';
      for await (const k of db.keys({ gt: 'k!', lt: 'k"', reverse: true, limit: 1 })) last = k;
      const next = `k!${(BigInt(`0x${last.slice(2)}`) + 1n).toString(16).padStart(last.length - 2, '0')}`;
      await db.put(next, (await db.get(last)) as Buffer);
      return next;
    });
    const r = await runCli(['verify', '--data-dir', dataDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/custody block past the ledger head/);
    await withDb((db) => db.del(added));
  });

  it('finds a forged event block that no custody block accounts for, which queries would serve', async () => {
    const added = await withDb(async (db) => {
      const dKey = (await keys(db, 'd!'))[0] as string;
      const day = dKey.slice(2, 10);
      const range = (await db.get(dKey)) as Buffer;
      const receivedAt = new Date(Number(range.toString().split(',')[0])).toISOString();
      const forged = JSON.stringify({ actor: 'mallory', id: 'forged-1', ingest: { gateway: 'gw', integrity: 'verified', method: 'http', peer: '127.0.0.1', receivedAt }, source: 'vsrc', time: '2026-01-01T00:00:00Z', type: 'door.open' });
      const commit = '0000000000000000';
      const ops = [
        { type: 'put' as const, key: `b!${commit}`, value: deflateSync(Buffer.from(forged)) },
        { type: 'put' as const, key: `d!${day}!${commit}`, value: range },
        { type: 'put' as const, key: `s!vsrc!${day}!${commit}`, value: range },
      ];
      await db.batch(ops);
      return ops.map((op) => op.key);
    });
    const r = await runCli(['verify', '--data-dir', dataDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/first: event block 0: event block with no custody block/);
    expect(r.stdout).toMatch(/^event index d!\d{8}!0000000000000000: index key points at commit 0, which holds no event block the ledger accepted$/m);
    await withDb((db) => db.batch(added.map((key) => ({ type: 'del' as const, key }))));
  });

  it('finds a removed dedup pointer, which would let a repeat of its event be stored, and names it', async () => {
    const pointer = await withDb(async (db) => {
      const value = (await db.get('id!v-7')) as Buffer;
      await db.del('id!v-7');
      return value;
    });
    const r = await runCli(['verify', '--data-dir', dataDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/first: event index id!v-7: missing, yet ledger record \d+ accepted this event \(commit \d+, index \d+\): dedup would store a repeat of it/);
    expect((await runCli(['verify', '--data-dir', dataDir, '--source', 'vsrc'])).code).toBe(1);
    expect((await runCli(['verify', '--data-dir', dataDir, '--source', 'another'])).code).toBe(0);
    await withDb((db) => db.put('id!v-7', pointer));
    expect((await runCli(['verify', '--data-dir', dataDir])).code).toBe(0);
  });

  it('finds an event block deleted behind the gateway and disguised as retention by a marker', async () => {
    const { victim, block } = await withDb(async (db) => {
      const victim = (await keys(db, 'b!'))[0] as string;
      const block = (await db.get(victim)) as Buffer;
      await db.batch([
        { type: 'del', key: victim },
        { type: 'put', key: `r!${victim.slice(2)}`, value: Buffer.alloc(0) },
      ]);
      return { victim, block };
    });
    const r = await runCli(['verify', '--data-dir', dataDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/first: event v-\d+: stored event is missing; its retention marker is from before retention was recorded in the ledger/);
    await withDb((db) => db.batch([
      { type: 'put', key: victim, value: block },
      { type: 'del', key: `r!${victim.slice(2)}` },
    ]));
    expect((await runCli(['verify', '--data-dir', dataDir])).code).toBe(0);
  });

  it('passes on a store whose retention deleted whole days', async () => {
    const retained = path.join(dir, 'retained');
    const now = Date.UTC(2026, 3, 20, 12);
    const storage = new LevelStorage({ dataDir: retained, clock: () => now });
    await storage.open();
    try {
      for (const [id, at] of [['old-1', now - 40 * 86_400_000], ['old-2', now - 39 * 86_400_000], ['new-1', now - 1000]] as const) {
        const receivedAt = new Date(at).toISOString();
        const ingest = { method: 'http', peer: 'p', receivedAt, gateway: 'gw', integrity: 'unchained' } as const;
        await storage.commit({ events: [{ id, source: 'ret-src', time: receivedAt, type: 'door.open', ingest }], custody: [{ at: receivedAt, outcome: 'accepted', method: 'http', peer: 'p', id, source: 'ret-src' }], seqs: [] });
      }
      expect(await storage.applyRetention(now - 30 * 86_400_000)).toBe(2);
    } finally {
      await storage.close();
    }
    const r = await runCli(['verify', '--data-dir', retained]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(/^verify ok: 4 custody records, 1 events$/m);
    // The gateway on that store: its own retention (90d, at start) deletes new-1 as well. Custody by id still lists
    // every accepted record, whichever pass deleted its event: the ledger is kept.
    const gw = await startGateway({ dir, config: { dataDir: retained } });
    try {
      for (const id of ['old-1', 'old-2', 'new-1']) {
        const custody = await runProcess('curl', ['-sS', `${gw.httpUrl}/v1/custody?id=${id}`]);
        expect(custody.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { outcome: string }).outcome), id).toEqual(['accepted']);
      }
      expect((await runProcess('curl', ['-sS', `${gw.httpUrl}/v1/events`])).stdout).toBe('');
    } finally {
      await gw.stop();
    }
    const again = await runCli(['verify', '--data-dir', retained]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.trim()).toMatch(/^verify ok: 5 custody records, 0 events$/m);
  });

  it('changes nothing in a store a crash left behind (no registry checkpoint written on the way out)', async () => {
    // A crash image: the files of an open store whose last commit came before its registry checkpoint.
    const live = path.join(dir, 'live');
    const crashed = path.join(dir, 'crashed');
    const storage = new LevelStorage({ dataDir: live, registryCheckpointMs: 3_600_000 });
    await storage.open();
    try {
      const at = '2026-03-10T10:00:00.000Z';
      const ingest = { method: 'http', peer: 'p', receivedAt: at, gateway: 'gw', integrity: 'unchained' } as const;
      const events = ['c-1', 'c-2'].map((id) => ({ id, source: 'crash-src', time: at, type: 'door.open', ingest }));
      await storage.commit({ events, custody: events.map((e) => ({ at, outcome: 'accepted' as const, method: 'http' as const, peer: 'p', id: e.id, source: e.source })), seqs: [] });
      await cp(path.join(live, 'store'), path.join(crashed, 'store'), { recursive: true });
    } finally {
      await storage.close();
    }
    const dump = async (): Promise<Record<string, string>> => {
      const db = new Level<string, Buffer>(path.join(crashed, 'store'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
      await db.open();
      const out: Record<string, string> = {};
      try {
        for await (const [k, v] of db.iterator()) out[k] = v.toString('hex');
      } finally {
        await db.close();
      }
      return out;
    };
    const before = await dump();
    expect(JSON.parse(Buffer.from(before['m!head'] as string, 'hex').toString())).toMatchObject({ commit: 1, sourcesAt: 0 });
    const r = await runCli(['verify', '--data-dir', crashed]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(/^verify ok: 2 custody records, 2 events$/m);
    expect(await dump()).toEqual(before);
  });

  it('says so in one line when the directory holds no store', async () => {
    const r = await runCli(['verify', '--data-dir', path.join(dir, 'nothing-here')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toMatch(/^meteorzx: .*holds no gateway store/);
  });
});

describe('meteorzx verify against a running gateway', () => {
  it('passes while events are being ingested: it checks the ledger up to the head it read first', async () => {
    const own = await tempDir();
    const gw = await startGateway({ dir: own });
    let stop = false;
    let posted = 0;
    const ingest = (async () => {
      while (!stop) {
        const res = await fetch(`${gw.httpUrl}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: `live-${posted}`, source: 'live', type: 'x' }) });
        expect(res.status).toBe(200);
        posted += 1;
      }
    })();
    try {
      while (posted < 200) await new Promise((r) => setTimeout(r, 20));
      for (let i = 0; i < 3; i += 1) {
        const r = await runCli(['verify', gw.httpUrl]);
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
      }
    } finally {
      stop = true;
      await ingest;
      await gw.stop();
      await removeDir(own);
    }
  });
});
