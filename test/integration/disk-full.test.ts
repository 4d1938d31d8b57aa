import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, open, rm, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ChainedEvent } from '../../protocols/index.js';
import { freePort, gatewayEvents, killAll, postEvents, removeDir, sleep, startAgent, startGateway, tempDir, waitFor } from './agent-harness.js';

/**
 * A full disk, for real: the data directory on a small tmpfs that a filler
 * file fills up. Once a flush of its memtable fails, LevelDB refuses every
 * later write on that handle, even after room is made; before the agent's
 * buffer and the gateway's store reopened their database, each answered 503
 * for good, until restarted. Mounting needs root (as CI runs here);
 * elsewhere the tests say why they skip.
 */
const mountable = process.getuid?.() === 0 && spawnSync('mount', ['--version']).status === 0;

const mounted: string[] = [];
const plain: string[] = [];
afterAll(async () => {
  await killAll();
  for (const dir of mounted) {
    spawnSync('umount', [dir]);
    await removeDir(dir);
  }
  for (const dir of plain) await removeDir(dir);
});

/** A temp dir with a tmpfs of `mib` MiB mounted on it. */
async function smallDisk(prefix: string, mib: number): Promise<string> {
  const dir = await tempDir(prefix);
  const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir], { encoding: 'utf8' });
  expect(mount.status, mount.stderr).toBe(0);
  mounted.push(dir);
  return dir;
}

/** Writes a file until the filesystem says ENOSPC, then gives `leaveMiB` back. */
async function fillDisk(file: string, leaveMiB: number): Promise<void> {
  const fh = await open(file, 'w');
  const chunk = Buffer.alloc(256 * 1024, 1);
  try {
    for (;;) await fh.write(chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    await fh.close();
  }
  await truncate(file, (await stat(file)).size - leaveMiB * 1024 * 1024);
}

/**
 * Posts batches of `n` events of ≈ 1.1 KB each (ids `<tag>-<i>`, `extra`
 * members added) to `url`; `acked` collects the ids of every batch that got 200.
 */
function poster(url: string, n: number, extra: Record<string, unknown> = {}) {
  const acked: string[] = [];
  const post = async (tag: string): Promise<number> => {
    const ids = Array.from({ length: n }, (_, i) => `${tag}-${i}`);
    const res = await postEvents(url, ids.map((id) => ({ id, type: 'disk.test', data: { pad: randomBytes(512).toString('hex') }, ...extra })));
    if (res.status === 200) acked.push(...ids);
    return res.status;
  };
  return { acked, post };
}

/**
 * Fills the disk under `dir` but `leaveMiB`, posts until the answer is 503,
 * frees the disk, and waits until a post is answered 200 again.
 */
async function fullThenFreed(
  dir: string,
  leaveMiB: number,
  post: (tag: string) => Promise<number>,
  what: string,
  whileFull?: () => Promise<void>,
): Promise<void> {
  const filler = join(dir, 'filler');
  await fillDisk(filler, leaveMiB);
  let status = 200;
  for (let n = 0; n < 400 && status === 200; n++) status = await post(`full-${n}`);
  expect(status).toBe(503);
  await whileFull?.();
  await rm(filler);
  let n = 0;
  await waitFor(async () => (await post(`freed-${n++}`)) === 200, what, 20_000);
}

describe.runIf(mountable)('on a disk that fills up and is freed again', () => {
  it('the agent answers 503 while the disk is full, accepts again once there is room, without a restart; every 2xx event is kept', async () => {
    const dir = await smallDisk('agent-disk-full', 32);
    // A file intake too (the log it follows is off the small disk): it cannot be answered 503, so
    // it must wait out the full disk and the database's reopening, then read on by itself.
    const logDir = await tempDir('agent-disk-full-log');
    plain.push(logDir);
    const logFile = join(logDir, 'audit.log');
    let fileLines = 0;
    const writeLines = async (n: number) => {
      const lines = Array.from({ length: n }, () => JSON.stringify({ id: `file-${fileLines++}`, type: 'disk.file', data: { pad: randomBytes(128).toString('hex') } }));
      await appendFile(logFile, `${lines.join('\n')}\n`);
    };
    await writeLines(10);
    const agent = await startAgent(dir, { id: 'disk-full', intake: { http: { listen: '127.0.0.1:0' }, files: [{ path: logFile }] } });
    const { acked, post } = poster(agent.intakeUrl, 50);
    expect(await post('before')).toBe(200);
    // Room for 6 MiB more: LevelDB's log grows to its 4 MiB memtable, then the flush of that memtable
    // into a table file runs out of room. A failed flush is what LevelDB never forgives: a failed log
    // append alone only fails that write.
    const status = async (): Promise<{ writeError?: string }> => (await fetch(`${agent.pullUrl}/v1/status`)).json() as Promise<{ writeError?: string }>;
    let whileFull: { writeError?: string } = {};
    await fullThenFreed(dir, 6, post, 'the intake accepting again once the disk has room', async () => {
      whileFull = await status();
      // Lines keep coming while the database is refused and reopened.
      for (let i = 0; i < 30; i++) {
        await writeLines(5);
        await sleep(100);
      }
    });
    // The status says why appends fail while they do, and no more once one is written.
    expect(whileFull.writeError).toMatch(/No space left on device/);
    expect((await status()).writeError).toBeUndefined();
    expect(agent.proc.exitCode).toBeNull();
    // Operators see it: the refused appends are counted by error code.
    expect(await agent.metric('meteorzx_agent_append_failures_total{code="METEORZX_BUFFER_WRITE_FAILED"}')).toBeGreaterThan(0);

    // Every event that got a 2xx is in the buffer, once; the seqs run without a hole. The file intake
    // read on by itself: every line, those written after the disk was freed too.
    await writeLines(10);
    const pull = async () => {
      const text = (await (await fetch(`${agent.pullUrl}/v1/events?after=0&limit=100000`)).text()).trim();
      return text.split('\n').map((l) => JSON.parse(l) as ChainedEvent);
    };
    await waitFor(async () => (await pull()).filter((e) => e.type === 'disk.file').length === fileLines, `all ${fileLines} file lines buffered`, 20_000);
    const pulled = await pull();
    expect(pulled.map((e) => e.seq)).toEqual(pulled.map((_, i) => i + 1));
    const ids = pulled.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(acked.every((id) => ids.includes(id))).toBe(true);
    expect(await agent.stop()).toBe(0);
  });

  it('the gateway answers 503 while the disk is full, stores again once there is room, without a restart; every 2xx event is stored once', async () => {
    const dir = await smallDisk('gateway-disk-full', 48);
    const gateway = await startGateway(dir, await freePort());
    const { acked, post } = poster(`${gateway.url}/v1/events`, 100, { source: 'disk-full' });
    expect(await post('before')).toBe(200);
    // The store's memtable is 8 MiB: room for 12 MiB more lets it fill, and its flush fail.
    const readyz = async (): Promise<number> => (await fetch(`${gateway.url}/readyz`)).status;
    const whileFull: number[] = [];
    await fullThenFreed(dir, 12, post, 'the gateway storing again once the disk has room', async () => {
      for (let i = 0; i < 10; i++, await new Promise((r) => setTimeout(r, 100))) whileFull.push(await readyz());
    });
    // Not ready while the store cannot write, ready again once it can: no restart, no traffic needed.
    expect(whileFull).toContain(503);
    await waitFor(async () => (await readyz()) === 200, '/readyz answering 200 again', 5_000);
    expect(gateway.proc.exitCode).toBeNull();
    // Operators see it: the failed commits are counted by error code.
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/^meteorzx_gateway_store_commit_failures_total\{code="METEORZX_STORAGE_FAILED"\} [1-9]/m);
    const stored = (await gatewayEvents(gateway.url, 'disk-full')).map((e) => e.id);
    expect(new Set(stored).size).toBe(stored.length);
    expect(acked.every((id) => stored.includes(id))).toBe(true);
    expect(await gateway.stop()).toBe(0);
  });
});

describe.skipIf(mountable)('on a disk that fills up (needs root to mount a tmpfs)', () => {
  it.skip('skipped: not root, or no mount command', () => undefined);
});
