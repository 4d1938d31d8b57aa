import { execFile } from 'node:child_process';
import { appendFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Level } from 'level';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, parseLine, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';

/**
 * The file intake keeps a `file!<dev>:<ino>` checkpoint per file it read. A
 * rotated file finished and gone from disk must not leave its record behind
 * for ever (hourly rotation would grow the buffer's LevelDB without end),
 * while every file still on disk keeps its own. Driven by Debian's logrotate
 * against the real agent; the records are counted in its LevelDB once it has
 * stopped.
 */

const run = promisify(execFile);
const GENERATIONS = 6;
const KEPT = 2; // logrotate `rotate 2`: app.log.1 and app.log.2 stay, older ones are deleted

let dir: string;

beforeAll(async () => {
  dir = await tempDir('agent-files-records');
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

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
    const agent: Agent = await startAgent(dir, { id: 'files-records', intake: { http: { listen: '127.0.0.1:0' }, files: [{ path: log, format: 'line' }] } });
    const closed = () => agent.logs.map(parseLine).filter((l) => l?.msg === 'rotated file read to its end: closed').length;

    let lines = 0;
    for (let g = 0; g < GENERATIONS; g += 1) {
      await appendFile(log, `generation ${g} line a\ngeneration ${g} line b\n`);
      lines += 2;
      await waitFor(async () => (await agent.status()).head >= lines, `${lines} lines read`);
      await run('logrotate', ['-f', '-s', join(dir, 'logrotate.state'), conf]);
      // Each generation is read to its end and closed before the next rotation: it is finished while still on disk.
      await waitFor(() => closed() >= g + 1, `generation ${g} closed`);
    }
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
