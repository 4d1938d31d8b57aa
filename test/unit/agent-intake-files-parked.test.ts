import { renameSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../protocols/index.js';
import { LevelBuffer } from '../../agent/buffer/index.js';
import { FileIntake } from '../../agent/intake/files/file-intake.js';
import type { FileSpec } from '../../agent/intake/files/file-spec.js';

/**
 * A file closed for inactivity (parked) is found again by its inode when it is no longer at its path
 * (renamed by logrotate `create` while closed). Its inode may by then be another file's: the parked file
 * was deleted, and the filesystem gave the inode to a file created since (ext4 does so at once). Before,
 * whatever file had the inode, under any name in the directory, was taken for the parked one, "truncated
 * then renamed": read from 0 as the path's rotated file (another file's lines under this path's name, or
 * twice where that file is followed itself), with a "truncated … no rotated copy" notice for bytes that
 * were not lost. Seen with 100 files rotated faster than maxOpenFiles let their turns come: f11.log.1 read
 * as a rotated file of f10.log. Staged here by renaming the parked file to another name and rewriting it,
 * which to the agent is the same: its inode, at a name that is no generation of the path, with other bytes.
 */

let dir: string;
let buffer: LevelBuffer;
const intakes: FileIntake[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meteorzx-files-parked-'));
  buffer = new LevelBuffer({ dataDir: join(dir, 'data'), id: 'host-1', durability: 'os', commitIntervalMs: 1 });
  await buffer.open();
});

afterEach(async () => {
  for (const i of intakes.splice(0)) await i.close();
  await buffer.close();
  await rm(dir, { recursive: true, force: true });
});

function spec(path: string): FileSpec {
  return { path, format: 'line', startAt: 'beginning', type: 'log.line', maxLineBytes: 64 * 1024, closeInactiveMs: 30 };
}

async function lines(): Promise<string[]> {
  return (await buffer.read(0, 1_000_000)).filter((e) => e.type === 'log.line').map((e) => String(e.data?.line));
}

async function waitFor(probe: () => Promise<boolean> | boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function handlesOn(path: string): Promise<number> {
  let n = 0;
  for (const fd of await readdir('/proc/self/fd')) if ((await readlink(`/proc/self/fd/${fd}`).catch(() => '')) === path) n += 1;
  return n;
}

describe('FileIntake: a closed file whose inode another file has now', () => {
  it('is not read as the path rotated file: that file is not the closed one', async () => {
    const log = join(dir, 'app.log');
    await writeFile(log, 'line 1\nline 2\n');
    const intake = new FileIntake({ files: [spec(log)], buffer, limits: DEFAULT_LIMITS, pollMs: 10, discoverMs: 20, rotateWaitMs: 100, cwd: dir });
    intakes.push(intake);
    await intake.start();
    await waitFor(async () => (await lines()).length >= 2, 'the first lines');
    await waitFor(async () => (await handlesOn(log)) === 0, 'the idle file closed');
    // One synchronous step: no look comes between. The inode now holds another file's bytes, at another name.
    renameSync(log, join(dir, 'other.data'));
    writeFileSync(join(dir, 'other.data'), 'other 1\n');
    writeFileSync(log, 'line 3\n');
    await waitFor(async () => (await lines()).includes('line 3'), 'the new file at the path');
    await new Promise((r) => setTimeout(r, 200));
    // Before: ['line 1', 'line 2', 'other 1', 'line 3'].
    expect(await lines()).toEqual(['line 1', 'line 2', 'line 3']);
    expect((await buffer.read(0, 1_000_000)).filter((e) => e.type !== 'log.line')).toEqual([]);
  });
});

describe('FileIntake: at a restart, a listed file whose inode another file has now', () => {
  it('is not read as the path rotated file: the listed file is gone', async () => {
    const log = join(dir, 'app.log');
    await writeFile(log, 'line 1\nline 2\n');
    const first = new FileIntake({ files: [spec(log)], buffer, limits: DEFAULT_LIMITS, pollMs: 10, discoverMs: 20, rotateWaitMs: 100, cwd: dir });
    intakes.push(first);
    await first.start();
    await waitFor(async () => (await lines()).length >= 2, 'the first lines');
    await first.close();
    intakes.splice(intakes.indexOf(first), 1);
    // While the agent is down: the listed file's inode holds another file's bytes, at another name.
    renameSync(log, join(dir, 'other.data'));
    writeFileSync(join(dir, 'other.data'), 'other 1\nother 2\nother 3\n');
    writeFileSync(log, 'line 3\n');
    const second = new FileIntake({ files: [spec(log)], buffer, limits: DEFAULT_LIMITS, pollMs: 10, discoverMs: 20, rotateWaitMs: 100, cwd: dir });
    intakes.push(second);
    await second.start();
    await waitFor(async () => (await lines()).includes('line 3'), 'the new file at the path');
    await new Promise((r) => setTimeout(r, 200));
    // Before: ['line 1', 'line 2', 'other 1', 'other 2', 'other 3', 'line 3'].
    expect(await lines()).toEqual(['line 1', 'line 2', 'line 3']);
    expect((await buffer.read(0, 1_000_000)).filter((e) => e.type !== 'log.line')).toEqual([]);
  });
});
