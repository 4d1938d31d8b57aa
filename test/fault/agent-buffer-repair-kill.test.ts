import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, watch } from 'node:fs';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '../../protocols/index.js';
import { LevelBuffer } from '../../agent/buffer/index.js';

// kill -9 while LevelDB's repair runs in place on the buffer (what the agent
// does after a compaction met a damaged table): the repair moves the
// write-ahead log into lost/ once it has made a table of it, then reads every
// table, then writes the MANIFEST naming the new one. A store killed in
// between opened without the log's writes: acknowledged events gone, their
// seqs handed out again. The kill comes as the log leaves the directory, in that window.
const ROUNDS = Number(process.env.METEORZX_FAULT_ROUNDS ?? 3);
const DIST = resolve('dist/agent/buffer/level-store.js');

const CHILD = `
const { repairInPlace } = await import(${JSON.stringify(pathToFileURL(DIST).href)});
process.stdout.write('start\\n');
await repairInPlace(process.argv[1], process.argv[2], Date.now());
process.stdout.write('done\\n');
`;

describe.skipIf(!existsSync(DIST))('agent buffer: kill -9 during an in-place repair', () => {
  let dir: string;
  const template = () => join(dir, 'template');
  let acked: string[] = [];
  let head = 0;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meteorzx-repair-kill-'));
    // ≈80 MB of tables (incompressible payloads), so the repair spends a while reading them.
    let buffer = new LevelBuffer({ dataDir: template(), id: 'repair-agent', durability: 'os', maxBytes: 1 << 30 });
    await buffer.open();
    for (let b = 0; b < 20; b++) {
      await buffer.append(Array.from({ length: 1000 }, (_, i) => ({ type: 'fill', data: { b, i, pad: randomBytes(3000).toString('base64') } })));
    }
    await buffer.close();
    buffer = new LevelBuffer({ dataDir: template(), id: 'repair-agent' });
    await buffer.open(); // turns the write-ahead log into tables
    // Acknowledged with a synced write: these stay in the new write-ahead log only.
    acked = (await buffer.append(Array.from({ length: 50 }, (_, i) => ({ type: 'acked', data: { i } })))).map((e) => e.id);
    head = buffer.state().head;
    await buffer.close();
  }, 120_000);
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs the repair in a child on a copy of the template, killed as the repair moves the log aside. */
  async function repairAndKill(round: number): Promise<{ dataDir: string; signal: NodeJS.Signals | null }> {
    const dataDir = join(dir, `round-${round}`);
    await cp(template(), dataDir, { recursive: true });
    const location = join(dataDir, 'buffer');
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, dataDir, location], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    // The write-ahead log (NNNNNN.log) leaving the directory: moved into lost/ by the repair.
    const watcher = watch(location, (_event, name) => {
      if (name !== null && /^\d+\.log$/.test(name)) child.kill('SIGKILL');
    });
    try {
      const signal = await new Promise<NodeJS.Signals | null>((done) => child.on('exit', (_code, sig) => done(sig)));
      return { dataDir, signal };
    } finally {
      watcher.close();
    }
  }

  it(`keeps every acknowledged event over ${ROUNDS} rounds`, { timeout: 120_000 + ROUNDS * 20_000 }, async () => {
    let killed = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const { dataDir, signal } = await repairAndKill(round);
      // A repair that ended before the signal came is checked all the same.
      if (signal === 'SIGKILL') killed += 1;
      const buffer = new LevelBuffer({ dataDir, id: 'repair-agent' });
      await buffer.open();
      try {
        const stored = await buffer.read(head - acked.length, 1000);
        expect({ head: buffer.state().head, ids: stored.map((e) => e.id) }).toEqual({ head, ids: acked });
        expect(verifyChain(await buffer.read(0, 100_000)).breaks).toEqual([]);
        // The files as they were before the repair stay kept, the evidence.
        expect((await readdir(dataDir)).filter((e) => e.startsWith('buffer.corrupt-'))).toHaveLength(1);
      } finally {
        await buffer.close();
      }
    }
    expect(killed).toBeGreaterThan(0);
  });
});
