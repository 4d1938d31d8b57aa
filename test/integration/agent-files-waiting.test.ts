import { appendFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, parseLine, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';

/**
 * `intake.maxOpenFiles` reached: paths found by a glob wait their turn for a handle. An agent killed
 * (SIGKILL) while paths still waited had written nothing about them: the restart took each for a file
 * found at start, and with `startAt: end` skipped what was written to it since it was first found; a
 * file that appeared while the agent ran (read whole) was skipped whole. And a path that had waited,
 * then been followed without a line to read, had no checkpoint at its end: the restart read it from 0,
 * lines `startAt: end` had skipped. Through the CLI: 300 files, 2 handles, SIGKILL, restart.
 */

const FILES = 300;

let dir: string;
let logs: string;

beforeAll(async () => {
  dir = await tempDir('agent-files-waiting');
  logs = join(dir, 'logs');
  await mkdir(logs);
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

const line = (type: string, f: string) => `${JSON.stringify({ type, data: { f } })}\n`;
const name = (f: number) => `f${String(f).padStart(3, '0')}.log`;

function config(maxOpenFiles: number): Record<string, unknown> {
  return { id: 'waiting', intake: { maxOpenFiles, files: [{ path: join(logs, '*.log'), startAt: 'end' }] } };
}

/** Paths the agent logged it follows. */
function followed(agent: Agent): Set<string> {
  return new Set(agent.logs.map(parseLine).filter((l) => l?.msg === 'following file').map((l) => String(l?.path)));
}

describe('file intake: paths waiting for a handle when the agent is killed', () => {
  it('reads after the restart what was written to them since they were found, and nothing startAt: end skipped', { timeout: 120_000 }, async () => {
    for (let f = 0; f < FILES; f += 1) await writeFile(join(logs, name(f)), line('test.old', name(f)));
    let agent = await startAgent(dir, config(2));
    await waitFor(async () => (await agent.metric('meteorzx_agent_files_waiting')) > 0, 'paths waiting for a handle');
    // A path still waiting (the line moves at about a pair of files per poll), and one that appears now.
    const waiting = [...Array(FILES).keys()].map(name).filter((n) => !followed(agent).has(join(logs, n))).at(-1) as string;
    appendFileSync(join(logs, waiting), line('test.new', waiting));
    await writeFile(join(logs, 'late.log'), line('test.new', 'late.log'));
    await new Promise((r) => setTimeout(r, 1500)); // globs are expanded every second: late.log is found, and waits
    await agent.kill();
    // The test means something only if both still waited when the agent died.
    expect(followed(agent).has(join(logs, waiting))).toBe(false);
    expect(followed(agent).has(join(logs, 'late.log'))).toBe(false);

    agent = await startAgent(dir, config(1000));
    const read = async () => {
      const body = await (await fetch(`${agent.pullUrl}/v1/events?after=0&limit=100000`)).text();
      return body
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as { type: string; data?: { f?: string } });
    };
    await waitFor(async () => followed(agent).size >= FILES + 1, 'every path followed after the restart');
    // Waited for, then a second more for any line that should not be there; a failure shows what came.
    await waitFor(async () => (await read()).length >= 2, 'two lines', 15_000).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 1000));
    const got = (await read()).map((e) => `${e.type} ${e.data?.f}`).sort();
    // Before: [] (both lines skipped), and after a longer first run, test.old lines of paths that had waited.
    expect(got).toEqual(['test.new late.log', `test.new ${waiting}`].sort());
    expect(await agent.stop()).toBe(0);
  });
});
