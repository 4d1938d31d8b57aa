import { cp } from 'node:fs/promises';
import path from 'node:path';
import { deflateSync, inflateSync } from 'node:zlib';
import { Level } from 'level';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { custodyJson } from '../../gateway/storage/custody-json.js';
import { custodyHash } from '../../gateway/storage/ledger.js';
import { custodyKey } from '../../gateway/storage/level/keys.js';
import { removeDir, runCli, runProcess, startGateway, tempDir, type RunningGateway } from './gateway-harness.js';

/**
 * The custody chain proves every record unchanged given its end; someone
 * who can write the store can also cut that end off (restore an older copy)
 * or rewrite the last record together with the head, and the chain still
 * verifies. An anchor — a record's `n:hash` that verify prints and the
 * gateway logs, kept outside the gateway — closes that: `verify --anchor`
 * fails unless the ledger still holds that record with that hash.
 */
let dir: string;
let dataDir: string;
/** The store as it was after the first run: a copy an intruder could put back. */
let olderCopy: string;
let firstHead: string;
let secondHead: string;
let logged: string[];

const HEAD_LINE = /^ledger head: (\d+:[0-9a-f]{64})$/m;

async function sendEvents(gw: RunningGateway, from: number, n: number): Promise<void> {
  const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ id: `anc-${from + i}`, source: 'anc', type: 'door.open', actor: 'alice' }));
  const sent = await runCli(['send', gw.httpUrl], { input: lines.join('\n') });
  expect(sent.code, sent.stderr).toBe(0);
}

async function headOf(dataDirectory: string): Promise<string> {
  const r = await runCli(['verify', '--data-dir', dataDirectory]);
  expect(r.code, r.stderr).toBe(0);
  const m = HEAD_LINE.exec(r.stdout);
  expect(m, r.stdout).not.toBeNull();
  return (m as RegExpExecArray)[1] as string;
}

const loggedHeads = (gw: RunningGateway): string[] =>
  gw.logs.map((l) => JSON.parse(l) as { msg?: string; ledgerHead?: string }).filter((l) => l.msg === 'ledger head').map((l) => l.ledgerHead as string);

beforeAll(async () => {
  dir = await tempDir('meteorzx-anchor-');
  const first = await startGateway({ dir });
  dataDir = first.dataDir;
  await sendEvents(first, 0, 20);
  expect(await first.stop()).toBe(0);
  firstHead = await headOf(dataDir);
  // Logged at stop, once the last commit is durable: the same anchor verify prints.
  expect(loggedHeads(first)).toEqual([firstHead]);
  olderCopy = path.join(dir, 'older');
  await cp(dataDir, olderCopy, { recursive: true });

  const second = await startGateway({ dir });
  await sendEvents(second, 20, 30);
  expect(await second.stop()).toBe(0);
  secondHead = await headOf(dataDir);
  logged = loggedHeads(second);
}, 60_000);

afterAll(async () => {
  await removeDir(dir);
});

describe('meteorzx verify --anchor', () => {
  it('prints the ledger head, which the gateway also logs at start and at stop', () => {
    expect(firstHead).not.toBe(secondHead);
    expect(Number(secondHead.split(':')[0])).toBeGreaterThan(Number(firstHead.split(':')[0]));
    expect(logged).toEqual([firstHead, secondHead]);
  });

  it('passes with an anchor the ledger still holds: its head or any record before it', async () => {
    for (const anchor of [secondHead, firstHead]) {
      const r = await runCli(['verify', '--data-dir', dataDir, '--anchor', anchor]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^verify ok: \d+ custody records, 50 events$/m);
    }
  });

  it('fails on an older copy of the store put back in place, which the chain alone passes', async () => {
    expect(await headOf(olderCopy)).toBe(firstHead);
    const r = await runCli(['verify', '--data-dir', olderCopy, '--anchor', secondHead]);
    expect(r.code).toBe(1);
    const [n] = secondHead.split(':');
    const [m] = firstHead.split(':');
    expect(r.stdout).toContain(`ledger anchor ${n}: the ledger ends at record ${m}, before the anchor's record ${n}: records were removed from its end`);
    expect(r.stderr.trim()).toMatch(/^meteorzx: verify failed .*first: custody ledger record anchor \d+: the ledger ends at record/);
  });

  it("fails when the last record was rewritten along with the head, which the chain alone passes", async () => {
    const forged = path.join(dir, 'forged');
    await cp(dataDir, forged, { recursive: true });
    const db = new Level<string, Buffer>(path.join(forged, 'store'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    await db.open();
    let lastKey = '';
    for await (const key of db.keys({ gt: 'k!', lt: 'k"', reverse: true, limit: 1 })) lastKey = key;
    const lines = inflateSync((await db.get(lastKey)) as Buffer).toString().split('\n');
    const record = JSON.parse(lines.at(-1) as string) as Record<string, unknown>;
    record.peer = 'elsewhere';
    delete record.hash;
    record.hash = custodyHash(record as never);
    lines[lines.length - 1] = custodyJson(record as never);
    const head = JSON.parse(((await db.get('m!head')) as Buffer).toString()) as Record<string, unknown>;
    await db.batch([
      { type: 'put', key: lastKey, value: deflateSync(Buffer.from(lines.join('\n'))) },
      { type: 'put', key: 'm!head', value: Buffer.from(JSON.stringify({ ...head, hash: record.hash })) },
    ]);
    await db.close();
    expect(lastKey).toBe(custodyKey(Number.parseInt(lastKey.slice(2), 16)));

    const plain = await runCli(['verify', '--data-dir', forged]);
    expect(plain.code, plain.stdout).toBe(0); // the chain alone cannot tell
    const r = await runCli(['verify', '--data-dir', forged, '--anchor', secondHead]);
    expect(r.code).toBe(1);
    const [n, hash] = secondHead.split(':');
    expect(r.stdout).toContain(`ledger ${n}: record ${n} has hash ${String(record.hash)}, not the anchor's ${hash}: the ledger was rewritten at or before it`);
    // An anchor before the rewritten record still holds.
    const earlier = await runCli(['verify', '--data-dir', forged, '--anchor', firstHead]);
    expect(earlier.code, earlier.stdout).toBe(0);
  });

  it('is a usage error when the anchor is not n:hash', async () => {
    for (const bad of ['12', `0:${'a'.repeat(64)}`, `3:${'g'.repeat(64)}`, `3:${'a'.repeat(63)}`]) {
      const r = await runCli(['verify', '--data-dir', dataDir, '--anchor', bad]);
      expect({ code: r.code, stderr: r.stderr.trim() }, bad).toMatchObject({ code: 2, stderr: expect.stringMatching(/^meteorzx: --anchor: expected N:HASH/) as unknown });
    }
  });

  it('is checked by a running gateway too: POST /v1/verify?anchor= and verify URL --anchor', async () => {
    // The older copy under a running gateway: its own start logs the head it has.
    const gw = await startGateway({ dir, config: { dataDir: olderCopy } });
    try {
      const curl = await runProcess('curl', ['-sS', '-X', 'POST', `${gw.httpUrl}/v1/verify?anchor=${secondHead}`]);
      const report = JSON.parse(curl.stdout) as { ok: boolean; problems: { where: string }[]; ledgerHead: { n: number; hash: string } };
      expect(report.ok).toBe(false);
      expect(report.problems.map((p) => p.where)).toEqual([`anchor ${secondHead.split(':')[0]}`]);
      expect(`${report.ledgerHead.n}:${report.ledgerHead.hash}`).toBe(firstHead);
      const bad = await runProcess('curl', ['-sS', '-X', 'POST', '-w', '%{http_code}', `${gw.httpUrl}/v1/verify?anchor=nope`]);
      expect(bad.stdout).toMatch(/anchor: expected N:HASH.*400$/s);
      const cli = await runCli(['verify', gw.httpUrl, '--anchor', firstHead]);
      expect(cli.code, cli.stderr).toBe(0);
      expect(cli.stdout).toContain(`ledger head: ${firstHead}`);
      expect(loggedHeads(gw)).toEqual([firstHead]);
    } finally {
      expect(await gw.stop()).toBe(0);
    }
  });
});
