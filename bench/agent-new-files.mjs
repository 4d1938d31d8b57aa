#!/usr/bin/env node
// Many new files at once: a running agent follows one glob over an empty
// directory, then `--files` one-line log files appear in it (a batch job's
// per-task logs, a restore). Times how long until every line is in the
// buffer (durability fsync, the default), from the first file written to the
// buffer's head reaching the count; in the same run, the same lines written
// as one file (the reference: one file, a few appends). `--rounds` runs of
// each; the median is reported. Needs `npm run build`.
//
//   node bench/agent-new-files.mjs [--files 1000] [--rounds 3]
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { startAgent } from './lib/processes.mjs';
import { sleep, waitFor } from './lib/wait.mjs';
import { emitResult } from './lib/emit.mjs';

const { values: args } = parseArgs({
  options: {
    files: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '3' },
  },
});
const FILES = Number(args.files);
const ROUNDS = Number(args.rounds);

const line = (i) => `2026-12-07T19:00:00Z host-17 job[${i}]: done\n`;

/** Seconds from the first write until the agent's buffer holds `FILES` events; `spread`: one file per line, else one file. */
async function oneRun(base, round, spread) {
  const dir = join(base, `${spread ? 'many' : 'one'}-${round}`);
  const logs = join(dir, 'logs');
  await mkdir(logs, { recursive: true });
  const agent = await startAgent({ dir, config: { intake: { files: [{ path: join(logs, '*.log'), format: 'line' }] } } });
  try {
    await sleep(1500); // settled: the first discovery of the empty directory is done
    const t0 = performance.now();
    if (spread) for (let i = 0; i < FILES; i += 1) await writeFile(join(logs, `job-${i}.log`), line(i));
    else await writeFile(join(logs, 'all.log'), Array.from({ length: FILES }, (_, i) => line(i)).join(''));
    await waitFor(
      async () => {
        const status = await (await globalThis.fetch(agent.statusUrl)).json();
        return status.head >= FILES;
      },
      { timeoutMs: 300_000, everyMs: 20, what: `${FILES} events buffered` },
    );
    return (performance.now() - t0) / 1000;
  } finally {
    await agent.stop();
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const base = await mkdtemp(join(tmpdir(), 'meteorzx-bench-new-files-'));
try {
  const many = [];
  const one = [];
  for (let r = 0; r < ROUNDS; r += 1) {
    many.push(await oneRun(base, r, true));
    one.push(await oneRun(base, r, false));
  }
  const m = median(many);
  const o = median(one);
  console.log(
    `${FILES} new one-line files: ${m.toFixed(2)} s to buffer (${(FILES / m).toFixed(0)} files/s; runs ${many.map((s) => s.toFixed(2)).join(', ')}); ` +
      `the same lines in one file: ${o.toFixed(2)} s (runs ${one.map((s) => s.toFixed(2)).join(', ')})`,
  );
  await emitResult('agent-new-files', {
    files: FILES,
    manySeconds: many,
    oneSeconds: one,
    figures: [
      { id: 'agent.new.files.seconds', label: `agent: ${FILES} new one-line files buffered`, value: m, unit: 's', reference: { label: 'the same lines in one file', value: o } },
    ],
  });
} finally {
  await rm(base, { recursive: true, force: true });
}
