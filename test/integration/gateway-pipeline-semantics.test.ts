import { createHmac } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ndjson, removeDir, runCli, runProcess, startGateway, tempDir, type RunningGateway } from './gateway-harness.js';

/**
 * What the gateway stores after its transforms and rules, on edge-case
 * events: the real CLI, events posted with curl, read back with
 * `meteorzx query`.
 */
let dir: string;
let gw: RunningGateway;

const pipeline = {
  transforms: [
    { rename: { 'data.user': 'data.meta.user', 'data.card': 'data.pay.card' } },
    { mask: ['data.pay.card'] },
    { hash: ['actor'] },
    // Into arrays: every item's member, every item.
    { mask: ['data.cards[].number'] },
    { hash: ['data.emails[]'] },
    { drop: ['data.users[].password'] },
  ],
  // Relative to the config file's folder, like every secret file.
  hashKeyFile: 'hash.key',
  rules: [
    {
      name: 'failed-login',
      // A comment with an apostrophe before `type`: the gateway must start, and the rule must match.
      if: 'outcome == "failure" // don\'t tag successes\n && type == "auth.login"',
      tag: 'security',
    },
    // Exponential in a backtracking engine; CEL's matches is RE2, linear.
    { name: 'runs-of-a', if: 'has(data.s) && data.s.matches("^(a+)+$")', tag: 'aaa' },
  ],
};

beforeAll(async () => {
  dir = await tempDir();
  await writeFile(path.join(dir, 'hash.key'), 'key\n');
  gw = await startGateway({ dir, config: { pipeline } });
});

afterAll(async () => {
  await gw?.stop();
  await removeDir(dir);
});

interface Stored {
  id: string;
  type: string;
  actor?: string;
  tags?: string[];
  data?: Record<string, unknown>;
}

async function post(events: unknown[]): Promise<{ accepted: number; duplicates: number; rejected: unknown[] }> {
  // -m: a gateway stuck in a rule must fail the test, not hang it.
  const res = await runProcess('curl', ['-sS', '-m', '50', '-X', 'POST', '-H', 'Content-Type: application/x-ndjson', '--data-binary', '@-', `${gw.httpUrl}/v1/events`], {
    input: events.map((e) => JSON.stringify(e)).join('\n'),
  });
  expect(res.code, res.stderr).toBe(0);
  return JSON.parse(res.stdout) as { accepted: number; duplicates: number; rejected: unknown[] };
}

async function stored(source: string): Promise<Stored[]> {
  const res = await runCli(['query', gw.httpUrl, '--source', source]);
  expect(res.code, res.stderr).toBe(0);
  return ndjson<Stored>(res.stdout);
}

describe('gateway pipeline semantics, through the CLI', () => {
  it('hashes with the HMAC key of pipeline.hashKeyFile, so a hashed actor cannot be found by hashing candidates', async () => {
    const answer = await post([{ id: 'hk-1', source: 'hash-key', type: 't', actor: 'The quick brown fox jumps over the lazy dog' }]);
    expect(answer.accepted).toBe(1);
    const [event] = await stored('hash-key');
    // HMAC-SHA256, key "key" (the file's trailing line break removed): the well-known test vector.
    expect(event?.actor).toBe('f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8');
  });

  it('keeps a field a rename cannot move (a value in the way of its new path) instead of losing it', async () => {
    const answer = await post([
      { id: 'rn-1', source: 'app-rn', type: 'pay', data: { user: 'alice', card: '4111111111111111', meta: { v: 1 } } },
      // data.meta is text: it cannot hold the renamed user.
      { id: 'rn-2', source: 'app-rn', type: 'pay', data: { user: 'bob', meta: 'legacy', card: '5500000000000004' } },
    ]);
    expect(answer).toEqual({ accepted: 2, duplicates: 0, rejected: [] });
    const events = await stored('app-rn');
    expect(events.map((e) => [e.id, e.data])).toEqual([
      ['rn-1', { meta: { v: 1, user: 'alice' }, pay: { card: '***' } }],
      ['rn-2', { user: 'bob', meta: 'legacy', pay: { card: '***' } }],
    ]);
  });

  it('masks, hashes and drops inside arrays (data.cards[].number), leaving the rest of each item and other items as they are', async () => {
    const answer = await post([
      {
        id: 'ar-1',
        source: 'app-ar',
        type: 'pay',
        data: {
          cards: [{ number: '4111111111111111', brand: 'visa' }, { brand: 'mc' }, 'legacy'],
          emails: ['a@example.com'],
          users: [{ name: 'alice', password: 'hunter2' }, { name: 'bob' }],
        },
      },
    ]);
    expect(answer).toEqual({ accepted: 1, duplicates: 0, rejected: [] });
    const [event] = await stored('app-ar');
    expect(event?.data).toEqual({
      cards: [{ number: '***', brand: 'visa' }, { brand: 'mc' }, 'legacy'],
      // HMAC-SHA256 with the key "key" (pipeline.hashKeyFile), of each item on its own.
      emails: [createHmac('sha256', 'key').update('a@example.com').digest('hex')],
      users: [{ name: 'alice' }, { name: 'bob' }],
    });
  });

  it('matches a rule whose condition has a // comment with a quote in it', async () => {
    await post([
      { id: 'rl-1', source: 'app-rl', type: 'auth.login', outcome: 'failure' },
      { id: 'rl-2', source: 'app-rl', type: 'auth.login', outcome: 'success' },
      { id: 'rl-3', source: 'app-rl', type: 'auth.logout', outcome: 'failure' },
    ]);
    const events = await stored('app-rl');
    expect(events.map((e) => [e.id, e.tags])).toEqual([
      ['rl-1', ['security']],
      ['rl-2', undefined],
      ['rl-3', undefined],
    ]);
  });

  it('evaluates matches in time linear in the text, as RE2 does: a pattern that backtracks stops nothing', async () => {
    const answer = await post([
      { id: 're-1', source: 'app-re', type: 'x', data: { s: `${'a'.repeat(64)}b` } },
      { id: 're-2', source: 'app-re', type: 'x', data: { s: 'aaaa' } },
    ]);
    expect(answer).toEqual({ accepted: 2, duplicates: 0, rejected: [] });
    expect((await stored('app-re')).map((e) => [e.id, e.tags])).toEqual([
      ['re-1', undefined],
      ['re-2', ['aaa']],
    ]);
  });
});
