import { execFile } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, removeDir, sleep, startAgent, tempDir, waitFor, waitWhileProgressing } from './agent-harness.js';

/**
 * More files written and rotated (logrotate `create`) than `intake.maxOpenFiles`: a path waits for a
 * handle while its file is rotated, again and again. The file that was at the path while it waited was a
 * generation (`f1.log.1`, `.2`) by its turn, and the turn opened only the file at the path then: those
 * generations were never read and the next rotation checkpointed them as seen, with no notice (20 files,
 * 4 handles, 5 rotations: 600 of the 2,000 lines on disk never read). Here with `rotate 5`, so logrotate
 * deletes nothing: every line written is on disk and must be read, once (before: 28 of about 230 unread).
 */

const FILES = 4;
const ROTATIONS = 3;
const run = promisify(execFile);

let dir: string;
let logs: string;

beforeAll(async () => {
  dir = await tempDir('agent-files-rotated-waiting');
  logs = join(dir, 'logs');
  await mkdir(logs);
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

describe('file intake: files rotated while their path waits for a handle', () => {
  it('reads every line on disk, each once, once the rotations stop', { timeout: 90_000 }, async () => {
    for (let f = 0; f < FILES; f += 1) await writeFile(join(logs, `f${f}.log`), `f${f} 0\n`);
    const conf = join(dir, 'logrotate.conf');
    await writeFile(conf, `${logs}/*.log {\n rotate 5\n create\n missingok\n nocompress\n}\n`);
    const agent = await startAgent(dir, { id: 'rotwait', intake: { maxOpenFiles: 2, files: [{ path: join(logs, '*.log'), format: 'line' }] } });
    let seq = 1;
    const writer = setInterval(() => {
      for (let f = 0; f < FILES; f += 1) appendFileSync(join(logs, `f${f}.log`), `f${f} ${seq}\n`);
      seq += 1;
    }, 100);
    try {
      await waitFor(async () => (await agent.metric('meteorzx_agent_files_waiting')) > 0, 'paths waiting for a handle');
      for (let r = 0; r < ROTATIONS; r += 1) {
        await run('logrotate', ['-f', '-s', join(dir, 'logrotate.state'), conf]);
        await sleep(700);
      }
    } finally {
      clearInterval(writer);
    }
    const written: string[] = [];
    for (const name of await readdir(logs)) written.push(...(await readFile(join(logs, name), 'utf8')).split('\n').filter(Boolean));
    expect(written.length).toBe(FILES * seq);
    const read = async () => {
      const body = await (await fetch(`${agent.pullUrl}/v1/events?after=0&limit=100000`)).text();
      return body
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as { type: string; data?: { line?: string } });
    };
    // Rotated generations are held for rotateWait (5 s) once read: the line moves slowly, but it moves.
    await waitWhileProgressing(
      async () => {
        const events = await read();
        return { done: events.length >= written.length, progress: String(events.length) };
      },
      'every line on disk',
      12_000,
    ).catch(() => undefined);
    const events = await read();
    const got = events.filter((e) => e.type === 'log.line').map((e) => String(e.data?.line));
    const unread = written.filter((l) => !got.includes(l));
    // Before: lines of generations that were at the path while it waited (dozens of the ~600).
    expect(unread).toEqual([]);
    expect(got.length).toBe(written.length);
    expect(events.filter((e) => e.type !== 'log.line')).toEqual([]);
    expect(await agent.stop()).toBe(0);
  });
});
