import { spawn } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayEvents, killAll, postEvents, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';
import { BIN, runCli, runProcess, startGateway } from './gateway-harness.js';

/**
 * Issue 5, Done-when 1 and 5: `meteorzx pull --out` against a real agent
 * with push disabled retrieves every buffered event in order, `curl`
 * against the pull API gives the same bytes, and an interrupted pull
 * (SIGKILL) resumes without duplicates.
 */

const TOTAL = Number(process.env.METEORZX_PULL_EVENTS ?? 50_000);
let dir: string;
let agent: Agent;

async function fill(count: number): Promise<void> {
  for (let i = 0; i < count; i += 1000) {
    const batch = Array.from({ length: Math.min(1000, count - i) }, (_, k) => ({ type: 'test.pull', data: { n: i + k, pad: 'x'.repeat(200) } }));
    const res = await postEvents(agent.intakeUrl, batch);
    expect(res.status).toBe(200);
  }
}

function seqsOf(text: string): number[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { seq: number }).seq);
}

beforeAll(async () => {
  dir = await tempDir('pull-cli');
  agent = await startAgent(dir, { id: 'pull-src' });
  await fill(TOTAL);
  expect((await agent.status()).head).toBe(TOTAL);
}, 180_000);

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

describe('meteorzx pull --out', () => {
  it(`retrieves all ${TOTAL} events in seq order, byte-identical to curl against the pull API`, async () => {
    const out = join(dir, 'all.ndjson');
    const res = await runCli(['pull', agent.pullUrl, '--out', out, '--page-size', '5000']);
    expect(res.code, res.stderr).toBe(0);
    // A pipe, not a TTY: no progress bar escape codes.
    expect(res.stderr).toBe('');
    const text = await readFile(out, 'utf8');
    const seqs = seqsOf(text);
    expect(seqs.length).toBe(TOTAL);
    expect(seqs.every((s, i) => s === i + 1)).toBe(true);

    // curl, page by page (the API caps one answer at 10,000 events), concatenated.
    let curled = '';
    for (let after = 0; after < TOTAL; after += 10_000) {
      const c = await runProcess('curl', ['-sS', '--fail', `${agent.pullUrl}/v1/events?after=${after}&limit=10000`]);
      expect(c.code, c.stderr).toBe(0);
      curled += c.stdout;
    }
    expect(curled.length).toBe(text.length);
    expect(curled === text).toBe(true);
  }, 180_000);

  it('writes to stdout without --out, honouring --after and --limit', async () => {
    const res = await runCli(['pull', agent.pullUrl, '--after', '100', '--limit', '250']);
    expect(res.code, res.stderr).toBe(0);
    expect(seqsOf(res.stdout)).toEqual(Array.from({ length: 250 }, (_, i) => 101 + i));
  });

  it('resumes an interrupted pull (SIGKILL mid-way, METEORZX_FAULT_ROUNDS times) without duplicates', async () => {
    const rounds = Number(process.env.METEORZX_FAULT_ROUNDS ?? 3);
    const out = join(dir, 'resume.ndjson');
    let lastSize = 0;
    for (let round = 0; round < rounds; round += 1) {
      // Small pages, so kills land between and inside pages.
      const child = spawn(process.execPath, [BIN, 'pull', agent.pullUrl, '--out', out, '--page-size', '20'], { stdio: 'ignore' });
      const exited = new Promise((r) => child.once('exit', r));
      const from = lastSize;
      await waitFor(async () => ((await stat(out).catch(() => undefined))?.size ?? 0) > from + 200_000, `output growing (round ${round})`, 60_000);
      child.kill('SIGKILL');
      await exited;
      // Leave a torn last line, as a kill inside a write would.
      const partial = await readFile(out, 'utf8');
      await writeFile(out, `${partial}{"seq": 9999999, "trunc`);
      const complete = seqsOf(partial.slice(0, partial.lastIndexOf('\n') + 1));
      expect(complete.length).toBeGreaterThan(0);
      expect(complete.length).toBeLessThan(TOTAL);
      expect(new Set(complete).size).toBe(complete.length);
      lastSize = partial.length;
    }

    const res = await runCli(['pull', agent.pullUrl, '--out', out, '--page-size', '5000']);
    expect(res.code, res.stderr).toBe(0);
    const seqs = seqsOf(await readFile(out, 'utf8'));
    expect(seqs.length).toBe(TOTAL);
    expect(new Set(seqs).size).toBe(TOTAL);
    expect(seqs.every((s, i) => s === i + 1)).toBe(true);
  }, 180_000);

  it('answers 410 naming the oldest seq for a range it no longer holds, and names epoch and head', async () => {
    const res = await fetch(`${agent.pullUrl}/v1/events?after=0&epoch=not-this-epoch`);
    expect(res.status).toBe(410);
    const body = (await res.json()) as { code: string; oldest: number };
    expect(body.code).toBe('METEORZX_PULL_GONE');
    expect(body.oldest).toBe(1);
    const ok = await fetch(`${agent.pullUrl}/v1/events?after=5&limit=1`);
    expect(ok.headers.get('x-meteorzx-head')).toBe(String(TOTAL));
    expect(ok.headers.get('x-meteorzx-epoch')).toBe((await agent.status()).epoch);
  });
});

describe('meteorzx pull from an agent that goes away mid-answer', () => {
  it('says the connection broke in the middle of the answer, how many events it wrote, and resumes on the next run', async () => {
    const line = (seq: number) => `${JSON.stringify({ id: `e${seq}`, type: 't', agent: 'a1', epoch: 'E1', seq })}\n`;
    let cut = true;
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/v1/status') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'a1', epoch: 'E1', head: 10, oldest: 1 }));
        return;
      }
      const after = Number(url.searchParams.get('after'));
      let body = '';
      for (let s = after + 1; s <= 10; s += 1) body += line(s);
      if (!cut) {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' }).end(body);
        return;
      }
      // Seqs 1..4 whole, half of 5, then the agent dies (its socket is gone).
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'content-length': String(Buffer.byteLength(body)) });
      res.write(body.slice(0, body.indexOf(line(5)) + 10), () => setTimeout(() => req.socket.destroy(), 50));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const agentUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const out = join(dir, 'cut.ndjson');
    try {
      const first = await runCli(['pull', agentUrl, '--out', out]);
      expect(first.code).not.toBe(0);
      // Before: "other side closed", and nothing about the file.
      expect(first.stderr).toContain(`pull after seq 0 from ${agentUrl} failed in the middle of its answer: connection closed unexpectedly; 4 events written; run the same command again to resume`);
      cut = false;
      const second = await runCli(['pull', agentUrl, '--out', out]);
      expect(second.code, second.stderr).toBe(0);
      expect(seqsOf(await readFile(out, 'utf8'))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('meteorzx pull --into GATEWAY', () => {
  it('names $METEORZX_PULL_TOKEN (the agent pull token it reads), not $METEORZX_TOKEN, after a 401', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'missing or invalid bearer token', code: 'METEORZX_UNAUTHORIZED' }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const res = await runCli(['pull', `http://127.0.0.1:${(server.address() as AddressInfo).port}`], { env: { METEORZX_PULL_TOKEN: '' } });
      expect(res.code).not.toBe(0);
      expect(res.stderr).toContain('(pass --token or set METEORZX_PULL_TOKEN)');
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('has the gateway pull the range itself (provenance pull) and prints its result', async () => {
    await mkdir(join(dir, 'gw'), { recursive: true });
    const gateway = await startGateway({ dir: join(dir, 'gw') });
    try {
      const res = await runCli(['pull', agent.pullUrl, '--into', gateway.httpUrl, '--after', '1000', '--limit', '150']);
      expect(res.code, res.stderr).toBe(0);
      const result = JSON.parse(res.stdout) as { accepted: number; pulled: number; lastSeq: number };
      expect(result).toMatchObject({ accepted: 150, pulled: 150, lastSeq: 1150 });
      const stored = await gatewayEvents(gateway.httpUrl, 'pull-src');
      expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: 150 }, (_, i) => 1001 + i));
      expect(stored.every((e) => e.ingest?.method === 'pull')).toBe(true);
      // An unreachable agent is one clear line and a non-zero exit.
      const bad = await runCli(['pull', 'http://127.0.0.1:1', '--into', gateway.httpUrl, '--after', '0', '--limit', '1']);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/METEORZX_PULL_FAILED|pull from http:\/\/127\.0\.0\.1:1 failed/);
      expect(bad.stderr).not.toMatch(/\n\s+at /);
    } finally {
      await gateway.stop();
    }
  }, 60_000);
});
