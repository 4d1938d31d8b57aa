import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterAll, describe, expect, it } from 'vitest';
import { blockKey } from '../../agent/buffer/keys.js';
import { killAll, postEvents, removeDir, startAgent, tempDir, type Agent } from './agent-harness.js';
import { runCli, runProcess } from './gateway-harness.js';

/**
 * A block of the agent's buffer that no longer decodes is a hole: the pull API steps over it (docs/pull.md,
 * "Holes"), and the agent records the loss with a `meteorzx.gap` event, appended after the range being
 * pulled. Here the damage is met for the first time by a pull (a pull-only agent, restarted over a
 * damaged block).
 */

const dirs: string[] = [];
afterAll(async () => {
  await killAll();
  for (const d of dirs) await removeDir(d);
});

/** A pull-only agent holding seqs 1-15 in three blocks (1-5, 6-10, 11-15), the middle one damaged. */
async function agentWithDamagedBlock(name: string): Promise<Agent> {
  const dir = await tempDir(name);
  dirs.push(dir);
  const config = { id: name };
  const agent = await startAgent(dir, config);
  for (let b = 0; b < 3; b += 1) {
    expect((await postEvents(agent.intakeUrl, Array.from({ length: 5 }, (_, i) => ({ type: `block.${b}`, data: { i } })))).status).toBe(200);
  }
  expect(await agent.stop()).toBe(0);
  const db = new ClassicLevel<string, Buffer>(join(dir, 'agent-data', 'buffer'), { valueEncoding: 'buffer' });
  await db.open();
  try {
    expect(await db.get(blockKey(6))).toBeDefined();
    await db.put(blockKey(6), Buffer.from('not a block'));
  } finally {
    await db.close();
  }
  return startAgent(dir, config);
}

const seqsOf = (text: string): number[] =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { seq: number }).seq);

describe('the agent pull API over a block it finds damaged', () => {
  it('answers a page that ends in the hole whole (curl), and the next page steps over it', async () => {
    const agent = await agentWithDamagedBlock('pull-hole-page');
    // X-Last-Seq 8 is sent before the read meets the damage at 6: the answer ends at 5.
    const first = await runProcess('curl', ['-sS', '-i', `${agent.pullUrl}/v1/events?after=4&limit=4`]);
    // Before: the connection was cut under the answer (curl: "transfer closed"), as when retention deletes the range.
    expect(first.code, first.stderr).toBe(0);
    const [head = '', body = ''] = first.stdout.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    expect(seqsOf(body)).toEqual([5]);
    const next = await runProcess('curl', ['-sS', '-f', `${agent.pullUrl}/v1/events?after=5&limit=4`]);
    expect(next.code, next.stderr).toBe(0);
    expect(seqsOf(next.stdout)).toEqual([11, 12, 13, 14]);
    expect(await agent.stop()).toBe(0);
  });
});

describe('meteorzx pull over a damaged block of the agent buffer', () => {
  // 4: a page ends inside the hole; 5: a page is all hole (no line, its X-Last-Seq past it).
  for (const pageSize of ['1000', '4', '5']) {
    it(`writes every readable event and names the seqs it could not get, on stderr (page size ${pageSize})`, async () => {
      const agent = await agentWithDamagedBlock(`pull-hole-cli-${pageSize}`);
      const out = join(dirs.at(-1) as string, 'pulled.ndjson');
      const res = await runCli(['pull', agent.pullUrl, '--out', out, '--page-size', pageSize]);
      expect(res.code, res.stderr).toBe(0);
      expect(seqsOf(await readFile(out, 'utf8'))).toEqual([1, 2, 3, 4, 5, 11, 12, 13, 14, 15]);
      // Before: nothing on stderr, exit 0; the file simply lacked 6-10 (the agent's gap event came after seq 15).
      const warnings = res.stderr.split('\n').filter((l) => l.startsWith('meteorzx: warning:'));
      expect(warnings).toHaveLength(2);
      expect(warnings[0]).toContain('seqs 6-10 are not in the agent');
      expect(warnings[1]).toContain("5 seqs in 1 range (6-10) were holes in the agent's buffer and are not in the output");

      // The agent recorded the loss after the range pulled; a pull from there gets that gap event, and no warning.
      const next = await runCli(['pull', agent.pullUrl, '--after', '15']);
      expect(next.code, next.stderr).toBe(0);
      expect(next.stderr).toBe('');
      expect(JSON.parse(next.stdout.trim())).toMatchObject({ type: 'meteorzx.gap', data: { reason: 'buffer-corrupt' } });
      expect(await agent.stop()).toBe(0);
    });
  }
});
