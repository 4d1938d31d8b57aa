#!/usr/bin/env node
// An idle legacy host: the agent follows many log files that nobody writes
// to (a server's /var/log/*/*.log), and should cost next to nothing, as
// rsyslog's imfile or Fluent Bit's tail does. The real CLI agent follows
// `--files` one-line files through one glob, and, in the same run, the same
// agent following one such file (the reference); each is left to settle for
// `--warm-s`, then its CPU seconds are read from /proc over `--measure-s`.
// Needs `npm run build`.
//
//   node bench/agent-idle-files.mjs [--files 500] [--warm-s 10] [--measure-s 10]
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startAgent } from './lib/processes.mjs';
import { procSample } from './lib/proc-stat.mjs';
import { sleep } from './lib/wait.mjs';
import { emitResult } from './lib/emit.mjs';

const { values: args } = parseArgs({
  options: {
    files: { type: 'string', default: '500' },
    'warm-s': { type: 'string', default: '10' },
    'measure-s': { type: 'string', default: '10' },
  },
});
const FILES = Number(args.files);
const WARM_MS = Number(args['warm-s']) * 1000;
const MEASURE_MS = Number(args['measure-s']) * 1000;

/** CPU (% of one core) and RSS of an agent following `count` quiet files, once settled. */
async function idleAgent(base, count) {
  const dir = join(base, `files-${count}`);
  const logs = join(dir, 'logs');
  await mkdir(logs, { recursive: true });
  for (let i = 0; i < count; i += 1) await writeFile(join(logs, `app-${i}.log`), `2026-12-07T19:00:00Z host-17 app[${i}]: started\n`);
  const agent = await startAgent({ dir, config: { intake: { files: [{ path: join(logs, '*.log'), format: 'line' }] } } });
  try {
    await sleep(WARM_MS);
    const before = await procSample(agent.pid);
    await sleep(MEASURE_MS);
    const after = await procSample(agent.pid);
    if (before === undefined || after === undefined) throw new Error('the agent went away while measured');
    return { files: count, cpuPercent: ((after.cpuSeconds - before.cpuSeconds) / (MEASURE_MS / 1000)) * 100, rssMB: after.rssMB };
  } finally {
    await agent.stop();
  }
}

const base = await mkdtemp(join(tmpdir(), 'meteorzx-bench-idle-files-'));
try {
  const one = await idleAgent(base, 1);
  const many = await idleAgent(base, FILES);
  console.log(`agent idle, following ${FILES} quiet files: ${many.cpuPercent.toFixed(2)} % of a core, RSS ${many.rssMB.toFixed(1)} MB; one file: ${one.cpuPercent.toFixed(2)} %, ${one.rssMB.toFixed(1)} MB`);
  await emitResult('agent-idle-files', {
    files: FILES,
    one,
    many,
    figures: [
      { id: 'agent.idle.files.cpu', label: `agent CPU idle, following ${FILES} quiet files`, value: many.cpuPercent, unit: '% core', reference: { label: 'the same agent following 1 file', value: one.cpuPercent } },
      { id: 'agent.idle.files.rss', label: `agent process RSS idle, following ${FILES} quiet files`, value: many.rssMB, unit: 'MB', reference: { label: 'the same agent following 1 file', value: one.rssMB } },
    ],
  });
} finally {
  await rm(base, { recursive: true, force: true });
}
