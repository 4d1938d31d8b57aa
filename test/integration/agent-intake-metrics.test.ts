import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, parseLine, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';

/**
 * Issue 6: "Each intake reports events in, errors and its backpressure state
 * in /metrics". A real agent with a file intake and a syslog intake is
 * scraped on its status server (`pull.listen`): each intake has its series
 * from the start, counts what it took in, and shows `blocked 1` while the
 * buffer is full (no push sink here, and a small buffer). A reload that
 * removes an intake drops its blocked series.
 */

const run = promisify(execFile);

let dir: string;
let agent: Agent;
let logFile: string;
let syslogPort: number;
let config: Record<string, unknown>;

beforeAll(async () => {
  dir = await tempDir('agent-intake-metrics');
  logFile = join(dir, 'app.log');
  await writeFile(logFile, '');
  syslogPort = await freePort();
  config = {
    id: 'metrics-agent',
    dataDir: join(dir, 'agent-data'),
    limits: { maxEventBytes: '2KiB' },
    // No push: the buffer only fills, so the intakes end up blocked.
    buffer: { maxBytes: '64KiB', whenFull: 'block' },
    pull: { listen: '127.0.0.1:0' },
    intake: { files: [{ path: logFile, format: 'line' }], syslog: { listen: [`udp://127.0.0.1:${syslogPort}`, `tcp://127.0.0.1:${syslogPort}`] } },
  };
  agent = await startAgent(dir, config);
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

/** `name{labels} value` lines of one scrape, as [series, value]. */
async function scrape(): Promise<Map<string, number>> {
  const text = await (await fetch(`${agent.pullUrl}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

function series(all: Map<string, number>, name: string, intake: string): [string, number][] {
  return [...all].filter(([s]) => s.startsWith(`${name}{`) && s.includes(`intake="${intake}"`));
}

describe('intake metrics on the agent status server', () => {
  it('each intake has events-in, errors and blocked series from the start', async () => {
    const all = await scrape();
    for (const intake of ['files', 'syslog']) {
      expect(series(all, 'meteorzx_agent_events_in_total', intake), intake).toHaveLength(1);
      expect(series(all, 'meteorzx_agent_events_invalid_total', intake), intake).toHaveLength(1);
      expect(series(all, 'meteorzx_agent_intake_errors_total', intake).length, intake).toBeGreaterThan(0);
      expect(series(all, 'meteorzx_agent_intake_blocked', intake), intake).toEqual([[`meteorzx_agent_intake_blocked{intake="${intake}"}`, 0]]);
    }
  });

  it('counts events in per intake', async () => {
    await appendFile(logFile, 'one\ntwo\nthree\n');
    await run('logger', ['-n', '127.0.0.1', '-P', String(syslogPort), '-T', '--rfc5424', '-t', 'metrics', 'counted']);
    await waitFor(async () => {
      const all = await scrape();
      return all.get('meteorzx_agent_events_in_total{intake="files"}') === 3 && all.get('meteorzx_agent_events_in_total{intake="syslog"}') === 1;
    }, 'events_in_total of files = 3 and of syslog = 1');
  });

  it('shows blocked 1 while the buffer is full, for the intake that waits', async () => {
    // About 400 KB of incompressible lines into a 64 KiB buffer (blocks are deflated) that nothing drains.
    await appendFile(logFile, Array.from({ length: 4000 }, () => `${randomBytes(50).toString('hex')}\n`).join(''));
    await waitFor(async () => (await scrape()).get('meteorzx_agent_intake_blocked{intake="files"}') === 1, 'files blocked = 1');
    expect((await scrape()).get('meteorzx_agent_intake_blocked{intake="syslog"}')).toBe(0);
  });

  it('a reload that removes an intake drops its blocked series', async () => {
    const before = agent.logs.filter((l) => parseLine(l)?.msg === 'reload: applied in place').length;
    // What startAgent wrote (pull on port 0 included, or the reload would be a full restart), minus syslog.
    const files = [{ path: logFile, format: 'line' }];
    await writeFile(join(dir, 'agent.json'), JSON.stringify({ ...config, intake: { files } }));
    agent.proc.kill('SIGHUP');
    await waitFor(() => agent.logs.filter((l) => parseLine(l)?.msg === 'reload: applied in place').length > before, 'reload applied in place');
    const all = await scrape();
    expect(series(all, 'meteorzx_agent_intake_blocked', 'syslog')).toEqual([]);
    expect(series(all, 'meteorzx_agent_intake_blocked', 'files')).toHaveLength(1);
    // Counters stay: a counter that vanished and came back would read as a reset.
    expect(all.get('meteorzx_agent_events_in_total{intake="syslog"}')).toBe(1);
  });
});
