import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, removeDir, startAgent, tempDir } from './agent-harness.js';
import { runProcess, startGateway } from './gateway-harness.js';

/**
 * curl adds `Expect: 100-continue` to every body over 1 MiB and sends the
 * body only after a 100 Continue (or a 1 s wait). Node answered the 100 at
 * once, before the intake or the gateway had looked at the request, so a
 * body over maxBodyBytes was uploaded whole to a server that had already
 * answered 413 and closed — and curl often reported the 100 as the final
 * status, the 413 lost in a reset.
 */

let dir: string;
let big: string;
afterAll(async () => {
  await killAll();
  if (dir) await removeDir(dir);
});
beforeAll(async () => {
  dir = await tempDir('expect-continue');
  big = join(dir, 'big.ndjson');
  // 1.5 MiB: over curl's 1 MiB threshold for Expect, and over the 64 KiB limit configured below.
  const line = `${JSON.stringify({ type: 'big', data: { x: 'y'.repeat(1000) } })}\n`;
  await writeFile(big, line.repeat(Math.ceil((1.5 * 1024 * 1024) / line.length)));
});

/** curl's own choice of Expect for a large body; its final status and how many body bytes it sent. */
async function curlPost(url: string, headers: string[] = []): Promise<{ status: string; uploaded: number }> {
  const args = ['-s', '-o', '/dev/null', '-w', '%{http_code} %{size_upload}', '-H', 'Content-Type: application/x-ndjson', ...headers.flatMap((h) => ['-H', h]), '--data-binary', `@${big}`, url];
  const res = await runProcess('curl', args);
  const [status, uploaded] = res.stdout.split(' ');
  return { status: status ?? '', uploaded: Number(uploaded) };
}

describe('Expect: 100-continue with curl', () => {
  it('agent intake: a body over the limit is refused with 413 before curl uploads it', async () => {
    const agent = await startAgent(dir, { limits: { maxBodyBytes: '64KiB' } });
    try {
      expect(await curlPost(agent.intakeUrl)).toEqual({ status: '413', uploaded: 0 });
      // A body within the limit is invited and taken.
      const small = await runProcess('curl', ['-s', '-H', 'Expect: 100-continue', '-H', 'Content-Type: application/json', '--data', '{"type":"continued"}', agent.intakeUrl]);
      expect(JSON.parse(small.stdout)).toMatchObject({ accepted: 1 });
    } finally {
      await agent.stop();
    }
  });

  it('gateway: a body over the limit gets 413, a wrong token 401, before curl uploads it', async () => {
    const gw = await startGateway({ dir, config: { limits: { maxBodyBytes: '64KiB' }, auth: { tokens: [{ name: 'ops', token: 'secret', scopes: ['ingest'] }] } } });
    try {
      const url = `${gw.httpUrl}/v1/events`;
      expect(await curlPost(url, ['Authorization: Bearer secret'])).toEqual({ status: '413', uploaded: 0 });
      expect(await curlPost(url, ['Authorization: Bearer wrong'])).toEqual({ status: '401', uploaded: 0 });
      const small = await runProcess('curl', ['-s', '-H', 'Authorization: Bearer secret', '-H', 'Expect: 100-continue', '-H', 'Content-Type: application/json', '--data', '{"type":"continued","source":"s1"}', url]);
      expect(JSON.parse(small.stdout)).toMatchObject({ accepted: 1 });
    } finally {
      await gw.stop();
    }
  });
});
