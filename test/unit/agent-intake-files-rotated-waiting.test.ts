import { appendFileSync, renameSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { buffer, events, lines, logs, spec, stallReads, startIntake, useFileIntakeHarness, waitFor } from './file-intake-harness.js';

/**
 * A followed path whose file was rotated while no handle was free for the new file at the path
 * (intake.maxOpenFiles): the path waits its turn with no file open. Rotated again before its turn, the file
 * that was at the path while it waited became `app.log.1`, and the turn opened only the newest file at the
 * path. Before, that generation was never read, and the next rotation checkpointed it at its end as seen:
 * its lines stayed on disk unread, with no notice (20 files, maxOpenFiles 4, logrotate `create` every
 * 2.5 s: 600 of the 2,000 lines on disk never read).
 */

useFileIntakeHarness('meteorzx-files-rotwait-');

/** logrotate `create`, rotate 3: app.log.2 → .3, .1 → .2, the log → .1, a new log with `first`. */
function rotate(log: string, first: string): void {
  for (let g = 2; g >= 1; g -= 1) {
    try {
      renameSync(`${log}.${g}`, `${log}.${g + 1}`);
    } catch {
      // not there yet
    }
  }
  renameSync(log, `${log}.1`);
  writeFileSync(log, first);
}

describe('FileIntake: a path rotated again while it waits for a handle', () => {
  it('reads the file that was at the path while it waited, now a rotated generation', async () => {
    const log = join(logs, 'app.log');
    await writeFile(log, 'a 1\n');
    const logged: { msg: string; path?: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line) as (typeof logged)[number]) });
    await startIntake([spec()], { logger, maxOpenFiles: 1 });
    await waitFor(async () => (await lines()).includes('a 1'), 'the first line');
    const release = stallReads();
    appendFileSync(log, 'a 2\n');
    // The rotated file keeps the only handle (its reads stalled): the new file at the path waits.
    rotate(log, 'x 1\n');
    await waitFor(() => logged.some((l) => l.msg === 'file rotated: reading it to its end' && l.path === log), 'the rotation seen');
    appendFileSync(log, 'x 2\n');
    // Before its turn: the file that waited at the path is app.log.1 now.
    rotate(log, 'y 1\n');
    release();
    const want = ['a 1', 'a 2', 'x 1', 'x 2', 'y 1'];
    // Before: 'x 1' and 'x 2' (app.log.1) were never read.
    await waitFor(async () => (await lines()).length >= want.length, 'every line on disk', 5000).catch(() => undefined);
    expect((await lines()).sort()).toEqual(want);
    expect((await events()).filter((e) => e.type !== 'log.line')).toEqual([]);
  });

  it('reads the generations a path found while the agent ran got while it waited for its first turn', async () => {
    const a = join(logs, 'a.log');
    const b = join(logs, 'b.log');
    await writeFile(a, 'a 1\n');
    await startIntake([spec()], { maxOpenFiles: 1 });
    await waitFor(async () => (await lines()).includes('a 1'), 'the first line');
    const release = stallReads();
    // a.log keeps the only handle (a line it cannot read); b.log, found now, waits for its first turn.
    appendFileSync(a, 'a 2\n');
    await writeFile(b, 'b 1\n');
    await waitFor(async () => (await buffer.getMeta(`path!${b}`)) !== undefined, 'b.log found, waiting');
    rotate(b, 'x 1\n');
    rotate(b, 'y 1\n');
    release();
    const want = ['a 1', 'a 2', 'b 1', 'x 1', 'y 1'];
    // Before: 'x 1' (b.log.1, the file at the path between the two rotations) was never read.
    await waitFor(async () => (await lines()).length >= want.length, 'every line on disk', 5000).catch(() => undefined);
    expect((await lines()).sort()).toEqual(want);
  });
});
