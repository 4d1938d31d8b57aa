import { renameSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, removeDir, sleep, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';

/**
 * At a restart, the rotated-away file a path record lists is found by inode beside the path. While the
 * agent was down it may have been deleted and its inode given to another file (ext4 reuses one at once),
 * under another name. Before, that file was read from 0 as the path's rotated file, under the path's name.
 * Staged here by renaming the file to `other.data` and rewriting it: to the agent, the same as a reuse.
 */

let dir: string;
let logs: string;

beforeAll(async () => {
  dir = await tempDir('agent-files-inode-reuse');
  logs = join(dir, 'logs');
  await mkdir(logs);
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

async function lines(agent: Agent): Promise<{ type: string; data?: { line?: string; file?: string } }[]> {
  const body = await (await fetch(`${agent.pullUrl}/v1/events?after=0&limit=1000`)).text();
  return body
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { type: string; data?: { line?: string; file?: string } });
}

describe('file intake: a listed file whose inode another file has at the restart', () => {
  it('is not read as the path rotated file', { timeout: 60_000 }, async () => {
    const log = join(logs, 'app.log');
    await writeFile(log, 'line 1\nline 2\n');
    const config = { id: 'inode-reuse', intake: { files: [{ path: join(logs, '*.log'), format: 'line' }] } };
    let agent = await startAgent(dir, config);
    await waitFor(async () => (await lines(agent)).length >= 2, 'the first lines');
    expect(await agent.stop()).toBe(0);
    renameSync(log, join(dir, 'logs', 'other.data'));
    writeFileSync(join(logs, 'other.data'), 'other 1\nother 2\n');
    writeFileSync(log, 'line 3\n');
    agent = await startAgent(dir, config);
    await waitFor(async () => (await lines(agent)).some((e) => e.data?.line === 'line 3'), 'the new file at the path');
    await sleep(1000);
    // Before: line 1, line 2, other 1, other 2, line 3.
    expect((await lines(agent)).map((e) => `${e.type} ${e.data?.line ?? ''}`)).toEqual(['log.line line 1', 'log.line line 2', 'log.line line 3']);
    expect(await agent.stop()).toBe(0);
  });
});
