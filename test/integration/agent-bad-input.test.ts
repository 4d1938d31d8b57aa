import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChainedEvent } from '../../protocols/index.js';
import { killAll, removeDir, startAgent, tempDir, type Agent } from './agent-harness.js';

/** Bad input sent with curl (a real client) to the real agent: clear per-event errors, valid neighbours buffered. */

let dir: string;
let agent: Agent;
beforeAll(async () => {
  dir = await tempDir('agent-bad-input');
  agent = await startAgent(dir, { id: 'bad-input', limits: { maxEventBytes: '1KiB', maxDepth: 8, maxBodyBytes: '64KiB' } });
});
afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

async function curl(body: Buffer, contentType: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const file = join(dir, `body-${Math.random().toString(36).slice(2)}`);
  await writeFile(file, body);
  const out = spawnSync('curl', ['-s', '-w', '\n%{http_code}', '-X', 'POST', '-H', `content-type: ${contentType}`, '--data-binary', `@${file}`, agent.intakeUrl], { encoding: 'utf8' });
  const lines = out.stdout.trimEnd().split('\n');
  const status = Number(lines.pop());
  return { status, json: JSON.parse(lines.join('\n') || '{}') as Record<string, unknown> };
}

async function buffered(): Promise<ChainedEvent[]> {
  const text = (await (await fetch(`${agent.pullUrl}/v1/events?after=0&limit=1000`)).text()).trim();
  return text === '' ? [] : text.split('\n').map((l) => JSON.parse(l) as ChainedEvent);
}

describe('agent intake, bad input', () => {
  it('rejects each bad line with a clear error and buffers every valid neighbour', async () => {
    let deep: unknown = { leaf: 1 };
    for (let i = 0; i < 20; i += 1) deep = { d: deep };
    const body = Buffer.concat([
      Buffer.from(`${JSON.stringify({ type: 'good.1' })}\n`),
      Buffer.from('{"type": "half\n'),
      Buffer.from(`${JSON.stringify({ type: 'big', data: { x: 'y'.repeat(2000) } })}\n`),
      Buffer.from(`${JSON.stringify({ type: 'deep', data: deep })}\n`),
      Buffer.from(`${JSON.stringify({ type: ['not', 'a', 'string'], time: 'yesterday', seq: -1 })}\n`),
      Buffer.from([0x7b, 0x22, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d, 0x0a]), // {"type":"\xc3(" — invalid UTF-8
      Buffer.from('{"type":"huge","data":{"m":1e400}}\n'), // Infinity once parsed: no JSON can hold it
      Buffer.from(`${JSON.stringify({ type: 'good.2' })}\n`),
    ]);
    const res = await curl(body, 'application/x-ndjson');
    expect(res.status).toBe(200);
    expect(res.json.accepted).toBe(2);
    const errors = Object.fromEntries((res.json.rejected as Array<{ index: number; error: string }>).map((r) => [r.index, r.error]));
    expect(errors[1]).toMatch(/malformed JSON/);
    expect(errors[2]).toMatch(/over the limit of 1024 \(maxEventBytes\)/);
    expect(errors[3]).toMatch(/nesting deeper than the limit of 8 \(maxDepth\)/);
    expect(errors[4]).toMatch(/type: must be a string/);
    expect(errors[4]).toMatch(/time: must be an RFC 3339/);
    expect(errors[4]).toMatch(/seq: must be an integer/);
    expect(errors[5]).toMatch(/invalid UTF-8/);
    expect(errors[6]).toMatch(/^data\.m: number out of range/);
    expect((await buffered()).map((e) => e.type)).toEqual(['good.1', 'good.2']);
  });

  it('answers 413 over the body limit, 415 for an unknown content type, 400 for an unreadable JSON body', async () => {
    const big = await curl(Buffer.from(`${JSON.stringify({ type: 'x' })}\n`.repeat(8000)), 'application/x-ndjson');
    expect(big.status).toBe(413);
    expect(big.json.code).toBe('METEORZX_BODY_TOO_LARGE');
    const xml = await curl(Buffer.from('<event/>'), 'application/xml');
    expect(xml.status).toBe(415);
    expect(xml.json.error).toMatch(/application\/x-ndjson/);
    // A first try with curl -d (form-urlencoded): the answer says which flag to add.
    const form = spawnSync('curl', ['-s', '-d', '{"type":"x"}', agent.intakeUrl], { encoding: 'utf8' });
    expect(JSON.parse(form.stdout)).toMatchObject({
      code: 'METEORZX_UNSUPPORTED_MEDIA_TYPE',
      error: `unsupported Content-Type "application/x-www-form-urlencoded" (use application/json or application/x-ndjson; curl -d sends that type: add -H 'Content-Type: application/json')`,
    });
    const broken = await curl(Buffer.from('[{"type":"a"},'), 'application/json');
    expect(broken.status).toBe(400);
    expect(broken.json.code).toBe('METEORZX_BODY_UNREADABLE');
    // None of it reached the buffer; the agent is still up.
    expect((await agent.status()).head).toBe(2);
  });
});
