import { appendFile, mkdir, mkdtemp, open, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, type ChainedEvent } from '../../protocols/index.js';
import { LevelBuffer } from '../../agent/buffer/index.js';
import type { ExtraOp } from '../../agent/buffer/types.js';
import { fileIdOf, fileKey, fingerprint, parsePathRecord, pathKey, type FileRecord, type PathRecord } from '../../agent/intake/files/checkpoint.js';
import { discover, patternIndexer } from '../../agent/intake/files/discover.js';
import { FileIntake, type FileIntakeOptions } from '../../agent/intake/files/file-intake.js';
import type { FileSpec } from '../../agent/intake/files/file-spec.js';
import { GoneRecords } from '../../agent/intake/files/gone-records.js';
import { pathOfRecord, pathRecordKeys, SWEEP_CURSOR_KEY, SWEEP_KEYS, SWEEP_PATHS } from '../../agent/intake/files/legacy-sweep.js';
import { INDEX_KEY, PathIndex } from '../../agent/intake/files/path-index.js';
import type { TrackedFile } from '../../agent/intake/files/tracked-file.js';
import { confirmGone } from '../../agent/intake/files/two-looks.js';
import { WatchedPath } from '../../agent/intake/files/watched-path.js';

/**
 * How long the file intake's records live once nothing is read from them
 * (docs/intake-files.md): paths gone for good are forgotten with their
 * records, after two looks; what still has lines to read keeps them; a
 * path that comes back is a new file; an earlier agent's leftovers are
 * found at start.
 */

let dir: string;
let buffer: LevelBuffer;
const intakes: FileIntake[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meteorzx-files-gone-'));
  buffer = new LevelBuffer({ dataDir: join(dir, 'data'), id: 'host-1', durability: 'os', commitIntervalMs: 1 });
  await buffer.open();
});

afterEach(async () => {
  for (const i of intakes.splice(0)) await i.close();
  await buffer.close();
  await rm(dir, { recursive: true, force: true });
});

function spec(path: string, over: Partial<FileSpec> = {}): FileSpec {
  return { path, format: 'line', startAt: 'beginning', type: 'log.line', maxLineBytes: 64 * 1024, ...over };
}

async function startIntake(files: FileSpec[], over: Partial<FileIntakeOptions> = {}): Promise<FileIntake> {
  const intake = new FileIntake({ files, buffer, limits: DEFAULT_LIMITS, pollMs: 10, discoverMs: 20, rotateWaitMs: 100, cwd: dir, ...over });
  intakes.push(intake);
  await intake.start();
  return intake;
}

async function stopIntake(intake: FileIntake): Promise<void> {
  await intake.close();
  intakes.splice(intakes.indexOf(intake), 1);
}

async function lines(): Promise<string[]> {
  return ((await buffer.read(0, 1_000_000)) as ChainedEvent[]).filter((e) => e.type === 'log.line').map((e) => String(e.data?.line));
}

async function waitFor(probe: () => Promise<boolean> | boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const numbered = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `line ${from + i}\n`).join('');
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `line ${from + i}`);
const idOf = async (path: string) => fileIdOf(await stat(path, { bigint: true }));

/** Every record the intake keeps: `path!` and `file!` keys, and the paths `files!paths` lists. */
async function records(): Promise<{ paths: string[]; files: string[]; index: string[] }> {
  return {
    paths: (await buffer.metaKeys('path!', 1000)).map((k) => k.slice('path!'.length)),
    files: (await buffer.metaKeys('file!', 1000)).map((k) => k.slice('file!'.length)).sort(),
    index: JSON.parse((await buffer.getMeta(INDEX_KEY)) ?? '[]') as string[],
  };
}

describe('confirmGone', () => {
  it('calls gone only what two looks in a row missed; a look that finds it, or did not check it, clears nothing it did not see', () => {
    const missing = new Set<string>();
    expect(confirmGone(['a', 'b', 'c'], new Set(['a']), missing)).toEqual([]);
    expect([...missing].sort()).toEqual(['b', 'c']);
    // b found again: no longer suspect; c missed again: gone; d missed once.
    expect(confirmGone(['a', 'b', 'c', 'd'], new Set(['a', 'b']), missing)).toEqual(['c']);
    expect([...missing].sort()).toEqual(['d']);
    // A look that could not check d (a failed listing) keeps it suspect; the next miss confirms it.
    expect(confirmGone(['a'], new Set(['a']), missing)).toEqual([]);
    expect(confirmGone(['d'], new Set(), missing)).toEqual(['d']);
    expect(missing.size).toBe(0);
  });
});

describe('pathOfRecord', () => {
  it('ties a record to the path it was read under, or to the path whose rotated generation its name is', () => {
    const paths = ['/l/app.log', '/l/app.log.1', '/l/other.log', '/m/app.log'];
    expect(pathOfRecord('/l/app.log', paths)).toBe('/l/app.log');
    expect(pathOfRecord('/l/app.log-20260101', paths)).toBe('/l/app.log');
    expect(pathOfRecord('/l/app.log.1.2', paths)).toBe('/l/app.log.1');
    expect(pathOfRecord('/l/app.logger.txt', paths)).toBeUndefined();
    expect(pathOfRecord('/l/app.log.2.gz', paths)).toBeUndefined();
    expect(pathOfRecord('/n/app.log.1', paths)).toBeUndefined();
  });
});

describe('GoneRecords', () => {
  function host(paths: Map<string, WatchedPath>, literals: string[] = [], meta = new Map<string, string>()) {
    const commits: { paths: string[]; ops: readonly ExtraOp[] }[] = [];
    const index = new PathIndex();
    for (const p of paths.keys()) index.add(p);
    index.written(index.version);
    const gone = new GoneRecords({
      paths,
      openFiles: new Map<string, TrackedFile>(),
      resume: { intake: 'files', getMeta: (key) => Promise.resolve(meta.get(key)), open: new Map(), now: Date.now, notice: () => undefined },
      index,
      literals: new Set(literals),
      now: Date.now,
      commit: (written, ops) => {
        commits.push({ paths: written.map((wp) => wp.path), ops: [...ops, ...index.extra()] });
        index.written(index.version);
        return Promise.resolve();
      },
      forgotten: () => undefined,
    });
    return { gone, commits };
  }

  it('forgets an idle path only when two looks in a row miss it; one that comes back between them is kept', async () => {
    const log = join(dir, 'app-1.log');
    const wp = new WatchedPath(log, spec(log));
    wp.lookForGone = true;
    const paths = new Map([[log, wp]]);
    const { gone, commits } = host(paths);
    await gone.lookAll(); // missed once
    await writeFile(log, 'back\n');
    await gone.lookAll(); // the path is back: not gone
    await unlink(log);
    wp.lookForGone = true; // as when its file finished
    await gone.lookAll(); // missed once again: the look before found it
    expect(paths.has(log)).toBe(true);
    expect(commits).toEqual([]);
    await gone.lookAll();
    expect(paths.has(log)).toBe(false);
    expect(commits).toEqual([{ paths: [], ops: [{ key: pathKey(log), value: null }, { key: INDEX_KEY, value: '[]' }] }]);
  });

  it('keeps a gone path while a finished generation of it is on disk; forgets it once the generation is gone too', async () => {
    const log = join(dir, 'app-3.log');
    await writeFile(`${log}.1`, 'rotated\n');
    const rotated = await idOf(`${log}.1`);
    const wp = new WatchedPath(log, spec(log));
    wp.done.add(rotated);
    wp.done.add('7:70');
    wp.lookForGone = true;
    const paths = new Map([[log, wp]]);
    // The generation's own record, which a look needs to find it as itself.
    const fh = await open(`${log}.1`, 'r');
    const record: FileRecord = { path: `${log}.1`, offset: 8, size: 8, fp: await fingerprint(fh, 8) };
    await fh.close();
    const { gone, commits } = host(paths, [], new Map([[fileKey(rotated), JSON.stringify(record)]]));
    for (let i = 0; i < 4; i++) await gone.lookAll();
    // 7:70 (not on disk) went at the second look; app-3.log.1 keeps its record, and the path its own.
    expect(commits).toEqual([{ paths: [log], ops: [{ key: fileKey('7:70'), value: null }] }]);
    expect(paths.has(log)).toBe(true);
    expect([...wp.done]).toEqual([rotated]);
    await unlink(`${log}.1`);
    wp.lookForGone = true; // as the minute look, or a rotation
    await gone.lookAll(); // the generation missed once
    await gone.lookAll(); // missed twice: its record goes; the path missed once
    expect(commits[1]).toEqual({ paths: [log], ops: [{ key: fileKey(rotated), value: null }] });
    expect(paths.has(log)).toBe(true);
    await gone.lookAll();
    expect(paths.has(log)).toBe(false);
    expect(commits[2]).toEqual({ paths: [], ops: [{ key: pathKey(log), value: null }, { key: INDEX_KEY, value: '[]' }] });
  });

  it('forgets a path whose directory was removed with a finished generation in it', async () => {
    const sub = join(dir, 'app');
    await mkdir(sub);
    const log = join(sub, 'app-4.log');
    await writeFile(`${log}.1`, 'rotated\n');
    const rotated = await idOf(`${log}.1`);
    const wp = new WatchedPath(log, spec(log));
    wp.done.add(rotated);
    const paths = new Map([[log, wp]]);
    const { gone, commits } = host(paths);
    await rm(sub, { recursive: true });
    wp.lookForGone = true;
    for (let i = 0; i < 3; i++) await gone.lookAll();
    expect(paths.has(log)).toBe(false);
    expect(commits.map((c) => c.ops.map((o) => o.key))).toEqual([[fileKey(rotated)], [pathKey(log), INDEX_KEY]]);
  });

  it('keeps a path the configuration names literally, and one with a file still to read', async () => {
    const literal = join(dir, 'audit.log');
    const reading = join(dir, 'app-2.log');
    const a = new WatchedPath(literal, spec(literal));
    const b = new WatchedPath(reading, spec(reading));
    b.draining.push({ id: '1:2' } as TrackedFile);
    a.lookForGone = b.lookForGone = true;
    const paths = new Map([
      [literal, a],
      [reading, b],
    ]);
    const { gone, commits } = host(paths, [literal]);
    for (let i = 0; i < 4; i++) await gone.lookAll();
    expect(commits).toEqual([]);
    expect([...paths.keys()]).toEqual([literal, reading]);
  });
});

describe('FileIntake: records of paths gone for good', () => {
  it('deletes the path, index and file records of dated files once they are read and deleted', async () => {
    const names = ['app-2026-01-01.log', 'app-2026-01-02.log', 'app-2026-01-03.log'];
    for (const [i, name] of names.entries()) await writeFile(join(dir, name), numbered(i * 10 + 1, i * 10 + 3));
    await startIntake([spec('*.log')]);
    await waitFor(async () => (await lines()).length === 9, '9 lines');
    expect((await records()).paths).toHaveLength(3);
    for (const name of names) await unlink(join(dir, name));
    await waitFor(async () => (await records()).paths.length === 0, 'the path records deleted');
    expect(await records()).toEqual({ paths: [], files: [], index: [] });
    expect((await lines()).sort()).toEqual([...range(1, 3), ...range(11, 13), ...range(21, 23)].sort());
  });

  it('keeps the records of a deleted path while a rotated generation is on disk: renamed back, it is not read again; once all is gone, the path is forgotten', async () => {
    const log = join(dir, 'app-7.log');
    await writeFile(log, numbered(1, 2));
    await startIntake([spec('*.log')]);
    await waitFor(async () => (await lines()).length === 2, '2 lines');
    await rename(log, `${log}.1`);
    const rotated = await idOf(`${log}.1`);
    await writeFile(log, numbered(3, 4));
    await waitFor(async () => parsePathRecord(await buffer.getMeta(pathKey(log)))?.done?.length === 1, 'the rotated file finished');
    await unlink(log);
    await waitFor(async () => (await records()).files.length === 1, 'the record of the deleted file deleted');
    await new Promise((r) => setTimeout(r, 300));
    expect(await records()).toEqual({ paths: [log], files: [rotated], index: [log] });
    // Renamed back to the path: the file read before, resumed at its end.
    await rename(`${log}.1`, log);
    await new Promise((r) => setTimeout(r, 300));
    await appendFile(log, numbered(5, 5));
    await waitFor(async () => (await lines()).length >= 5, '5 lines');
    await new Promise((r) => setTimeout(r, 100));
    expect(await lines()).toEqual(range(1, 5));
    // Deleted with no generation left: forgotten; back, a new file read from its start.
    await unlink(log);
    await waitFor(async () => (await records()).paths.length === 0, 'the path forgotten');
    expect(await records()).toEqual({ paths: [], files: [], index: [] });
    await writeFile(log, numbered(6, 7));
    await waitFor(async () => (await lines()).length >= 7, '7 lines');
    await new Promise((r) => setTimeout(r, 100));
    expect(await lines()).toEqual(range(1, 7));
  });

  it('keeps the records of a deleted path while a rotated generation has lines to read, across a restart, then forgets it once the generation is deleted', async () => {
    const log = join(dir, 'app-8.log');
    const pad = 'x'.repeat(1000);
    const padded = range(1, 1000).map((l) => `${l} ${pad}`);
    await writeFile(log, padded.map((l) => `${l}\n`).join(''));
    // A read takes 64 KiB (64 of these lines), appended ten lines at a time, each append a little slow: the
    // looks run between reads while lines are left to read.
    const slow = Object.assign(Object.create(buffer) as LevelBuffer, {
      append: async (...args: Parameters<LevelBuffer['append']>) => {
        if (args[0].length > 0) await new Promise((r) => setTimeout(r, 5));
        return buffer.append(...args);
      },
    });
    const first = await startIntake([spec('*.log')], { maxBatchLines: 10, buffer: slow });
    await waitFor(async () => (await lines()).length >= 20, 'some lines');
    await rename(log, `${log}.1`);
    await waitFor(async () => parsePathRecord(await buffer.getMeta(pathKey(log)))?.current === undefined, 'the rotation seen');
    await new Promise((r) => setTimeout(r, 150));
    await stopIntake(first);
    expect((await lines()).length).toBeLessThan(1000);
    expect(parsePathRecord(await buffer.getMeta(pathKey(log)))?.draining).toEqual([await idOf(`${log}.1`)]);
    expect((await records()).index).toEqual([log]);
    let skew = 0;
    await startIntake([spec('*.log')], { maxBatchLines: 10, now: () => Date.now() + skew });
    await waitFor(async () => (await lines()).length === 1000, 'every line read');
    // Read: its record stays while app-8.log.1 is on disk, and goes with it.
    await new Promise((r) => setTimeout(r, 300));
    expect(await records()).toEqual({ paths: [log], files: [await idOf(`${log}.1`)], index: [log] });
    await unlink(`${log}.1`);
    skew += 61_000; // deleted by hand: the look once a minute finds it gone
    await waitFor(async () => (await records()).paths.length === 0, 'the path forgotten once read and deleted');
    expect(await lines()).toEqual(padded);
    expect(await records()).toEqual({ paths: [], files: [], index: [] });
  });

  it('keeps the path record of a path the configuration names, and reads it from its start when it comes back', async () => {
    const log = join(dir, 'audit.log');
    await writeFile(log, numbered(1, 2));
    await startIntake([spec('audit.log')]);
    await waitFor(async () => (await lines()).length === 2, '2 lines');
    await unlink(log);
    await waitFor(async () => (await records()).files.length === 0, 'the deleted file finished');
    await new Promise((r) => setTimeout(r, 200));
    expect(await records()).toEqual({ paths: [log], files: [], index: [log] });
    await writeFile(log, numbered(3, 4));
    await waitFor(async () => (await lines()).length >= 4, '4 lines');
    expect(await lines()).toEqual(range(1, 4));
  });

  it('forgets a path whose file was deleted while the agent was down', async () => {
    const log = join(dir, 'app-9.log');
    await writeFile(log, numbered(1, 2));
    const first = await startIntake([spec('*.log')]);
    await waitFor(async () => (await lines()).length === 2, '2 lines');
    await stopIntake(first);
    await unlink(log);
    await startIntake([spec('*.log')]);
    await waitFor(async () => (await records()).paths.length === 0, 'the path forgotten');
    expect(await records()).toEqual({ paths: [], files: [], index: [] });
  });
});

describe('FileIntake: records an earlier agent left', () => {
  const put = (ops: ExtraOp[]) => buffer.append([], ops);
  const pathRecord = (r: PathRecord): string => JSON.stringify(r);
  const fileRecord = (path: string, offset = 10): string => JSON.stringify({ path, offset, size: offset, fp: { len: 0, sha: '' } } satisfies FileRecord);

  it('finds them at start and deletes those of gone files and gone paths, keeping those of files on disk', async () => {
    const log = join(dir, 'app.log');
    await writeFile(log, numbered(1, 2));
    await writeFile(`${log}.1`, numbered(100, 101));
    const other = join(dir, 'other.txt');
    await writeFile(other, 'not followed\n');
    const onDisk = await idOf(`${log}.1`);
    const fh = await open(`${log}.1`, 'r');
    const fp = await fingerprint(fh, 1024);
    await fh.close();
    const size = Buffer.byteLength(numbered(100, 101));
    await put([
      { key: INDEX_KEY, value: JSON.stringify([log]) },
      // Dropped from the index once idle, path record kept (a dated file deleted while the agent ran).
      { key: pathKey(join(dir, 'old-1.log')), value: pathRecord({ draining: [], checkedAt: 1, done: ['9:1'] }) },
      { key: fileKey('9:1'), value: fileRecord(join(dir, 'old-1.log.1')) },
      { key: pathKey(join(dir, 'old-2.log')), value: pathRecord({ draining: [], checkedAt: 1 }) },
      // Listed nowhere: finished files of agents that kept every record.
      { key: fileKey('9:2'), value: fileRecord(join(dir, 'old-2.log')) },
      { key: fileKey('9:3'), value: fileRecord(log) },
      { key: fileKey(onDisk), value: JSON.stringify({ path: `${log}.1`, offset: size, size, fp } satisfies FileRecord) },
      // A path that exists and that no pattern matches, and what it lists: left alone.
      { key: pathKey(other), value: pathRecord({ draining: [], current: '9:4' }) },
      { key: fileKey('9:4'), value: fileRecord(other) },
      // Listed by nothing and tied to no path: left alone.
      { key: fileKey('9:5'), value: fileRecord('/elsewhere/x.log') },
    ]);
    await startIntake([spec('*.log')]);
    await waitFor(async () => (await records()).paths.length === 2 && !(await records()).files.includes('9:3'), 'the old records deleted');
    expect(await records()).toEqual({ paths: [log, other], files: [await idOf(log), onDisk, '9:4', '9:5'].sort(), index: [log] });
    // The generation on disk is now listed with its path, so the looks keep it while it is there.
    expect(parsePathRecord(await buffer.getMeta(pathKey(log)))?.done).toEqual([onDisk]);
    expect(await lines()).toEqual(range(1, 2));
    await appendFile(log, numbered(3, 3));
    await waitFor(async () => (await lines()).length === 3, '3 lines');
  });

  it('reads the path records a page per start: gone paths after 10,000 records no pattern matches are forgotten at the next start', async () => {
    const skipped = Array.from({ length: SWEEP_KEYS }, (_, i) => ({ key: pathKey(join(dir, 'a-other', `${String(i).padStart(5, '0')}.log`)), value: pathRecord({ draining: [], checkedAt: 1 }) }));
    const gone = [1, 2, 3].map((i) => join(dir, 'z', `gone-${i}.log`));
    await put([...skipped, ...gone.map((path) => ({ key: pathKey(path), value: pathRecord({ draining: [], checkedAt: 1 }) }))]);
    const zPaths = async () => (await buffer.metaKeys(pathKey(join(dir, 'z', '')), 10)).length;
    const first = await startIntake([spec('z/*.log')]);
    await new Promise((r) => setTimeout(r, 300));
    // The first page holds only records no pattern matches.
    expect(await zPaths()).toBe(3);
    await stopIntake(first);
    await startIntake([spec('z/*.log')]);
    await waitFor(async () => (await zPaths()) === 0, 'the gone paths after the first page forgotten');
    expect((await buffer.metaKeys('path!', SWEEP_KEYS + 10)).length).toBe(SWEEP_KEYS);
  });

  it('takes up 1,000 gone paths of a page per start; the next start reads on from the last it looked at, not from the end of the page', async () => {
    // Page 1: 1,001 gone paths a pattern matches, then records it does not; 10 more after the page.
    const gone = Array.from({ length: SWEEP_PATHS + 1 }, (_, i) => join(dir, 'g', `gone-${String(i).padStart(5, '0')}.log`));
    const others = Array.from({ length: SWEEP_KEYS - gone.length + 10 }, (_, i) => join(dir, 'o', `${String(i).padStart(5, '0')}.log`));
    await put([...gone, ...others].map((path) => ({ key: pathKey(path), value: pathRecord({ draining: [], checkedAt: 1 }) })));
    const gPaths = async () => (await buffer.metaKeys(pathKey(join(dir, 'g', '')), SWEEP_PATHS + 10)).length;
    const first = await startIntake([spec('g/*.log')]);
    await waitFor(async () => (await gPaths()) === 1, 'the first 1,000 gone paths forgotten', 30_000);
    await stopIntake(first);
    await startIntake([spec('g/*.log')]);
    // Before the fix: the cursor past the whole page, the last gone path waited for every page to be read.
    await waitFor(async () => (await gPaths()) === 0, 'the 1,001st gone path forgotten at the next start');
  });

  it('reads from the first path record again at once when no key follows the cursor any more', async () => {
    await put([
      { key: pathKey('/l/a.log'), value: pathRecord({ draining: [] }) },
      { key: SWEEP_CURSOR_KEY, value: pathKey('/l/z.log') },
    ]);
    expect(await pathRecordKeys(buffer)).toEqual({ keys: [pathKey('/l/a.log')], complete: true, cursor: { key: SWEEP_CURSOR_KEY, value: null }, paged: false });
  });

  it('follows a path of the index, or takes up a gone one, only when a configured pattern still matches it', async () => {
    await mkdir(join(dir, 'a'));
    await mkdir(join(dir, 'b'));
    const moved = join(dir, 'a', 'app.log');
    await writeFile(moved, numbered(1, 2));
    const first = await startIntake([spec('a/*.log')]);
    await waitFor(async () => (await lines()).length === 2, '2 lines');
    await stopIntake(first);
    const goneOld = join(dir, 'a', 'old.log');
    const goneNew = join(dir, 'b', 'old.log');
    await put([
      { key: pathKey(goneOld), value: pathRecord({ draining: [], checkedAt: 1 }) },
      { key: pathKey(goneNew), value: pathRecord({ draining: [], checkedAt: 1 }) },
    ]);
    // The configuration now follows b/*.log: a/app.log, still on disk and in the index, is no longer read.
    await startIntake([spec('b/*.log')]);
    await appendFile(moved, numbered(3, 4));
    await writeFile(join(dir, 'b', 'new.log'), numbered(5, 5));
    await waitFor(async () => (await lines()).length >= 3, 'b/new.log read');
    // b/old.log, gone and matched, is forgotten; a/old.log, matched by nothing, is left as it was.
    await waitFor(async () => !(await records()).paths.includes(goneNew), 'b/old.log forgotten');
    await new Promise((r) => setTimeout(r, 200));
    expect(await lines()).toEqual([...range(1, 2), 'line 5']);
    expect((await records()).paths).toContain(goneOld);
  });

  it('follows a path gone at start, with the unread lines of its rotated file, whatever way its glob is written', async () => {
    await mkdir(join(dir, 'logs'));
    const log = join(dir, 'logs', 'app-5.log');
    await writeFile(log, numbered(1, 2));
    // A templated `${dir}/` before `/app-*.log`: the glob reads it as logs/app-*.log.
    const files = [spec('logs//app-*.log')];
    const first = await startIntake(files);
    await waitFor(async () => (await lines()).length === 2, '2 lines');
    await stopIntake(first);
    // Written to, then rotated away with nothing created at the path, while the agent was down.
    await appendFile(log, numbered(3, 4));
    await rename(log, `${log}.1`);
    await startIntake(files);
    // Before the fix: the path, in the index but matched by no pattern as written, was not followed.
    await waitFor(async () => (await lines()).length >= 4, 'the rotated file read to its end');
    await new Promise((r) => setTimeout(r, 100));
    expect(await lines()).toEqual(range(1, 4));
  });
});

describe('patternIndexer', () => {
  it('follows a file named literally whose name holds glob characters (`app (prod).log`, `app[1].log`)', async () => {
    // Read as globs, `(prod)` is a group and `[1]` a class: they match `app prod.log` and `app1.log`, never these.
    const names = ['app (prod).log', 'app[1].log'];
    for (const name of names) await writeFile(join(dir, name), 'x\n');
    const found = await discover(names, dir);
    expect([...found]).toEqual(names.map((name, i) => [join(dir, name), i]));
    const indexOf = patternIndexer(names, dir);
    expect(names.map((name) => indexOf(join(dir, name)))).toEqual([0, 1]);
  });

  it('matches every path discover finds, as the glob reads the pattern (`//`, `..`, `./`, a trailing `/`, a directory)', async () => {
    await mkdir(join(dir, 'logs', 'd1'), { recursive: true });
    await mkdir(join(dir, '.hidden'));
    for (const name of ['logs/a.log', 'logs/d1/b.log', '.hidden/c.log']) await writeFile(join(dir, name), 'x\n');
    const patterns = ['logs//*.log', 'logs/../logs/*.log', './logs/*.log', 'logs/*.log/', `${dir}//logs/*.log`, 'logs/d[0-9]', '*/d[0-9]/', '**/*.log'];
    for (const pattern of patterns) {
      const found = [...(await discover([pattern], dir)).keys()];
      expect(found.length, pattern).toBeGreaterThan(0);
      const indexOf = patternIndexer([pattern], dir);
      expect(found.map((path) => [path, indexOf(path)]), pattern).toEqual(found.map((path) => [path, 0]));
      // Not what the glob leaves out: a dot file, a file elsewhere.
      expect([indexOf(join(dir, '.hidden', 'c.log')), indexOf(join(dir, 'other', 'x.txt'))], pattern).toEqual([-1, -1]);
    }
  });
});
