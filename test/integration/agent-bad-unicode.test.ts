import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChainedEvent } from '../../protocols/index.js';
import { freePort, killAll, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';

/**
 * Records whose intake error event would hold a lone surrogate, which no
 * canonical JSON can carry: a raw excerpt cut inside a surrogate pair, or a
 * reason quoting a key that is a lone surrogate. The error event must be
 * buffered like any other, with the record's neighbours, not refused at the
 * commit (a file intake then retried its append for ever, an edge publish
 * was refused whole).
 */

let dir: string;
beforeAll(async () => {
  dir = await tempDir('agent-bad-unicode');
});
afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

async function subDir(name: string): Promise<string> {
  const sub = join(dir, name);
  await mkdir(sub);
  return sub;
}

async function buffered(agent: Agent): Promise<ChainedEvent[]> {
  const text = (await (await fetch(`${agent.pullUrl}/v1/events?after=0&limit=1000`)).text()).trim();
  return text === '' ? [] : text.split('\n').map((l) => JSON.parse(l) as ChainedEvent);
}

/** A JSON line that is no event (no type) with an emoji across the raw excerpt's cut at 1,024 UTF-16 units. */
function emojiAtTheCut(): string {
  const head = '{"msg":"';
  const line = `${head}${'a'.repeat(1023 - head.length)}\u{1F600}${'b'.repeat(100)}"}`;
  expect(line.charCodeAt(1023)).toBe(0xd83d);
  return line;
}

const LONE_KEY = '{"type":"bad.key","data":{"\\ud800":1}}';

describe('agent intake error events with a lone surrogate', () => {
  it('file intake: buffers the error events and every neighbour, and goes on reading', async () => {
    const log = join(dir, 'audit.log');
    const lines = [JSON.stringify({ type: 'before' }), emojiAtTheCut(), LONE_KEY, JSON.stringify({ type: 'after' })];
    await writeFile(log, `${lines.join('\n')}\n`);
    const agent = await startAgent(await subDir('files'), { id: 'unicode-files', intake: { files: [{ path: log, format: 'json' }] } });
    const events = await waitFor(async () => {
      const all = await buffered(agent);
      return all.length >= 4 && all;
    }, 'four events buffered from the file', 15_000);
    expect(events.map((e) => e.type)).toEqual(['before', 'meteorzx.intake.error', 'meteorzx.intake.error', 'after']);
    const cut = events[1]?.data as { raw: string; rawTruncated: boolean };
    expect(cut.rawTruncated).toBe(true);
    expect(cut.raw).toBe(emojiAtTheCut().slice(0, 1023));
    expect((events[2]?.data as { reason: string }).reason).toMatch(/^data\.\uFFFD: invalid Unicode/);
    expect(agent.logs.some((l) => l.includes('append failed'))).toBe(false);
    await agent.stop();
  });

  it('syslog over TCP: a message whose event is too large, an emoji across the cut, is buffered as an error event with its neighbours', async () => {
    const port = await freePort();
    const agent = await startAgent(await subDir('syslog'), { id: 'unicode-syslog', intake: { syslog: { listen: `tcp://127.0.0.1:${port}`, maxMessageBytes: '128KiB' } } });
    // Control characters are escaped six times their size: the event goes over maxEventBytes (64 KiB).
    const big = `${'a'.repeat(1023)}\u{1F600}${'\u0001'.repeat(20_000)}`;
    const frame = (msg: string) => `<13>1 2026-12-07T12:00:00Z host app - - - ${msg}\n`;
    await new Promise<void>((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => s.end(frame('before') + frame(big) + frame('after'), () => resolve()));
      s.once('error', reject);
    });
    const events = await waitFor(async () => {
      const all = await buffered(agent);
      return all.length >= 3 && all;
    }, 'three syslog events buffered', 15_000);
    expect(events.map((e) => (e.data as { message?: string; raw?: string }).message ?? (e.data as { raw?: string }).raw?.length)).toEqual(['before', 1023, 'after']);
    expect(events[1]?.type).toBe('meteorzx.intake.error');
    await agent.stop();
  });

  it('edge MQTT broker: a bad event beside good ones is buffered as an error event, the publish acknowledged', async () => {
    const port = await freePort();
    const agent = await startAgent(await subDir('mqtt'), { id: 'unicode-edge', intake: { http: { listen: '127.0.0.1:0' }, mqtt: { listen: `127.0.0.1:${port}` } } });
    const payload = `[{"type":"before"},${LONE_KEY},{"type":"after"}]`;
    const pub = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const proc = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', 'audit/dev-1/events', '-m', payload], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      proc.once('error', reject);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
    expect(pub).toEqual({ code: 0, stderr: '' });
    const events = await buffered(agent);
    expect(events.map((e) => [e.type, e.source])).toEqual([
      ['before', 'dev-1'],
      ['meteorzx.intake.error', 'dev-1'],
      ['after', 'dev-1'],
    ]);
    expect((events[1]?.data as { reason: string }).reason).toMatch(/^data\.\uFFFD: invalid Unicode/);
    await agent.stop();
  });
});
