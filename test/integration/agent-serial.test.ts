import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, gatewayEvents, killAll, removeDir, rssBytes, startAgent, startGateway, tempDir, waitFor, type Gateway } from './agent-harness.js';

/**
 * Issue 6 Done-when: `socat` makes pseudo-terminal pairs; the agent reads
 * one end of each with the real serial bindings while the test writes JSON
 * and plain lines (and one 10 MB line with no newline) to the other: events
 * stored at the gateway, the long line flagged, the agent's memory bounded.
 */

const socats = new Set<ChildProcess>();

// The gateway answers in receive order; the agent may have several batches in flight, so order by seq.
const bySeq = <T extends { seq?: number }>(events: T[]): T[] => [...events].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
let dir: string;
let gateway: Gateway;

/** A pty pair: the agent opens `device`, the test writes to `peer`. Resolves once both links exist. */
async function ptyPair(name: string): Promise<{ device: string; peer: string; proc: ChildProcess }> {
  const device = join(dir, `${name}-dev`);
  const peer = join(dir, `${name}-peer`);
  const proc = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${device}`, `pty,raw,echo=0,link=${peer}`], { stdio: 'ignore' });
  socats.add(proc);
  proc.once('exit', () => socats.delete(proc));
  await waitFor(() => existsSync(device) && existsSync(peer), `socat links for ${name}`);
  return { device, peer, proc };
}

async function stopSocat(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGKILL');
  await exited;
}

/** Writes to the test's end of a pair (blocking writes: a pty slows the writer when the reader pauses). */
async function writePeer(peer: string, chunks: (string | Buffer)[]): Promise<void> {
  const handle = await open(peer, 'w');
  try {
    for (const c of chunks) await handle.write(typeof c === 'string' ? Buffer.from(c) : c);
  } finally {
    await handle.close();
  }
}

beforeAll(async () => {
  dir = await tempDir('serial');
  gateway = await startGateway(dir, await freePort());
});

afterAll(async () => {
  await Promise.all([...socats].map(stopSocat));
  await killAll();
  await removeDir(dir);
});

describe('agent serial intake over real pty pairs (socat)', () => {
  it('stores JSON and plain lines, flags a 10 MB line with no newline, keeps memory bounded, and survives the device vanishing', async () => {
    const json = await ptyPair('json');
    const plain = await ptyPair('line');
    const agent = await startAgent(dir, {
      id: 'serial-agent',
      intake: {
        http: { listen: '127.0.0.1:0' },
        serial: [
          { path: json.device, baudRate: 115200, format: 'json', source: 'meter-1' },
          { path: plain.device, baudRate: 115200, format: 'line', source: 'plc-2', type: 'plc.line' },
        ],
      },
      push: { http: { url: `${gateway.url}/v1/events` }, batch: { maxWaitMs: 20 } },
    });

    const jsonLines = Array.from({ length: 50 }, (_, i) => `${JSON.stringify({ id: `m-${i}`, type: 'meter.reading', data: { kwh: i } })}\r\n`);
    await writePeer(json.peer, [...jsonLines, 'this is not json\n']);
    await writePeer(plain.peer, ['PUMP ON\n', 'PUMP OFF\n']);
    await waitFor(async () => (await gatewayEvents(gateway.url, 'meter-1')).length === 51, 'meter-1 events at the gateway');
    await waitFor(async () => (await gatewayEvents(gateway.url, 'plc-2')).length === 2, 'plc-2 lines at the gateway');

    const meter = bySeq(await gatewayEvents(gateway.url, 'meter-1'));
    expect(meter.slice(0, 50).map((e) => e.id)).toEqual(jsonLines.map((_, i) => `m-${i}`));
    expect(meter[50]).toMatchObject({ type: 'meteorzx.intake.error', data: { intake: 'serial', port: json.device, raw: 'this is not json' } });
    expect(meter.every((e) => e.agent === 'serial-agent' && e.ingest.integrity === 'verified')).toBe(true);
    expect(bySeq(await gatewayEvents(gateway.url, 'plc-2')).map((e) => [e.type, e.data?.line])).toEqual([
      ['plc.line', 'PUMP ON'],
      ['plc.line', 'PUMP OFF'],
    ]);

    // 10 MB with no newline: the agent keeps only maxLineBytes of it and buffers that head, flagged.
    const rssBefore = (await rssBytes(agent.pid)) ?? 0;
    const mb = Buffer.alloc(1024 * 1024, 0x5a);
    await writePeer(plain.peer, Array.from({ length: 10 }, () => mb));
    await waitFor(async () => (await gatewayEvents(gateway.url, 'plc-2')).length === 3, 'the flagged long line', 60_000);
    const rssAfter = (await rssBytes(agent.pid)) ?? Number.POSITIVE_INFINITY;
    const long = bySeq(await gatewayEvents(gateway.url, 'plc-2'))[2];
    expect(long?.data).toMatchObject({ truncated: true, originalBytes: 10 * 1024 * 1024, complete: false });
    expect(Buffer.byteLength(JSON.stringify(long))).toBeLessThanOrEqual(64 * 1024 + 1024);
    console.log(`serial 10 MB line: agent VmRSS ${(rssBefore / 2 ** 20).toFixed(1)} MB before, ${(rssAfter / 2 ** 20).toFixed(1)} MB after`);
    expect(rssAfter).toBeLessThan(150 * 2 ** 20);

    // The line ends at last; the next one is read normally.
    await writePeer(plain.peer, ['\nPUMP ON\n']);
    await waitFor(async () => (await gatewayEvents(gateway.url, 'plc-2')).length === 4, 'the line after the long one');

    // The device vanishes (socat killed) and comes back on the same path: the agent reopens it.
    await stopSocat(json.proc);
    // SIGKILL leaves socat's links dangling at /dev/pts/N, a number the kernel hands out again (to the
    // next pair, or another test's): drop them as udev drops an unplugged device's node, so neither the
    // agent's reopen nor ptyPair's wait can follow a stale link to someone else's pty.
    await Promise.all([rm(json.device, { force: true }), rm(json.peer, { force: true })]);
    await waitFor(async () => (await agent.metric('meteorzx_agent_intake_errors_total{intake="serial",kind="disconnect"}')) >= 1, 'disconnect seen');
    const again = await ptyPair('json');
    await waitFor(async () => {
      // Written repeatedly until the agent has reopened the port: bytes sent before that are lost on the line.
      await writePeer(again.peer, [`${JSON.stringify({ id: 'after-reopen', type: 'meter.reading' })}\n`]);
      return (await gatewayEvents(gateway.url, 'meter-1')).some((e) => e.id === 'after-reopen');
    }, 'an event after the device came back', 60_000);
    expect(await agent.stop()).toBe(0);
  });
});
