import { ClassicLevel } from 'classic-level';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readdir, readFile, rm, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { verifyChain, type ChainedEvent } from '../../protocols/index.js';
import { LevelBuffer } from '../../agent/buffer/index.js';
import { blockKey } from '../../agent/buffer/keys.js';
import { openStore } from '../../agent/buffer/open-store.js';
import { resolveBufferOptions, type BufferOptions } from '../../agent/buffer/options.js';
import { bufferSuite } from '../conformance/buffer-suite.js';

async function corrupt(dataDir: string, how: 'table' | 'manifest' | 'table-middle'): Promise<void> {
  const dbDir = join(dataDir, 'buffer');
  const files = await readdir(dbDir);
  const victims = files.filter((f) => (how === 'manifest' ? /^MANIFEST-/.test(f) : /\.(ldb|sst)$/.test(f)));
  if (victims.length === 0) throw new Error(`no ${how} file to corrupt in ${files.join(', ')}`);
  for (const f of victims) {
    const { size } = await stat(join(dbDir, f));
    if (how === 'table-middle') {
      // The second quarter of the file: data blocks, with the index and footer at the end intact.
      const fh = await open(join(dbDir, f), 'r+');
      await fh.write(Buffer.alloc(Math.floor(size / 4), 0x5a), 0, Math.floor(size / 4), Math.floor(size / 4));
      await fh.close();
    } else {
      await writeFile(join(dbDir, f), Buffer.alloc(Math.max(size, 64), 0x5a));
    }
  }
}

bufferSuite('LevelBuffer', {
  create: (options) => new LevelBuffer({ ...options, commitIntervalMs: 1 }),
  sweep: (buffer) => (buffer as LevelBuffer).sweep(),
  corrupt,
  async measureOpenReads(open) {
    // Each iterator opened during open() may read at most `limit` entries; one without a limit is a scan.
    const spy = vi.spyOn(ClassicLevel.prototype, 'iterator');
    try {
      await open();
      return spy.mock.calls.reduce((n, [options]) => n + ((options as { limit?: number } | undefined)?.limit ?? Infinity), 0);
    } finally {
      spy.mockRestore();
    }
  },
});

/**
 * For the tests below: a temp dir per test, `make()` opens a LevelBuffer on
 * it; after each test the `restore` hooks run (mocks), then the buffers close
 * and the dir goes.
 */
function bufferFixture(prefix: string) {
  const fx = { dir: '', open: [] as LevelBuffer[], restore: [] as (() => void)[] };
  beforeEach(async () => {
    fx.dir = await mkdtemp(join(tmpdir(), prefix));
  });
  afterEach(async () => {
    for (const r of fx.restore.splice(0)) r();
    for (const b of fx.open.splice(0)) await b.close();
    await rm(fx.dir, { recursive: true, force: true });
  });
  const make = async (options: Partial<BufferOptions> = {}): Promise<LevelBuffer> => {
    const buffer = new LevelBuffer({ dataDir: fx.dir, id: 'agent-1', commitIntervalMs: 1, ...options });
    await buffer.open();
    fx.open.push(buffer);
    return buffer;
  };
  return { fx, make };
}

describe('LevelBuffer: damage met by a LevelDB compaction', () => {
  const { fx, make } = bufferFixture('meteorzx-buffer-compaction-');
  const pad = () => ({ type: 'test.event', data: { pad: randomBytes(200).toString('hex') } });

  /**
   * A damaged data block that no read meets stays unnoticed until LevelDB
   * compacts its table. The compaction then fails, and LevelDB refuses every
   * write from then on — after a restart too, since the reopened database
   * schedules the same compaction. This damages a buffer of 2,000 events
   * (50 delivered), then runs it over new lives, one append at a time, until
   * it reports a recovery; each life leaves its log as one more level-0 table,
   * and at four LevelDB compacts them all, the damaged one too.
   */
  async function damagedUntilRecovered(): Promise<{ buffer: LevelBuffer; epoch: string; appended: number }> {
    let buffer = await make();
    for (let n = 0; n < 20; n++) await buffer.append(Array.from({ length: 100 }, pad));
    await buffer.ack(50);
    const { epoch } = buffer.state();
    await buffer.close();
    buffer = await make(); // reopening turns the write-ahead log into a level-0 table
    await buffer.close();
    await corrupt(fx.dir, 'table-middle');
    // A block below `oldest`, as a repair leaves one whose delete was in the damaged table.
    const raw = new ClassicLevel<string, Buffer>(join(fx.dir, 'buffer'), { valueEncoding: 'buffer' });
    await raw.put(blockKey(0), Buffer.from('released long ago'));
    await raw.close();
    let appended = 0;
    for (let life = 0; life < 6 && buffer.state().recovered === undefined; life++) {
      buffer = await make();
      for (let i = 0; i < 40 && buffer.state().recovered === undefined; i++) {
        await buffer.append([pad()]);
        appended += 1;
        await new Promise((r) => setTimeout(r, 5));
      }
      if (buffer.state().recovered === undefined) await buffer.close();
    }
    return { buffer, epoch, appended };
  }

  it('repairs the database in place and keeps accepting: the damaged run becomes a gap, the rest is kept', async () => {
    const damaged = await damagedUntilRecovered();
    const { epoch, appended } = damaged;
    let { buffer } = damaged;
    expect(buffer.state().recovered).toMatch(/compaction met a damaged table; repaired in place/);
    // The damaged bytes are kept, beside the repaired store.
    const [kept] = (await readdir(fx.dir)).filter((e) => e.startsWith('buffer.corrupt-'));
    expect(buffer.state().recovered).toContain(join(fx.dir, kept ?? '?'));
    const keptTables = (await readdir(join(fx.dir, kept ?? '?'))).filter((f) => f.endsWith('.ldb'));
    const keptDamage = await Promise.all(keptTables.map(async (f) => (await readFile(join(fx.dir, kept ?? '?', f))).includes(Buffer.alloc(64, 0x5a))));
    expect(keptDamage).toContain(true);
    const read: ChainedEvent[] = await buffer.read(50, 1_000_000);
    const { head } = buffer.state(); // the read appended the gap events
    const gaps = read.filter((e) => e.type === 'meteorzx.gap').map((e) => e.data as { from: number; to: number; reason: string });
    expect(gaps.length).toBeGreaterThan(0);
    expect(gaps.every((g) => g.reason === 'buffer-corrupt')).toBe(true);
    // Same epoch; what was read and what the gaps name are disjoint and together exactly 51 … the head.
    expect(read.every((e) => e.epoch === epoch)).toBe(true);
    const covered = read.filter((e) => e.type !== 'meteorzx.gap').map((e) => e.seq);
    for (const g of gaps) for (let s = g.from; s <= g.to; s++) covered.push(s);
    const gapSeqs = read.filter((e) => e.type === 'meteorzx.gap').map((e) => e.seq);
    expect([...covered, ...gapSeqs].sort((a, b) => a - b)).toEqual(Array.from({ length: head - 50 }, (_, i) => i + 51));
    // Only the damaged run is lost: every append made after the damage is there.
    expect(read.filter((e) => e.type === 'test.event' && e.seq > 2000)).toHaveLength(appended);
    await buffer.append([pad()]);
    await buffer.close();
    buffer = await make();
    await buffer.append([pad()]);
    expect(buffer.state()).toMatchObject({ epoch, head: head + 2 });
    // The block below `oldest` is gone with the repair.
    await buffer.close();
    const raw = new ClassicLevel<string, Buffer>(join(fx.dir, 'buffer'), { valueEncoding: 'buffer' });
    expect(await raw.get(blockKey(0))).toBeUndefined();
    await raw.close();
  });

  it('replaces the store with a new epoch when the repair does not stop the failures', async () => {
    // A repair that mends nothing: the reopened store meets the same damage.
    const repair = vi.spyOn(ClassicLevel, 'repair').mockResolvedValue(undefined);
    try {
      const { buffer, epoch } = await damagedUntilRecovered();
      await vi.waitFor(
        async () => {
          await buffer.append([pad()]);
          expect(buffer.state().epoch).not.toBe(epoch);
        },
        { timeout: 10_000, interval: 20 },
      );
      expect(buffer.state().recovered).toMatch(/moved to .*buffer\.corrupt-.*, new epoch/);
      await buffer.append([pad()]);
      const events = await buffer.read(0, 1_000_000);
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
      expect(events.every((e) => e.epoch === buffer.state().epoch)).toBe(true);
      expect(events.filter((e) => e.type === 'meteorzx.gap').map((e) => e.data)).toEqual([
        expect.objectContaining({ reason: 'buffer-corrupt', lostEpoch: epoch }),
      ]);
    } finally {
      repair.mockRestore();
    }
  });
});

describe('LevelBuffer: a crash while a corrupt store is replaced', () => {
  const { fx, make } = bufferFixture('meteorzx-buffer-replace-crash-');

  it('the new epoch is created with its buffer-corrupt gap: a crash right after the replacement cannot lose it', async () => {
    let buffer = await make();
    await buffer.append(Array.from({ length: 20 }, (_, i) => ({ type: 'test.event', data: { i } })));
    await buffer.ack(5);
    await buffer.close();
    buffer = await make(); // reopening turns the write-ahead log into a table file
    await buffer.close();
    await corrupt(fx.dir, 'table');
    // What LevelBuffer.open() does first; the process dies right after it, before anything else is written.
    const opened = await openStore(resolveBufferOptions({ dataDir: fx.dir, id: 'agent-1' }), join(fx.dir, 'buffer'));
    expect(opened.lost).toBeDefined();
    await opened.db.close();
    buffer = await make();
    const events = await buffer.read(0, 100);
    expect(events.map((e) => e.type)).toEqual(['meteorzx.gap']);
    const [movedTo] = (await readdir(fx.dir)).filter((e) => e.startsWith('buffer.corrupt-'));
    expect(events[0]).toMatchObject({ seq: 1, epoch: buffer.state().epoch, data: { reason: 'buffer-corrupt', movedTo: join(fx.dir, movedTo ?? '?') } });
    expect(buffer.state().recovered).toBeUndefined(); // this life found a sound store
  });

  it('a crash after the corrupt store is moved aside, before the new epoch is written: the next open writes its gap', async () => {
    let buffer = await make();
    await buffer.append(Array.from({ length: 20 }, (_, i) => ({ type: 'test.event', data: { i } })));
    await buffer.ack(5);
    const lostEpoch = buffer.state().epoch;
    await buffer.close();
    buffer = await make(); // reopening turns the write-ahead log into a table file
    await buffer.close();
    await corrupt(fx.dir, 'manifest'); // the tables stay readable: the moved copy still tells what it lost
    // The replacement stops for good in the repair of the moved copy, as a process killed there does.
    const repair = vi.spyOn(ClassicLevel, 'repair').mockImplementation(() => new Promise<void>(() => undefined));
    void openStore(resolveBufferOptions({ dataDir: fx.dir, id: 'agent-1' }), join(fx.dir, 'buffer'));
    const movedAside = async () => (await readdir(fx.dir)).filter((e) => e.startsWith('buffer.corrupt-'));
    while ((await movedAside()).length === 0 || repair.mock.calls.length === 0) await new Promise((r) => setImmediate(r));
    repair.mockRestore();
    expect(await readdir(fx.dir)).not.toContain('buffer');
    buffer = await make();
    const [movedTo] = await movedAside();
    const events = await buffer.read(0, 100);
    expect(events.map((e) => e.type)).toEqual(['meteorzx.gap']);
    expect(events[0]).toMatchObject({
      seq: 1,
      epoch: buffer.state().epoch,
      data: { reason: 'buffer-corrupt', lostEpoch, from: 6, to: 20, count: 15, movedTo: join(fx.dir, movedTo ?? '?') },
    });
    expect(buffer.state().recovered).toMatch(/moved to .*buffer\.corrupt-.*, new epoch/);
    // Finished once: the next life starts on that epoch with nothing more to record.
    const epoch = buffer.state().epoch;
    await buffer.close();
    buffer = await make();
    expect(buffer.state()).toMatchObject({ epoch, head: 1 });
    expect(buffer.state().recovered).toBeUndefined();
  });
});

describe('LevelBuffer: damage at the front of a full buffer', () => {
  const { fx, make } = bufferFixture('meteorzx-buffer-front-hole-');
  const maxBytes = 3000;
  const pad = (i: number) => ({ type: 'test.event', data: { i, pad: randomBytes(60).toString('hex') } });
  const appendUntilRefused = async (buffer: LevelBuffer): Promise<string | undefined> => {
    for (let i = 0; i < 100; i++) {
      const code = await buffer.append([pad(i)]).then(() => undefined, (e: { code?: string }) => e.code ?? 'no code');
      if (code !== undefined) return code;
    }
    return undefined;
  };
  /** Runs `fn` on the database of the closed buffer. */
  async function raw<T>(fn: (db: ClassicLevel<string, Buffer>) => Promise<T>): Promise<T> {
    const db = new ClassicLevel<string, Buffer>(join(fx.dir, 'buffer'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  }

  it('a full block-policy buffer still refuses once its front block is a hole, and no commit loop spins', async () => {
    let buffer = await make({ maxBytes, whenFull: 'block' });
    await buffer.append([pad(0), pad(1), pad(2)]);
    expect(await appendUntilRefused(buffer)).toBe('METEORZX_BUFFER_FULL');
    await buffer.close();
    // Block 1-3's body overwritten, its header intact: it is there, but does not inflate.
    const damaged = Buffer.from((await raw((db) => db.get(blockKey(1)))) ?? []).fill(0x5a, 20);
    await raw((db) => db.put(blockKey(1), damaged));
    buffer = await make({ maxBytes, whenFull: 'block' });
    fx.open.pop(); // closed below, within a deadline: a spinning commit queue never lets close() resolve
    await buffer.read(0, 10); // meets block 1-3: a hole with a gap; oldest and delivered move past it
    expect(buffer.state()).toMatchObject({ oldest: 4, delivered: 3 });
    const batch = vi.spyOn(ClassicLevel.prototype, 'batch');
    fx.restore.push(() => batch.mockRestore());
    const refused = await appendUntilRefused(buffer);
    const batches = batch.mock.calls.length;
    await new Promise((r) => setTimeout(r, 300));
    const idleBatches = batch.mock.calls.length - batches;
    const closed = await Promise.race([buffer.close().then(() => 'closed'), new Promise((r) => setTimeout(() => r('close() hangs'), 2000))]);
    expect({ refused, idleBatches, closed }).toEqual({ refused: 'METEORZX_BUFFER_FULL', idleBatches: 0, closed: 'closed' });
    // The damaged block, now below oldest, was deleted once its hole was recorded. Should one still be
    // there (a repair brings it back), a restart seeks the oldest block from oldest, not from seq 1.
    expect(await raw((db) => db.get(blockKey(1)))).toBeUndefined();
    await raw((db) => db.put(blockKey(1), damaged));
    buffer = await make({ maxBytes, whenFull: 'block' });
    expect(buffer.state().oldest).toBe(4);
    expect(await appendUntilRefused(buffer)).toBe('METEORZX_BUFFER_FULL');
  });
});

describe('LevelBuffer: acks and damage reports queued while a commit replaces the store', () => {
  const { fx, make } = bufferFixture('meteorzx-buffer-epoch-race-');
  const evs = (n: number) => Array.from({ length: n }, (_, i) => ({ type: 'test.event', data: { i } }));
  const corruption = () => Object.assign(new Error('Corruption: bad block type'), { code: 'LEVEL_CORRUPTION' });

  /**
   * The next two writes fail as corruption, and LevelDB's repair mends
   * nothing, so the running commit ends in a new epoch (repair, then
   * replace). `during` runs while that commit is in its first write, before
   * the epoch changes: what it queues goes into the next commit.
   */
  function replacedDuring(during: () => void) {
    let failures = 2;
    const batch = ClassicLevel.prototype.batch;
    const batchSpy = vi.spyOn(ClassicLevel.prototype, 'batch').mockImplementation(function (this: ClassicLevel, ...args: unknown[]) {
      if (args.length > 0 && failures > 0) {
        if (failures-- === 2) during();
        return Promise.reject(corruption());
      }
      return (batch as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof batch);
    const repairSpy = vi.spyOn(ClassicLevel, 'repair').mockResolvedValue(undefined);
    fx.restore.push(() => batchSpy.mockRestore(), () => repairSpy.mockRestore());
  }

  it('an ack of the old epoch is not applied to the new one: its events stay undelivered', async () => {
    const buffer = await make();
    await buffer.append(evs(20));
    const { epoch } = buffer.state();
    let ack: Promise<void> | undefined;
    replacedDuring(() => void (ack = buffer.ack(15)));
    const [first] = await buffer.append(evs(1));
    await ack;
    await buffer.append(evs(3));
    expect(buffer.state().epoch).not.toBe(epoch);
    expect(first?.epoch).toBe(buffer.state().epoch);
    // Seq 15 of the old epoch was acked; in the new one nothing has been sent.
    expect(buffer.state().delivered).toBe(0);
    const events = await buffer.read(0, 100);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(events.filter((e) => e.type === 'meteorzx.gap').map((e) => e.data)).toEqual([
      expect.objectContaining({ reason: 'buffer-corrupt', lostEpoch: epoch, from: 1, to: 20 }),
    ]);
  });

  it('a repaired store that refuses even the deletion of blocks below oldest is replaced: the commit lands in the new epoch', async () => {
    const buffer = await make();
    await buffer.append(evs(20));
    const { epoch } = buffer.state();
    replacedDuring(() => {});
    // The reopened store's compaction has already failed by the time the repair deletes below oldest.
    const clear = vi.spyOn(ClassicLevel.prototype, 'clear').mockRejectedValueOnce(corruption());
    fx.restore.push(() => clear.mockRestore());
    const [first] = await buffer.append(evs(1));
    expect(clear).toHaveBeenCalled();
    expect(first?.epoch).not.toBe(epoch);
    expect(buffer.state()).toMatchObject({ epoch: first?.epoch, head: 2 });
  });

  it('an ack that names another epoch changes nothing', async () => {
    const buffer = await make();
    await buffer.append(evs(20));
    await buffer.ack(5, 'some-earlier-epoch');
    expect(buffer.state().delivered).toBe(0);
    await buffer.ack(5, buffer.state().epoch);
    expect(buffer.state().delivered).toBe(5);
  });

  it('an unreadable range found in the old epoch does not punch a hole in the new one', async () => {
    const buffer = await make();
    await buffer.append(evs(20));
    const { epoch } = buffer.state();
    let repair: Promise<void> | undefined;
    const queue = (buffer as unknown as { queue: { repair(r: object): Promise<void> } }).queue;
    replacedDuring(() => void (repair = queue.repair({ from: 1, to: 3, bytes: 0, error: 'bad block', epoch })));
    await buffer.append(evs(1));
    await repair;
    await buffer.append(evs(3));
    expect(buffer.state().epoch).not.toBe(epoch);
    const events = await buffer.read(0, 100);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(events.filter((e) => e.type === 'meteorzx.gap')).toHaveLength(1);
    expect(buffer.state()).toMatchObject({ delivered: 0, oldest: 1 });
  });
});

describe('LevelBuffer: a write refused for an I/O error (a full disk)', () => {
  const { fx, make } = bufferFixture('meteorzx-buffer-io-');
  const evs = (n: number) => Array.from({ length: n }, (_, i) => ({ type: 'test.event', data: { i } }));
  const ioError = () => Object.assign(new Error('IO error: /x/000013.ldb: No space left on device'), { code: 'LEVEL_IO_ERROR' });

  /**
   * As LevelDB does: once a write fails, that handle refuses every later
   * write, even after the disk has room again; a newly opened handle writes.
   * `failWrites()` makes the next write fail; `failOpensFor(ms)` every open for that long.
   */
  function stickyFailures() {
    const broken = new WeakSet<object>();
    let failNext = false;
    let opensFailUntil = 0;
    const batch = ClassicLevel.prototype.batch;
    const openDb = ClassicLevel.prototype.open;
    const batchSpy = vi.spyOn(ClassicLevel.prototype, 'batch').mockImplementation(function (this: ClassicLevel, ...args: unknown[]) {
      if (args.length > 0 && failNext) {
        failNext = false;
        broken.add(this);
      }
      if (args.length > 0 && broken.has(this)) return Promise.reject(ioError());
      return (batch as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof batch);
    const openSpy = vi.spyOn(ClassicLevel.prototype, 'open').mockImplementation(function (this: ClassicLevel, ...args: unknown[]) {
      if (Date.now() < opensFailUntil) return Promise.reject(ioError());
      return (openDb as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof openDb);
    fx.restore.push(() => batchSpy.mockRestore(), () => openSpy.mockRestore());
    return {
      failWrites: () => void (failNext = true),
      failOpensFor: (ms: number) => void (opensFailUntil = Date.now() + ms),
    };
  }

  it('retries the write on a reopened database: the append succeeds, seqs and chain go on', async () => {
    const disk = stickyFailures();
    const buffer = await make();
    await buffer.append(evs(5));
    disk.failWrites();
    const appended = await buffer.append(evs(3));
    expect(appended.map((e) => e.seq)).toEqual([6, 7, 8]);
    await buffer.append(evs(2));
    const events = await buffer.read(0, 100);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(verifyChain(events).breaks).toEqual([]);
    expect(buffer.state().recovered).toBeUndefined(); // nothing was lost or damaged
  });

  it('a database that cannot be opened again (the disk still full) is retried in the background until it opens', async () => {
    const disk = stickyFailures();
    const buffer = await make();
    await buffer.append(evs(5));
    disk.failWrites();
    disk.failOpensFor(1500);
    const since = Date.now();
    await expect(buffer.append(evs(3))).rejects.toMatchObject({ code: 'METEORZX_BUFFER_WRITE_FAILED' });
    await expect(buffer.append(evs(1))).rejects.toMatchObject({ code: 'METEORZX_BUFFER_CLOSED' });
    // The status says why (GET /v1/status), until the database is open again.
    expect(buffer.state().writeError).toMatch(/^group commit failed: .*No space left on device/);
    // Retries after 1 s (fails: the disk is still full), then 2 s later (opens): no append needed.
    await vi.waitFor(() => expect(buffer.state().writeError).toBeUndefined(), { timeout: 8000, interval: 50 });
    expect(Date.now() - since).toBeGreaterThanOrEqual(2500);
    await expect(buffer.append(evs(3))).resolves.toHaveLength(3);
    const events = await buffer.read(0, 100);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(verifyChain(events).breaks).toEqual([]);
  });
});

describe('LevelBuffer: an append that cannot be chained', () => {
  const { make } = bufferFixture('meteorzx-buffer-unchainable-');

  it('fails alone: the appends sharing its group commit are stored, and the chain runs on without it', async () => {
    const buffer = await make({ commitIntervalMs: 50 });
    // Infinity has no JSON form; validation keeps it out, so only a caller that skips validation can send one.
    const settled = await Promise.allSettled([
      buffer.append([{ type: 'a' }]),
      buffer.append([{ type: 'b.1' }, { type: 'b.2', data: { n: Infinity } }]),
      buffer.append([{ type: 'c' }], [{ key: 'cursor', value: '7' }]),
    ]);
    expect(settled.map((s) => (s.status === 'fulfilled' ? s.value.map((e) => e.seq) : (s.reason as { code?: string }).code))).toEqual([
      [1],
      'METEORZX_EVENT_UNSTORABLE',
      [2],
    ]);
    // The refusal names the event, so a reading intake can put a record in its place instead of retrying for ever.
    const refusal = (settled[1] as PromiseRejectedResult).reason as { rejected: { index: number; error: string }[] };
    expect(refusal.rejected).toEqual([{ index: 1, error: expect.stringMatching(/^event cannot be stored: cannot canonicalize/) as string }]);
    const stored = await buffer.read(0, 100);
    expect(stored.map((e) => e.type)).toEqual(['a', 'c']);
    expect(verifyChain(stored).breaks).toEqual([]);
    expect(await buffer.getMeta('cursor')).toBe('7');
    expect(buffer.state().head).toBe(2);
  });
});

describe('LevelBuffer: opened under another agent id', () => {
  const { fx, make } = bufferFixture('meteorzx-buffer-renamed-');

  it('goes on in its epoch after a chained gap event naming the seqs sent under the old id, once', async () => {
    const first = await make({ id: 'host-a' });
    await first.append([{ type: 'a.1' }, { type: 'a.2' }, { type: 'a.3' }]);
    const epoch = first.state().epoch;
    await first.close();
    fx.open.splice(0);
    const second = await make({ id: 'host-b' });
    await second.append([{ type: 'b.1' }]);
    const events = await second.read(0, 100);
    expect(events.map((e) => [e.seq, e.agent, e.type])).toEqual([
      [1, 'host-a', 'a.1'],
      [2, 'host-a', 'a.2'],
      [3, 'host-a', 'a.3'],
      [4, 'host-b', 'meteorzx.gap'],
      [5, 'host-b', 'b.1'],
    ]);
    expect(events[3]?.data).toEqual({ reason: 'agent-renamed', from: 1, to: 3, count: 3, renamedFrom: 'host-a' });
    expect(new Set(events.map((e) => e.epoch))).toEqual(new Set([epoch]));
    // Linked on: the gap event's prev is the old id's last hash; each id's part verifies as a chain.
    expect(events[3]?.prev).toBe(events[2]?.hash);
    expect(verifyChain(events.slice(0, 3)).breaks).toEqual([]);
    expect(verifyChain(events.slice(3)).breaks).toEqual([]);
    await second.close();
    fx.open.splice(0);
    // Opened again under the same id: nothing more.
    const third = await make({ id: 'host-b' });
    expect(third.state().head).toBe(5);
  });

  it('a store written before the id was kept takes the configured id as its own, with no gap event', async () => {
    const first = await make({ id: 'host-a' });
    await first.append([{ type: 'a.1' }]);
    await first.close();
    fx.open.splice(0);
    const db = new ClassicLevel(join(fx.dir, 'buffer'));
    await db.del('m!agent');
    await db.close();
    const second = await make({ id: 'host-c' });
    expect(second.state().head).toBe(1);
    await second.close();
    fx.open.splice(0);
    const third = await make({ id: 'host-c' });
    expect(third.state().head).toBe(1);
  });
});

describe('LevelBuffer: events too large once stored', () => {
  const { make } = bufferFixture('meteorzx-buffer-too-large-');

  it('refuses only the append holding them, naming every such event by position; the appends sharing its commit are stored', async () => {
    // `1e20` is 4 characters as sent and 21 in canonical JSON: 200 of them add 3,400 bytes the intake never saw.
    const big = { type: 'b.big', data: { n: Array.from({ length: 200 }, () => 1e20) } };
    const buffer = await make({ commitIntervalMs: 50, maxLineBytes: 4096 });
    const settled = await Promise.allSettled([
      buffer.append([{ type: 'a' }]),
      buffer.append([{ type: 'b.1' }, big, { type: 'b.3' }, big]),
      buffer.append([{ type: 'c' }], [{ key: 'cursor', value: '7' }]),
    ]);
    const outcome = settled.map((s) =>
      s.status === 'fulfilled' ? s.value.map((e) => e.seq) : { code: (s.reason as { code?: string }).code, rejected: (s.reason as { rejected?: { index: number }[] }).rejected?.map((r) => r.index) },
    );
    expect(outcome).toEqual([[1], { code: 'METEORZX_EVENT_TOO_LARGE', rejected: [1, 3] }, [2]]);
    const reason = (settled[1] as PromiseRejectedResult).reason as { rejected: { error: string }[] };
    expect(reason.rejected[0]?.error).toMatch(/^event is \d+ bytes once stored .* over the limit of 4096/);
    const stored = await buffer.read(0, 100);
    expect(stored.map((e) => e.type)).toEqual(['a', 'c']);
    expect(verifyChain(stored).breaks).toEqual([]);
    expect(await buffer.getMeta('cursor')).toBe('7');
  });

  it('counts bytes, not characters: a line of multi-byte text over the limit is refused, one just under it is stored', async () => {
    const buffer = await make({ maxLineBytes: 4096 });
    const stored = await buffer.append([{ type: 'fits', data: { t: 'é'.repeat(1300) } }]);
    expect(Buffer.byteLength(JSON.stringify(stored[0]))).toBeLessThanOrEqual(4096);
    await expect(buffer.append([{ type: 'over', data: { t: 'é'.repeat(2000) } }])).rejects.toMatchObject({ code: 'METEORZX_EVENT_TOO_LARGE' });
    expect((await buffer.read(0, 10)).map((e) => e.type)).toEqual(['fits']);
  });
});

describe('LevelBuffer: drop-oldest deleting what the push sink holds in memory', () => {
  const { make } = bufferFixture('meteorzx-buffer-held-');
  const pad = () => ({ type: 'test.event', data: { pad: randomBytes(150).toString('hex') } });
  type Gap = { from: number; to: number; reason: string };
  const gapsIn = (events: readonly ChainedEvent[]): Gap[] => events.filter((e) => e.type === 'meteorzx.gap').map((e) => e.data as Gap);

  /** Fills the buffer while a sink holds seqs 1..10 in its window; returns every event seen, gap events included. */
  async function overflowWhileHeld(buffer: LevelBuffer): Promise<Map<number, ChainedEvent>> {
    buffer.holdInMemory(() => ({ epoch: buffer.state().epoch, upTo: 10 }));
    const seen = new Map<number, ChainedEvent>();
    for (let i = 0; i < 60; i++) {
      await buffer.append([pad(), pad()]);
      for (const e of await buffer.read(Math.max(0, ...seen.keys()), 1000)) seen.set(e.seq, e);
    }
    expect(buffer.state().oldest).toBeGreaterThan(11); // seqs 1..10 were deleted
    return seen;
  }

  it('names none of the held seqs in a gap event, and nothing more once the sink acks them', async () => {
    const buffer = await make({ maxBytes: 3000, whenFull: 'drop-oldest' });
    await buffer.append(Array.from({ length: 10 }, pad));
    const seen = await overflowWhileHeld(buffer);
    const gaps = gapsIn([...seen.values()]);
    expect(gaps.length).toBeGreaterThan(0);
    // Before: the first gap began at seq 1, naming the ten events the sink was sending.
    expect(Math.min(...gaps.map((g) => g.from))).toBe(11);
    await buffer.ack(10); // the gateway acked them
    const { head } = buffer.state();
    await buffer.close();
    const again = await make({ maxBytes: 3000, whenFull: 'drop-oldest' });
    await again.sweep(); // queued behind the commit open starts when it has ranges to name
    const after = await again.read(head, 100);
    expect(gapsIn(after)).toEqual([]);
  });

  it('names the held seqs lost at the next open when no ack passed them before the process stopped', async () => {
    const buffer = await make({ maxBytes: 3000, whenFull: 'drop-oldest' });
    await buffer.append(Array.from({ length: 10 }, pad));
    await overflowWhileHeld(buffer);
    const { head } = buffer.state();
    await buffer.close();
    const again = await make({ maxBytes: 3000, whenFull: 'drop-oldest' });
    await again.sweep(); // queued behind the commit open starts to name them
    const after = await again.read(head, 100);
    expect(gapsIn(after)).toEqual([{ from: 1, to: 10, count: 10, reason: 'buffer-full-drop-oldest' }]);
    // Named once: a second open names nothing more.
    const head2 = again.state().head;
    await again.close();
    const third = await make({ maxBytes: 3000, whenFull: 'drop-oldest' });
    await third.sweep();
    expect(await third.read(head2, 100)).toEqual([]);
  });
});
