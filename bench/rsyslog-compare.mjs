#!/usr/bin/env node
// Legacy-host peer (issue 8): the same log file forwarded by rsyslog (imfile →
// disk-assisted queue → omfwd TCP → a second rsyslog's imtcp → omfile) and by
// the MeteorZX agent (intake.files, fsync buffer → HTTP push) to the gateway
// (fsync store), one after the other on the same machine. Both pairs are
// started idle on an empty file, then the whole file is appended at once; the
// clock stops when the last line has arrived at the far end. CPU seconds and
// RSS of every process are read from /proc the same way.
// Needs `npm run build` and rsyslog (`apt-get install rsyslog`).
//
//   node bench/rsyslog-compare.mjs [--lines 100000] [--only rsyslog|meteorzx] [--rsyslog-queue da|disk] [--profile DIR]
import { appendFile, mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { freePort } from './lib/ports.mjs';
import { startAgent, startGateway } from './lib/processes.mjs';
import { receiverConfig, senderConfig, startRsyslog } from './lib/rsyslog.mjs';
import { sampleProcess, procSample } from './lib/proc-stat.mjs';
import { sleep, waitFor } from './lib/wait.mjs';
import { emitResult } from './lib/emit.mjs';

const { values: args } = parseArgs({
  options: {
    lines: { type: 'string', default: '100000' },
    only: { type: 'string', default: 'rsyslog,meteorzx' },
    'timeout-s': { type: 'string', default: '600' },
    // Write V8 CPU profiles of the agent and the gateway here (see bench/lib/profile-top.mjs).
    profile: { type: 'string' },
    // rsyslog's queue: da (disk-assisted, spills past the watermark) or disk (every message synced to queue files).
    'rsyslog-queue': { type: 'string', default: 'da' },
  },
});
const LINES = Number(args.lines);
const TIMEOUT_MS = Number(args['timeout-s']) * 1000;
const profArgs = (name) => (args.profile ? ['--cpu-prof', `--cpu-prof-dir=${args.profile}`, `--cpu-prof-name=${name}.cpuprofile`] : []);

/** ≈300-byte sshd-like lines, as a legacy host's auth log has them. */
function logChunk(from, to) {
  let s = '';
  for (let i = from; i < to; i += 1) {
    const line = `2026-11-26T13:00:${String(i % 60).padStart(2, '0')}.000Z host-17 sshd[${1000 + (i % 30000)}]: Accepted publickey for user-${i % 5000} from 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255} port ${20000 + (i % 40000)} ssh2: ED25519 SHA256:q0h1Zb4kqYtJ8M3sVvRr5nX9LwPzA7cD2eF6gH8iJkL session=s-${i.toString(36)} seq=${i}`;
    s += line.padEnd(299, ' .') + '\n';
  }
  return s;
}

/** Appends all lines in ≈4 MB writes, as a busy log grows; returns when the file is complete. */
async function writeLog(file) {
  const per = 13_000;
  for (let i = 0; i < LINES; i += per) await appendFile(file, logChunk(i, Math.min(LINES, i + per)));
}

/** Counts newlines appended to `file` since the last call (the receiver's output grows while we read). */
function lineCounter(file) {
  let offset = 0;
  let lines = 0;
  const buf = Buffer.alloc(1 << 20);
  return async () => {
    let fh;
    try {
      fh = await open(file, 'r');
    } catch {
      return 0;
    }
    try {
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        for (let i = 0; i < bytesRead; i += 1) if (buf[i] === 10) lines += 1;
      }
    } finally {
      await fh.close();
    }
    return lines;
  };
}

/** With the pair started and idle for a second: its idle RSS, then samplers running and the clock started. */
async function measure(procs) {
  await sleep(1000);
  const idle = {};
  for (const [role, p] of Object.entries(procs)) idle[role] = (await procSample(p.pid)) ?? { rssMB: Number.NaN, anonMB: Number.NaN };
  const samplers = Object.fromEntries(Object.entries(procs).map(([role, p]) => [role, sampleProcess(p.pid, 100)]));
  const t0 = performance.now();
  return { idle, samplers, t0 };
}

/** Appends the whole log, waits for the far end to have every line, stops the samplers. */
async function finish(name, started, arrived, file) {
  await writeLog(file);
  const written = performance.now();
  await waitFor(async () => (await arrived()) >= LINES, { timeoutMs: TIMEOUT_MS, everyMs: 50, what: `${name}: ${LINES} lines at the far end` });
  const seconds = (performance.now() - started.t0) / 1000;
  const processes = {};
  for (const [role, s] of Object.entries(started.samplers)) {
    const r = await s.stop();
    processes[role] = { idleRssMB: started.idle[role].rssMB, idleAnonMB: started.idle[role].anonMB, maxRssMB: r.maxRssMB, maxAnonMB: r.maxAnonMB, cpuSeconds: r.cpuSeconds, cpuSecondsPerMillion: (r.cpuSeconds / LINES) * 1e6 };
  }
  const cpuTotal = Object.values(processes).reduce((s, p) => s + p.cpuSeconds, 0);
  return { lines: LINES, seconds, writeSeconds: (written - started.t0) / 1000, eventsPerSecond: LINES / seconds, cpuSecondsTotal: cpuTotal, processes };
}

async function runRsyslog(base) {
  const dir = join(base, 'rsyslog');
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'app.log');
  const out = join(dir, 'received.log');
  await writeFile(file, '');
  const port = await freePort();
  const receiver = await startRsyslog({ dir, name: 'receiver', config: receiverConfig({ workDir: join(dir, 'receiver-work'), port, out }) });
  let sender;
  try {
    sender = await startRsyslog({ dir, name: 'sender', config: senderConfig({ workDir: join(dir, 'sender-work'), file, port, queue: args['rsyslog-queue'] }) });
    const procs = { sender, receiver };
    const arrived = lineCounter(out);
    const started = await measure(procs);
    return await finish('rsyslog', started, arrived, file);
  } finally {
    await sender?.stop();
    await receiver.stop();
  }
}

async function runMeteorzx(base) {
  const dir = join(base, 'meteorzx');
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'app.log');
  await writeFile(file, '');
  const gateway = await startGateway({ dir, nodeArgs: profArgs('gateway') });
  let agent;
  try {
    agent = await startAgent({
      dir,
      nodeArgs: profArgs('agent'),
      config: {
        buffer: { durability: 'fsync' },
        intake: { files: [{ path: file, format: 'line', type: 'legacy.line' }] },
        push: { http: { url: `http://127.0.0.1:${gateway.http}/v1/events` } },
      },
    });
    const procs = { agent, gateway };
    const sourcesUrl = `http://127.0.0.1:${gateway.http}/v1/sources`;
    const arrived = async () => {
      const res = await globalThis.fetch(sourcesUrl);
      const body = await res.json();
      return body.sources.reduce((s, x) => s + x.accepted + x.duplicates, 0);
    };
    const started = await measure(procs);
    return await finish('meteorzx', started, arrived, file);
  } finally {
    await agent?.stop();
    await gateway.stop();
  }
}

const base = await mkdtemp(join(tmpdir(), 'meteorzx-bench-rsyslog-'));
try {
  const only = new Set(args.only.split(','));
  const result = { lines: LINES, lineBytes: 300, rsyslogQueue: args['rsyslog-queue'] };
  if (only.has('rsyslog')) result.rsyslog = await runRsyslog(base);
  if (only.has('meteorzx')) result.meteorzx = await runMeteorzx(base);
  for (const name of ['rsyslog', 'meteorzx']) {
    const r = result[name];
    if (r === undefined) continue;
    const ps = Object.entries(r.processes).map(([role, p]) => `${role} ${p.cpuSeconds.toFixed(2)} CPU s, RSS idle ${p.idleRssMB.toFixed(1)} / max ${p.maxRssMB.toFixed(1)} MB`).join('; ');
    console.log(`${name}: ${LINES} lines in ${r.seconds.toFixed(2)} s = ${Math.round(r.eventsPerSecond)} lines/s; ${ps}`);
  }
  await emitResult('rsyslog-compare', result);
} finally {
  await rm(base, { recursive: true, force: true });
}
