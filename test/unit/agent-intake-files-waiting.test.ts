import { appendFileSync } from 'node:fs';
import { readdir, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { FileIntake } from '../../agent/intake/files/file-intake.js';
import type { FileSpec } from '../../agent/intake/files/file-spec.js';
import { lines, logs, spec, stallReads, startIntake, stopIntake, unstallReads, useFileIntakeHarness, waitFor } from './file-intake-harness.js';

/**
 * Paths waiting for a handle (intake.maxOpenFiles) when the agent stops or is killed. Before, such a path
 * had no record: at the restart it was a file found at start, and `startAt: end` skipped the lines written
 * to it since it was first found (and every line of a file that appeared while the agent ran).
 */

useFileIntakeHarness('meteorzx-files-waiting-');

async function handlesOn(prefix: string): Promise<number> {
  let n = 0;
  for (const fd of await readdir('/proc/self/fd')) if ((await readlink(`/proc/self/fd/${fd}`).catch(() => '')).startsWith(prefix)) n += 1;
  return n;
}

/** Starts with maxOpenFiles 1 and reads stalled; waits until one file is open and the other paths wait. */
async function startWaiting(startAt: FileSpec['startAt']): Promise<FileIntake> {
  await writeFile(join(logs, 'a.log'), 'old a\n');
  await writeFile(join(logs, 'b.log'), 'old b\n');
  stallReads();
  const intake = await startIntake([spec({ startAt })], { maxOpenFiles: 1 });
  await waitFor(async () => (await handlesOn(`${logs}/`)) === 1, 'one file open');
  return intake;
}

/** Stops `first` (as a restart, or SIGKILL, would stop it: the waiting path never had its turn), starts again with handles for all. */
async function restartAndRead(first: FileIntake, startAt: FileSpec['startAt'], want: number): Promise<string[]> {
  await stopIntake(first);
  unstallReads();
  await startIntake([spec({ startAt })], { maxOpenFiles: 10 });
  await waitFor(async () => (await lines()).length >= want, `${want} lines`);
  await new Promise((r) => setTimeout(r, 150));
  return (await lines()).sort();
}

describe('FileIntake: a path waiting for a handle at a restart', () => {
  it('startAt end: lines written to it since it was found, and a file that appeared meanwhile, are read after the restart', async () => {
    const first = await startWaiting('end');
    // One of a.log and b.log holds the handle, the other waits; both get a line, and c.log appears (new: read whole).
    appendFileSync(join(logs, 'a.log'), 'new a\n');
    appendFileSync(join(logs, 'b.log'), 'new b\n');
    await writeFile(join(logs, 'c.log'), 'c 1\n');
    await new Promise((r) => setTimeout(r, 100)); // a discovery finds c.log; it waits too
    expect(await handlesOn(`${logs}/`)).toBe(1);
    // Before: the waiting one's new line and c.log's line were skipped (startAt: end at the restart).
    expect(await restartAndRead(first, 'end', 3)).toEqual(['c 1', 'new a', 'new b']);
  });

  it('startAt beginning: every line once', async () => {
    const first = await startWaiting('beginning');
    appendFileSync(join(logs, 'a.log'), 'new a\n');
    appendFileSync(join(logs, 'b.log'), 'new b\n');
    expect(await restartAndRead(first, 'beginning', 4)).toEqual(['new a', 'new b', 'old a', 'old b']);
  });

  it('startAt end: a path that waited and was then followed resumes at its end after a restart, not from 0', async () => {
    await writeFile(join(logs, 'a.log'), 'old a\n');
    await writeFile(join(logs, 'b.log'), 'old b\n');
    const first = await startIntake([spec({ startAt: 'end' })], { maxOpenFiles: 1 });
    // Each in turn: the first is closed at its end to make room for the second.
    await waitFor(() => (first.describe().following as string[]).length === 2, 'both paths followed');
    await stopIntake(first);
    await startIntake([spec({ startAt: 'end' })], { maxOpenFiles: 10 });
    appendFileSync(join(logs, 'a.log'), 'new a\n');
    appendFileSync(join(logs, 'b.log'), 'new b\n');
    await waitFor(async () => (await lines()).length >= 2, 'the new lines');
    await new Promise((r) => setTimeout(r, 150));
    // Before: the path that had waited had no checkpoint at its end, and the restart read it from 0 ("old").
    expect((await lines()).sort()).toEqual(['new a', 'new b']);
  });
});
