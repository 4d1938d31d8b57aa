import { mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { fileIdOf, fileKey, fingerprint, type FileRecord } from '../../agent/intake/files/checkpoint.js';
import { GoneRecords } from '../../agent/intake/files/gone-records.js';
import { PathIndex } from '../../agent/intake/files/path-index.js';
import * as rotation from '../../agent/intake/files/rotation.js';
import type { TrackedFile } from '../../agent/intake/files/tracked-file.js';
import { WatchedPath } from '../../agent/intake/files/watched-path.js';

/** The looks at gone finished files list each directory once per pass, however many paths are in it. */

vi.mock('../../agent/intake/files/rotation.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../agent/intake/files/rotation.js')>();
  return { ...original, identitiesIn: vi.fn(original.identitiesIn) };
});

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meteorzx-files-listing-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('GoneRecords.lookAll', () => {
  it('lists a directory once per pass for all the paths in it that keep a generation on disk', async () => {
    const paths = new Map<string, WatchedPath>();
    const meta = new Map<string, string>();
    for (let i = 0; i < 20; i++) {
      // A per-process log gone, its rotated generation still on disk: the path is kept and looked at.
      const log = join(dir, `app-${i}.log`);
      await writeFile(`${log}.1`, `rotated ${i}\n`);
      const id = fileIdOf(await stat(`${log}.1`, { bigint: true }));
      const fh = await open(`${log}.1`, 'r');
      const size = (await fh.stat()).size;
      meta.set(fileKey(id), JSON.stringify({ path: `${log}.1`, offset: size, size, fp: await fingerprint(fh, size) } satisfies FileRecord));
      await fh.close();
      const wp = new WatchedPath(log, { path: '*.log', format: 'line', startAt: 'beginning', type: 'log.line', maxLineBytes: 1024 });
      wp.done.add(id);
      wp.lookForGone = true;
      paths.set(log, wp);
    }
    const gone = new GoneRecords({
      paths,
      openFiles: new Map<string, TrackedFile>(),
      resume: { intake: 'files', getMeta: (key) => Promise.resolve(meta.get(key)), open: new Map(), now: Date.now, notice: () => undefined },
      index: new PathIndex(),
      literals: new Set(),
      now: Date.now,
      commit: () => Promise.resolve(),
      forgotten: () => undefined,
    });
    const listed = vi.mocked(rotation.identitiesIn);
    listed.mockClear();
    await gone.lookAll();
    // Before the fix: one listing (a readdir and a stat of every file) per path, 20 here.
    expect(listed).toHaveBeenCalledTimes(1);
    // Every generation found as itself: all kept.
    expect([...paths.values()].every((wp) => wp.done.size === 1 && wp.missing.size === 0)).toBe(true);
  });
});
