import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ndjson, removeDir, runProcess, startGateway, tempDir, type RunningGateway } from './gateway-harness.js';

/**
 * A rule whose condition loops over an event's list inside another such loop
 * is bounded by pipeline.ruleCostLimit (cost-meter.ts). Measured before, on
 * the real gateway with curl: one event of 12,000 numbers stalled another
 * client's event for 19.5 s (the whole process stands still: one thread);
 * the 64 KiB event below, 32,000 numbers, is 10⁹ steps — minutes. Now it is
 * stored untagged, the rule's error counted and logged, and the event posted
 * beside it is answered as usual.
 */
let dir: string;
let gw: RunningGateway;
let bigFile: string;

beforeAll(async () => {
  dir = await tempDir('meteorzx-rule-cost-');
  bigFile = path.join(dir, 'big.json');
  // Compact JSON: just under the 64 KiB event limit.
  const big = JSON.stringify({ id: 'big', type: 'list.sync', source: 's1', data: { items: Array.from({ length: 32_000 }, () => 0) } });
  expect(big.length).toBeLessThan(65_536);
  await writeFile(bigFile, big);
  gw = await startGateway({
    dir,
    config: { pipeline: { rules: [{ name: 'dup-items', if: 'has(data.items) && data.items.exists(x, data.items.exists(y, x + y == -1.0))', tag: 'dup' }] } },
  });
}, 30_000);

afterAll(async () => {
  await gw.stop();
  await removeDir(dir);
});

const post = (args: string[]) =>
  runProcess('curl', ['-sS', '-w', '\n%{http_code}', '-H', 'content-type: application/json', ...args, `${gw.httpUrl}/v1/events`]);

describe('a rule condition with a loop in a loop, on a 64 KiB list', () => {
  it('stores the event untagged and answers the event posted beside it', async () => {
    const [big, small] = await Promise.all([post(['--data-binary', `@${bigFile}`]), post(['-d', '{"id":"small","type":"door.open","source":"s2"}'])]);
    expect(big.stdout).toMatch(/^\{"accepted":1,"duplicates":0,"rejected":\[\]\}\n200$/);
    expect(small.stdout).toMatch(/^\{"accepted":1,"duplicates":0,"rejected":\[\]\}\n200$/);
    const stored = ndjson<{ id: string; tags?: string[] }>((await runProcess('curl', ['-sS', `${gw.httpUrl}/v1/events?id=big`])).stdout);
    expect(stored.map((e) => [e.id, e.tags ?? []])).toEqual([['big', []]]);
  });

  it('counts the rule error and logs why', async () => {
    const metrics = (await runProcess('curl', ['-sS', `${gw.httpUrl}/metrics`])).stdout;
    expect(metrics).toMatch(/^meteorzx_gateway_rule_errors_total\{rule="dup-items"\} 1$/m);
    const line = gw.logs.find((l) => l.includes('rule condition failed'));
    expect(line).toContain('the condition exceeded its cost limit (pipeline.ruleCostLimit, 100000); taken as no match');
  });
});
