import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '../../protocols/index.js';
import { LevelBuffer } from '../../agent/buffer/index.js';

// kill -9 at a random moment while producers append at full speed: every
// event the buffer acknowledged (printed by the child after append resolved)
// must be there after reopen, with contiguous seqs and an intact chain.
const ROUNDS = Number(process.env.METEORZX_FAULT_ROUNDS ?? 3);
const DIST = resolve('dist/agent/buffer/index.js');

const CHILD = `
const { LevelBuffer } = await import(${JSON.stringify(pathToFileURL(DIST).href)});
const buffer = new LevelBuffer({ dataDir: process.argv[1], id: 'fault-agent' });
await buffer.open();
let n = 0;
const producer = async (p) => {
  for (;;) {
    const k = 1 + (n++ % 5);
    const events = Array.from({ length: k }, (_, i) => ({ type: 'fault.test', data: { p, i, pad: 'y'.repeat(150) } }));
    const progress = String(n);
    const got = await buffer.append(events, [{ key: 'progress', value: progress }]);
    process.stdout.write(got.map((e) => 'E ' + e.seq + ' ' + e.id + '\\n').join('') + 'X ' + progress + '\\n');
  }
};
for (let p = 0; p < 16; p++) void producer(p);
`;

describe.skipIf(!existsSync(DIST))('agent buffer under kill -9', () => {
  let dir: string;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meteorzx-buffer-kill-'));
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  async function runAndKill(): Promise<{ acked: Map<number, string>; progress: number }> {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    let out = '';
    let killTimer: NodeJS.Timeout | undefined;
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      // Kill at a random moment once appends are flowing.
      killTimer ??= setTimeout(() => child.kill('SIGKILL'), 50 + Math.floor(Math.random() * 600));
    });
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
      child.on('exit', (code, signal) => done({ code, signal })),
    );
    expect(exit.signal).toBe('SIGKILL');
    const acked = new Map<number, string>();
    let progress = 0;
    // A line cut by the kill was never complete, so it is not counted as acknowledged.
    for (const line of out.split('\n').slice(0, -1)) {
      const [kind, a, b] = line.split(' ');
      if (kind === 'E') acked.set(Number(a), b as string);
      if (kind === 'X') progress = Math.max(progress, Number(a));
    }
    return { acked, progress };
  }

  // Each round re-reads the whole buffer, which grows: ≈ 2 s a round at 20 rounds on this 2-core box.
  it(`loses no acknowledged event over ${ROUNDS} rounds`, { timeout: 60_000 + ROUNDS * 5_000 }, async () => {
    let epoch: string | undefined;
    let lastHead = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const { acked, progress } = await runAndKill();
      expect(acked.size).toBeGreaterThan(0);
      const buffer = new LevelBuffer({ dataDir: dir, id: 'fault-agent' });
      await buffer.open();
      try {
        const state = buffer.state();
        epoch ??= state.epoch;
        expect(state.epoch).toBe(epoch);
        expect(state.recovered).toBeUndefined();
        const stored = await buffer.read(0, 10_000_000);
        expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: state.head }, (_, i) => i + 1));
        expect(verifyChain(stored).breaks).toEqual([]);
        for (const [seq, id] of acked) expect(stored[seq - 1]?.id).toBe(id);
        expect(Math.max(...acked.keys())).toBeLessThanOrEqual(state.head);
        expect(Number(await buffer.getMeta('progress'))).toBeGreaterThanOrEqual(progress);
        expect(state.head).toBeGreaterThan(lastHead);
        lastHead = state.head;
      } finally {
        await buffer.close();
      }
    }
  });
});
