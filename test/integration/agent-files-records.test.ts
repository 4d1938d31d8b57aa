import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Level } from 'level';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  gatewayEvents,
  killAll,
  parseLine,
  removeDir,
  sleep,
  startAgent,
  startGateway,
  tempDir,
  waitFor,
  type Agent,
} from './agent-harness.js';

/**
 * The file intake keeps a `file!<dev>:<ino>` checkpoint per file it read. A
 * rotated file finished and gone from disk must not leave its record behind
 * for ever (hourly rotation would grow the buffer's LevelDB without end),
 * while every file still on disk keeps its own. Driven by Debian's logrotate
 * against the real agent; the records are counted in its LevelDB once it has
 * stopped. A path gone for good (dated or per-process log names) is
 * forgotten with its records, but not while a rotated generation of it has
 * lines to read or is on disk; counted after a SIGKILL, so what the agent
 * deleted it deleted while it ran, not on its way out.
 */

const run = promisify(execFile);
const GENERATIONS = 6;
const KEPT = 2; // logrotate `rotate 2`: app.log.1 and app.log.2 stay, older ones are deleted

let dir: string;
/** Each test's own directory, removed with the shared one. */
const subs: string[] = [];

beforeAll(async () => {
  dir = await tempDir('agent-files-records');
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
  for (const sub of subs) await removeDir(sub);
});

async function subDir(name: string): Promise<{ sub: string; logs: string }> {
  const sub = await tempDir(`agent-files-${name}`);
  subs.push(sub);
  const logs = join(sub, 'logs');
  await mkdir(logs);
  return { sub, logs };
}

/** The file intake's records in a stopped agent's buffer: `path!` paths, `file!` identities, and the paths `files!paths` lists. */
async function storedRecords(sub: string): Promise<{ paths: string[]; files: string[]; index: string[] }> {
  const db = new Level<string, string>(join(sub, 'agent-data', 'buffer'));
  const keys = async (prefix: string) => {
    const out: string[] = [];
    for await (const key of db.keys({ gte: `x!${prefix}!`, lt: `x!${prefix}"` })) out.push(key.slice(`x!${prefix}!`.length));
    return out.sort();
  };
  try {
    return { paths: await keys('path'), files: await keys('file'), index: JSON.parse((await db.get('x!files!paths')) ?? '[]') as string[] };
  } finally {
    await db.close();
  }
}

/** The read offset a stopped agent's `file!` record holds. */
async function storedOffset(sub: string, id: string): Promise<number | undefined> {
  const db = new Level<string, string>(join(sub, 'agent-data', 'buffer'));
  try {
    const raw = await db.get(`x!file!${id}`);
    return raw === undefined ? undefined : (JSON.parse(raw) as { offset: number }).offset;
  } finally {
    await db.close();
  }
}

const idOf = async (path: string) => {
  const st = await stat(path, { bigint: true });
  return `${st.dev}:${st.ino}`;
};

/** How many "path gone" lines the agent has logged (a path forgotten with its records). */
const forgotten = (agent: Agent) => agent.logs.map(parseLine).filter((l) => l?.msg === 'path gone: its records deleted').length;

/** Each `data.line` the gateway stored for `source`, with how many times. */
async function linesAt(gatewayUrl: string, source: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const e of await gatewayEvents(gatewayUrl, source)) {
    if (e.type !== 'log.line') continue;
    const line = String((e.data as { line?: unknown } | undefined)?.line);
    counts.set(line, (counts.get(line) ?? 0) + 1);
  }
  return counts;
}

async function identities(): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(dir)) {
    if (!name.startsWith('app.log')) continue;
    const st = await stat(join(dir, name), { bigint: true });
    out.push(`${st.dev}:${st.ino}`);
  }
  return out.sort();
}

describe('file intake checkpoints under rotation', () => {
  it('deletes the record of each rotated file once it is read and gone, and keeps those of files on disk', { timeout: 180_000 }, async () => {
    const log = join(dir, 'app.log');
    const conf = join(dir, 'logrotate.conf');
    await writeFile(conf, `${log} {\n  rotate ${KEPT}\n  create\n  missingok\n  nocompress\n}\n`);
    await writeFile(log, '');
    // rotateWait 200 ms: each generation is closed that long after it stops growing, not after the default 5 s.
    const files = [{ path: log, format: 'line', rotateWait: '200ms' }];
    const agent: Agent = await startAgent(dir, { id: 'files-records', intake: { http: { listen: '127.0.0.1:0' }, files } });
    const closed = () => agent.logs.map(parseLine).filter((l) => l?.msg === 'rotated file read to its end: closed').length;

    let lines = 0;
    const waits: number[] = [];
    for (let g = 0; g < GENERATIONS; g += 1) {
      await appendFile(log, `generation ${g} line a\ngeneration ${g} line b\n`);
      lines += 2;
      await waitFor(async () => (await agent.status()).head >= lines, `${lines} lines read`);
      const rotated = Date.now();
      await run('logrotate', ['-f', '-s', join(dir, 'logrotate.state'), conf]);
      // Each generation is read to its end and closed before the next rotation: it is finished while still on disk.
      await waitFor(() => closed() >= g + 1, `generation ${g} closed`);
      waits.push(Date.now() - rotated);
    }
    // The configured wait, not the default: with 5 s every generation would take at least 5 s to close.
    expect(Math.min(...waits)).toBeLessThan(4000);
    // One more look at the directory after the last deletion (records of gone files are deleted when two looks agree).
    await waitFor(
      () => agent.logs.map(parseLine).filter((l) => l?.msg === 'finished files gone: checkpoints deleted').reduce((n, l) => n + (l?.files as unknown[]).length, 0) >= GENERATIONS - KEPT,
      'the checkpoints of deleted generations deleted',
    ).catch(() => undefined);
    expect((await agent.status()).head).toBe(GENERATIONS * 2);
    const onDisk = await identities();
    expect(onDisk).toHaveLength(KEPT + 1);
    expect(await agent.stop()).toBe(0);

    const db = new Level<string, string>(join(dir, 'agent-data', 'buffer'));
    const records: string[] = [];
    try {
      for await (const key of db.keys({ gte: 'x!file!', lt: 'x!file!~' })) records.push(key.slice('x!file!'.length));
    } finally {
      await db.close();
    }
    // Exactly the files still on disk: the current one and the KEPT rotated generations.
    expect(records.sort()).toEqual(onDisk);
  });
});

describe('file intake records of paths gone for good', () => {
  it('forgets dated files once read and deleted, while the agent runs and after a restart', { timeout: 90_000 }, async () => {
    const { sub, logs } = await subDir('dated');
    const config = { id: 'files-dated', intake: { http: { listen: '127.0.0.1:0' }, files: [{ path: join(logs, '*.log'), format: 'line' }] } };
    const dated = (day: number) => join(logs, `app-2026-01-${String(day).padStart(2, '0')}.log`);

    let agent = await startAgent(sub, config);
    for (let day = 1; day <= 5; day++) await writeFile(dated(day), `day ${day} line a\nday ${day} line b\n`);
    await waitFor(async () => (await agent.status()).head === 10, '10 lines read');
    for (let day = 1; day <= 5; day++) await unlink(dated(day));
    await waitFor(() => forgotten(agent) === 5, 'the 5 deleted paths forgotten');
    await agent.kill();
    expect(await storedRecords(sub)).toEqual({ paths: [], files: [], index: [] });

    // Read, then deleted while the agent is down: forgotten after the restart, and nothing read twice.
    agent = await startAgent(sub, config);
    for (let day = 6; day <= 8; day++) await writeFile(dated(day), `day ${day} line a\n`);
    await waitFor(async () => (await agent.status()).head === 13, '3 more lines read');
    expect(await agent.stop()).toBe(0);
    expect((await storedRecords(sub)).paths).toEqual([dated(6), dated(7), dated(8)]);
    for (let day = 6; day <= 8; day++) await unlink(dated(day));
    agent = await startAgent(sub, config);
    await waitFor(() => forgotten(agent) === 3, 'the 3 paths deleted while down forgotten');
    expect((await agent.status()).head).toBe(13);
    await agent.kill();
    expect(await storedRecords(sub)).toEqual({ paths: [], files: [], index: [] });
  });

  it('keeps the records of a deleted path while its rotated file has unread lines, then reads every line once and forgets it when the file is deleted', { timeout: 120_000 }, async () => {
    const { sub, logs } = await subDir('unread');
    const port = await freePort();
    const config = {
      id: 'files-unread',
      limits: { maxEventBytes: '2KiB' },
      buffer: { maxBytes: '32KiB', whenFull: 'block' },
      intake: { http: { listen: '127.0.0.1:0' }, files: [{ path: join(logs, '*.log'), format: 'line' }] },
      push: { http: { url: `http://127.0.0.1:${port}/v1/events` }, batch: { maxEvents: 50, maxWaitMs: 5 }, backoff: { initialMs: 50, maxMs: 200 }, breaker: { threshold: 100, cooldownMs: 100 } },
    };
    const log = join(logs, 'app-4242.log');
    // Random text barely compresses: the 32 KiB buffer is full after the first append of 1,000 lines (the gateway is not up).
    const sent = Array.from({ length: 3000 }, (_, i) => `${i} ${randomBytes(60).toString('base64')}`);
    await writeFile(log, sent.map((l) => `${l}\n`).join(''));
    let agent = await startAgent(sub, config);
    await waitFor(async () => (await agent.metric('meteorzx_agent_intake_blocked{intake="files"}')) === 1, 'the intake blocked on a full buffer');
    // The process is gone and its log rotated away: the path is gone, the rotated file holds unread lines.
    await rename(log, `${log}.1`);
    await sleep(2500); // more than two looks a discovery interval apart
    await agent.kill();
    const id = await idOf(`${log}.1`);
    const held = await storedRecords(sub);
    expect(held).toEqual({ paths: [log], files: [id], index: [log] });
    expect(await storedOffset(sub, id)).toBeLessThan((await stat(`${log}.1`)).size);

    // Restarted, still blocked: found by inode, the rotated file keeps its records.
    agent = await startAgent(sub, config);
    await sleep(2500);
    await agent.kill();
    expect(await storedRecords(sub)).toEqual(held);

    const gateway = await startGateway(sub, port);
    agent = await startAgent(sub, config);
    await waitFor(async () => (await linesAt(gateway.url, 'files-unread')).size === sent.length, 'every line at the gateway', 60_000);
    await sleep(2500); // looks at the path once its rotated file was read
    await agent.kill();
    // Read, and on disk: the path keeps its records, so the file renamed back would not be read again.
    expect(await storedRecords(sub)).toEqual(held);
    expect(await storedOffset(sub, id)).toBe((await stat(`${log}.1`)).size);
    // Deleted while the agent is down: found gone by the looks after the start, and the path forgotten.
    await unlink(`${log}.1`);
    agent = await startAgent(sub, config);
    await waitFor(() => forgotten(agent) === 1, 'the path forgotten once its rotated file was read and deleted');
    await agent.kill();
    expect(await storedRecords(sub)).toEqual({ paths: [], files: [], index: [] });
    const counts = await linesAt(gateway.url, 'files-unread');
    expect([...counts.keys()].sort()).toEqual([...sent].sort());
    expect([...counts.values()].filter((n) => n !== 1)).toEqual([]);
    await gateway.stop();
  });

  it('keeps the path of a rotated file on disk: renamed back it is not read again; forgotten once all is gone, the path back is read from its start', { timeout: 90_000 }, async () => {
    const { sub, logs } = await subDir('back');
    const port = await freePort();
    const gateway = await startGateway(sub, port);
    const config = {
      id: 'files-back',
      intake: { http: { listen: '127.0.0.1:0' }, files: [{ path: join(logs, '*.log'), format: 'line' }] },
      push: { http: { url: `${gateway.url}/v1/events` }, batch: { maxEvents: 50, maxWaitMs: 5 } },
    };
    const log = join(logs, 'app-77.log');
    await writeFile(log, 'a1\na2\n');
    let agent = await startAgent(sub, config);
    await waitFor(async () => (await agent.status()).head === 2, 'a1-a2 read');
    await rename(log, `${log}.1`);
    await writeFile(log, 'b1\nb2\n');
    await waitFor(async () => (await agent.status()).head === 4, 'b1-b2 read');
    const deleted = await idOf(log);
    await unlink(log);
    const closedLines = () => agent.logs.map(parseLine).filter((l) => l?.msg === 'rotated file read to its end: closed');
    await waitFor(() => closedLines().some((l) => l?.id === deleted && l.recordDeleted === true), 'the deleted file closed, its record deleted', 20_000);
    await sleep(2500); // more looks: the path stays while app-77.log.1 is on disk
    expect(forgotten(agent)).toBe(0);
    // Renamed back (a rotation undone, a directory moved away and back): the file read before, resumed at its end.
    await rename(`${log}.1`, log);
    await appendFile(log, 'a3\n');
    await waitFor(async () => (await agent.status()).head === 5, 'a3 read');
    // Deleted with no generation left: forgotten, with every record.
    await unlink(log);
    await waitFor(() => forgotten(agent) === 1, 'the deleted path forgotten', 20_000);
    await agent.kill();
    expect(await storedRecords(sub)).toEqual({ paths: [], files: [], index: [] });

    // Back while the agent runs: a new file, read from its start.
    agent = await startAgent(sub, config);
    await writeFile(log, 'c1\nc2\n');
    await waitFor(async () => (await agent.status()).head >= 7, 'c1-c2 read');
    expect(await agent.stop()).toBe(0);
    await appendFile(log, 'c3\n');
    agent = await startAgent(sub, config);
    await waitFor(async () => (await linesAt(gateway.url, 'files-back')).size === 8, 'every line at the gateway');
    await sleep(500);
    expect(Object.fromEntries(await linesAt(gateway.url, 'files-back'))).toEqual({ a1: 1, a2: 1, a3: 1, b1: 1, b2: 1, c1: 1, c2: 1, c3: 1 });
    await agent.kill();
    expect(await storedRecords(sub)).toEqual({ paths: [log], files: [await idOf(log)], index: [log] });
    await gateway.stop();
  });
  it('deletes the records an earlier agent left for paths and files already gone', { timeout: 60_000 }, async () => {
    const { sub, logs } = await subDir('legacy');
    const config = { id: 'files-legacy', intake: { http: { listen: '127.0.0.1:0' }, files: [{ path: join(logs, '*.log'), format: 'line' }] } };
    const log = join(logs, 'app.log');
    await writeFile(log, 'x1\n');
    let agent = await startAgent(sub, config);
    await waitFor(async () => (await agent.status()).head === 1, 'x1 read');
    expect(await agent.stop()).toBe(0);
    const before = await storedRecords(sub);
    // What agents before this version left: a path dropped from files!paths once idle, its path record kept, and
    // finished files' records that no path record lists.
    const gone = join(logs, 'app-2026-01-01.log');
    const db = new Level<string, string>(join(sub, 'agent-data', 'buffer'));
    const fileRecord = (path: string) => JSON.stringify({ path, offset: 3, size: 3, fp: { len: 3, sha: '0'.repeat(64) } });
    await db.batch([
      { type: 'put', key: `x!path!${gone}`, value: JSON.stringify({ draining: [], checkedAt: 1, done: ['99:1'] }) },
      { type: 'put', key: 'x!file!99:1', value: fileRecord(`${gone}.1`) },
      { type: 'put', key: 'x!file!99:2', value: fileRecord(gone) },
      { type: 'put', key: 'x!file!99:3', value: fileRecord(`${log}.3`) },
    ]);
    await db.close();
    agent = await startAgent(sub, config);
    await waitFor(() => forgotten(agent) === 1, 'the old path forgotten');
    await waitFor(() => agent.logs.map(parseLine).some((l) => l?.msg === 'finished files gone: checkpoints deleted'), 'the old file record of app.log deleted');
    await agent.kill();
    expect(await storedRecords(sub)).toEqual(before);
    expect(before).toEqual({ paths: [log], files: [await idOf(log)], index: [log] });
  });
});
