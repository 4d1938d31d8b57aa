import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, postEvents, removeDir, startAgent, tempDir, type Agent } from './agent-harness.js';

/**
 * The agent's pull API caps a page at `maxBytes`: bytes on the wire, UTF-8,
 * not UTF-16 code units (a '€' is one unit and three bytes). Read with curl
 * from the real agent.
 */

const run = promisify(execFile);
const CAP = 10_000;

let dir: string;
let agent: Agent;

beforeAll(async () => {
  dir = await tempDir('agent-pull-bytes');
  agent = await startAgent(dir, { id: 'pull-bytes' });
  const events = Array.from({ length: 20 }, (_, i) => ({ id: `mb-${i}`, type: 'test.utf8', data: { i, text: '€'.repeat(1000) } }));
  expect((await postEvents(agent.intakeUrl, events)).status).toBe(200);
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

/** GET with curl: the body as bytes and the X-Last-Seq header. */
async function curlPage(query: string): Promise<{ body: Buffer; lastSeq: string | undefined }> {
  const headers = join(dir, 'headers.txt');
  const bodyFile = join(dir, 'body.ndjson');
  await run('curl', ['-sf', '-D', headers, '-o', bodyFile, `${agent.pullUrl}/v1/events?${query}`]);
  const lastSeq = /^x-last-seq: (\d+)\r?$/im.exec(await readFile(headers, 'utf8'))?.[1];
  return { body: await readFile(bodyFile), lastSeq };
}

describe('agent pull: maxBytes counts UTF-8 bytes', () => {
  it('a page of multi-byte events holds as many whole lines as fit in maxBytes bytes', async () => {
    const all = (await curlPage('after=0&limit=100')).body.toString('utf8').split('\n').filter(Boolean);
    expect(all).toHaveLength(20);
    // What fits: whole lines (with their newline) while the UTF-8 total stays within the cap.
    let fit = 0;
    let total = 0;
    while (fit < all.length && total + Buffer.byteLength(all[fit] as string) + 1 <= CAP) total += Buffer.byteLength(all[fit++] as string) + 1;
    expect(fit).toBe(3);

    const page = await curlPage(`after=0&limit=100&maxBytes=${CAP}`);
    expect({ lines: page.body.toString('utf8').split('\n').filter(Boolean).length, bytes: page.body.length, lastSeq: page.lastSeq }).toEqual({
      lines: fit,
      bytes: total,
      lastSeq: String(fit),
    });
  });
});
