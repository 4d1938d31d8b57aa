import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, startAgent, startGateway } from './agent-harness.js';

// Spawns the real CLI as a user runs it; `npm test` builds dist/ first.
const BIN = 'bin/meteorzx.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs meteorzx with a bare environment, so a developer's METEORZX_* variables do not change the outcome. */
function meteorzx(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const STACK_FRAME = /^\s+at /m;

let dir: string;
beforeAll(async () => {
  if (!existsSync('dist/cli/main.js')) throw new Error('dist/ is missing: run `npm run build` (npm test does) before this test');
  dir = await mkdtemp(join(tmpdir(), 'meteorzx-cli-'));
});
afterAll(async () => {
  await killAll();
  await rm(dir, { recursive: true, force: true });
});

describe('meteorzx', () => {
  it('prints help', async () => {
    const run = await meteorzx(['--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Usage: meteorzx/);
    expect(run.stdout).toContain('config');
  });

  it('prints the version from package.json', async () => {
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { version: string };
    const run = await meteorzx(['--version']);
    expect(run).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
  });

  it('exits 2 with one line for a wrong command line', async () => {
    for (const args of [['no-such-command'], ['config', 'check'], ['config', 'check', 'x.yaml', '--type', 'toaster']]) {
      const run = await meteorzx(args);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr, args.join(' ')).toMatch(/^meteorzx: [^\n]+\n$/);
    }
  });
});

/** Runs the CLI; one still running after 15 s is SIGKILLed (a hung start heeds no SIGTERM) and answers code -1. */
function runOrKill(args: string[]): Promise<Run> {
  return new Promise<Run>((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH ?? '' }, timeout: 15_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('meteorzx config check', () => {
  it('accepts the example configs', async () => {
    const agent = await meteorzx(['config', 'check', 'examples/agent.yaml']);
    expect(agent.code).toBe(0);
    expect(agent.stdout).toBe('examples/agent.yaml: valid agent config\n');
    expect(agent.stderr).toContain('assuming examples/agent.yaml is an agent config');

    const gateway = await meteorzx(['config', 'check', 'examples/gateway.yaml', '--type', 'gateway']);
    expect(gateway).toMatchObject({ code: 0, stdout: 'examples/gateway.yaml: valid gateway config\n', stderr: '' });
  });

  it('lists every error with its path and exits 1', async () => {
    const file = join(dir, 'agent.yaml');
    await writeFile(
      file,
      ['id: host-17', 'buffer:', '  retain: 7x', '  colour: blue', 'push:', '  http:', '    url: "htp:/gw"', ''].join('\n'),
    );
    const run = await meteorzx(['config', 'check', file, '--type', 'agent']);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr.split('\n')).toEqual([
      `meteorzx: ${file}: invalid agent config (3 errors)`,
      'buffer.retain: not a duration: "7x" (use e.g. 250ms, 30s, 5m, 1h, 7d)',
      'buffer.colour: unknown key',
      'push.http.url: expected a URL starting with http:// or https://, got "htp:/gw"',
      '',
    ]);
  });

  it('names all three problems of examples/bad-agent.yaml', async () => {
    const run = await meteorzx(['config', 'check', 'examples/bad-agent.yaml']);
    expect(run.code).toBe(1);
    for (const path of ['bufer: unknown key', 'push.http.url: ', 'buffer.retain: not a duration']) expect(run.stderr).toContain(path);
  });

  it('reads JSON, ${VAR} and secret files next to the config', async () => {
    await writeFile(join(dir, 'token'), 'abc\n');
    const file = join(dir, 'gateway.json');
    await writeFile(file, JSON.stringify({ auth: { tokens: [{ name: 'ops', tokenFile: 'token', scopes: ['admin'] }] }, dataDir: '${DATA}' }));
    expect((await meteorzx(['config', 'check', file], { DATA: dir })).code).toBe(0);
    const missing = await meteorzx(['config', 'check', file]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('dataDir: environment variable DATA is not set');
  });

  it('refuses a drop of every item of an array (data.cards[]), in config check and at gateway start, and says what to write', async () => {
    const file = join(dir, 'gateway-drop-items.yaml');
    // In YAML, a path with [] is written in a block list or quoted in a flow one: [data.cards[]] is a syntax error.
    const yaml = ['dataDir: ' + JSON.stringify(dir), 'pipeline:', '  transforms:', '    - mask: ["data.cards[].number"]', '    - drop:', '        - data.cards[]', ''];
    await writeFile(file, yaml.join('\n'));
    const expected = 'drop: "data.cards[]" ends in []: drop the array itself, or a field of its items (data.cards[].cvv)';
    for (const run of [await meteorzx(['config', 'check', file, '--type', 'gateway']), await meteorzx(['gateway', '--config', file])]) {
      expect(run.code).toBe(1);
      expect(run.stderr).toContain(expected);
    }
  });

  it('refuses storage.type postgres, in config check and at gateway start (no silent LevelDB instead)', async () => {
    const file = join(dir, 'gateway-pg.json');
    await writeFile(file, JSON.stringify({ dataDir: dir, storage: { type: 'postgres', url: 'postgres://postgres@127.0.0.1:5432/test' } }));
    const expected = 'storage.type: postgres is not available in this version: the gateway stores in LevelDB only (type: level)';
    for (const run of [await meteorzx(['config', 'check', file]), await meteorzx(['gateway', '--config', file])]) {
      expect(run.code).toBe(1);
      expect(run.stderr).toContain(expected);
    }
    expect(existsSync(join(dir, 'store'))).toBe(false);
  });

  it('refuses a dedup window set longer than storage.retention, in config check and at gateway start', async () => {
    const file = join(dir, 'gateway-short-retention.json');
    await writeFile(file, JSON.stringify({ dataDir: dir, pipeline: { dedup: { window: '7d' } }, storage: { retention: '1d' } }));
    const expected = 'pipeline.dedup.window: must be at most storage.retention';
    for (const run of [await meteorzx(['config', 'check', file]), await meteorzx(['gateway', '--config', file])]) {
      expect(run.code).toBe(1);
      expect(run.stderr).toContain(expected);
    }
    expect(existsSync(join(dir, 'store'))).toBe(false);
  });

  it('reports a missing file in one line, without a stack trace', async () => {
    const run = await meteorzx(['config', 'check', join(dir, 'nope.yaml')]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`meteorzx: config file not found: ${join(dir, 'nope.yaml')}\n`);
    expect(run.stderr).not.toMatch(STACK_FRAME);
  });

  it('reports a YAML syntax error in one line with its position', async () => {
    const file = join(dir, 'broken.yaml');
    await writeFile(file, 'buffer:\n  maxBytes: [1GiB\n');
    const run = await meteorzx(['config', 'check', file, '--type', 'agent']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(new RegExp(`^meteorzx: ${file.replace(/[.]/g, '\\.')}:\\d+:\\d+: not valid YAML: [^\\n]+\\n$`));
  });

  it('exits 1 with one line when the agent cannot make its dataDir, also under /proc where a recursive mkdir never returns', async () => {
    const cases = [
      { dataDir: join('/proc', String(process.pid), 'meteorzx-nope', 'agent'), error: /ENOENT: no such file or directory, mkdir '\/proc\/\d+\/meteorzx-nope'/ },
      { dataDir: join(dir, 'plain.json', 'agent'), error: /ENOTDIR: not a directory/ },
    ];
    await writeFile(join(dir, 'plain.json'), '{}');
    for (const { dataDir, error } of cases) {
      const file = join(dir, 'agent-bad-dir.json');
      await writeFile(file, JSON.stringify({ id: 'bad-dir', dataDir, intake: { http: { listen: '127.0.0.1:0' } }, pull: { listen: '127.0.0.1:0' } }));
      const run = await runOrKill(['agent', '--config', file]);
      expect(run.code).toBe(1);
      const last = run.stderr.trimEnd().split('\n').at(-1) ?? '';
      expect(last).toMatch(/^meteorzx: cannot open the buffer at .*\(METEORZX_BUFFER_OPEN_FAILED\)$/);
      expect(last).toMatch(error);
      expect(run.stderr).not.toMatch(STACK_FRAME);
    }
  }, 40_000);

  it('reports a JSON config nested absurdly deep in one line naming the file, not a stack overflow', async () => {
    const file = join(dir, 'deep.json');
    await writeFile(file, `{"id":"deep","data":${'['.repeat(300_000)}${']'.repeat(300_000)}}`);
    for (const args of [['config', 'check', file, '--type', 'agent'], ['agent', '--config', file]]) {
      const run = await meteorzx(args);
      expect(run.code).toBe(1);
      expect(run.stderr).toBe(`meteorzx: ${file}: nested more than 64 levels deep; not a config\n`);
    }
  });

  it('refuses a config path that never ends (a device, a pipe) after 1 MiB, without reading on', async () => {
    // A pipe fed 2 MiB and held open stands for /dev/zero, which, read whole, grew the process to 23 GB
    // before the OOM killer took it; here, unbounded, the read would wait for an end that never comes.
    const fifo = join(dir, 'endless.yaml');
    await new Promise<void>((resolve, reject) => execFile('mkfifo', [fifo], (err) => (err ? reject(err) : resolve())));
    const feeding = (async () => {
      const writer = await open(fifo, 'w');
      try {
        const chunk = Buffer.alloc(64 * 1024, 'a');
        for (let i = 0; i < 32; i += 1) await writer.write(chunk);
        return writer;
      } catch {
        return writer; // EPIPE: the reader stopped, as it should
      }
    })();
    const run = await runOrKill(['config', 'check', fifo, '--type', 'agent']);
    await (await feeding).close();
    expect(run.stderr).toBe(`meteorzx: cannot read config file ${fifo}: larger than 1 MiB\n`);
    expect(run.code).toBe(1);
  }, 30_000);

  it('reports a YAML alias bomb (billion laughs) as a syntax error of that file, in config check and at start', async () => {
    const file = join(dir, 'laughs.yaml');
    const levels = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 10; i += 1) levels.push(`a${i}: &a${i} [${Array.from({ length: 9 }, () => `*a${i - 1}`).join(',')}]`);
    await writeFile(file, `${levels.join('\n')}\n`);
    for (const args of [['config', 'check', file, '--type', 'agent'], ['agent', '--config', file], ['gateway', '--config', file]]) {
      const run = await meteorzx(args);
      expect(run.code).toBe(1);
      // Before: "meteorzx: Excessive alias count … (set METEORZX_DEBUG=1 for the stack trace)", no file, as for a bug of ours.
      expect(run.stderr).toBe(`meteorzx: ${file}: not valid YAML: Excessive alias count indicates a resource exhaustion attack\n`);
    }
  });

  it('exits 1 with one line when the gateway cannot make its dataDir under /proc, where a recursive mkdir never returns', async () => {
    const file = join(dir, 'gateway-bad-dir.json');
    const dataDir = join('/proc', String(process.pid), 'meteorzx-nope', 'gw');
    await writeFile(file, JSON.stringify({ dataDir, http: { listen: '127.0.0.1:0' }, mqtt: { listen: '127.0.0.1:0' } }));
    const run = await runOrKill(['gateway', '--config', file]);
    expect(run.code).toBe(1);
    expect(run.stderr.trimEnd().split('\n').at(-1)).toMatch(
      /^meteorzx: cannot open the store at \/proc\/\d+\/meteorzx-nope\/gw\/store: ENOENT: no such file or directory, mkdir '\/proc\/\d+\/meteorzx-nope' \(METEORZX_STORAGE_OPEN_FAILED\)$/,
    );
    expect(run.stderr).not.toMatch(STACK_FRAME);
  }, 40_000);

  it('refuses in one line a data dir a running gateway or agent holds, and leaves the running one serving', async () => {
    const gwDir = join(dir, 'held-gw');
    await mkdir(gwDir);
    const gateway = await startGateway(gwDir, await freePort());
    const agentDir = join(dir, 'held-agent');
    await mkdir(agentDir);
    const agent = await startAgent(agentDir, { id: 'held' });
    try {
      const second = join(dir, 'second.json');
      const listeners = { http: { listen: '127.0.0.1:0' }, mqtt: { listen: '127.0.0.1:0' } };
      await writeFile(second, JSON.stringify({ dataDir: join(gwDir, 'gateway-data'), ...listeners }));
      const gw = await runOrKill(['gateway', '--config', second]);
      expect(gw.code).toBe(1);
      expect(gw.stderr.trimEnd().split('\n').at(-1)).toBe(
        `meteorzx: cannot open the store at ${join(gwDir, 'gateway-data', 'store')}: another process has it open (a gateway already running with this data dir?) (METEORZX_STORAGE_OPEN_FAILED)`,
      );
      expect(gw.stderr).not.toMatch(STACK_FRAME);

      await writeFile(second, JSON.stringify({ id: 'held', dataDir: join(agentDir, 'agent-data'), intake: { http: listeners.http }, pull: listeners.http }));
      const ag = await runOrKill(['agent', '--config', second]);
      expect(ag.code).toBe(1);
      expect(ag.stderr.trimEnd().split('\n').at(-1)).toBe(
        `meteorzx: cannot open the buffer at ${join(agentDir, 'agent-data', 'buffer')}: another process has it open (an agent already running with this data dir?) (METEORZX_BUFFER_OPEN_FAILED)`,
      );

      expect((await fetch(`${gateway.url}/healthz`)).status).toBe(200);
      expect((await agent.status()).id).toBe('held');
    } finally {
      await Promise.all([gateway.stop(), agent.stop()]);
    }
  }, 40_000);

  it('names a gateway config that is not a mapping as such, also with --data-dir', async () => {
    const file = join(dir, 'not-a-mapping.yaml');
    await writeFile(file, '"hello"\n');
    for (const extra of [[], ['--data-dir', join(dir, 'never-made')]]) {
      const run = await runOrKill(['gateway', '--config', file, ...extra]);
      expect(run.code).toBe(1);
      expect(run.stderr).toBe(`meteorzx: ${file}: invalid gateway config (1 error)\n(top level): expected a mapping (key: value), got "hello"\n`);
    }
  });

  it('asks for --type when the keys do not tell', async () => {
    const file = join(dir, 'plain.yaml');
    await writeFile(file, 'dataDir: /tmp/x\n');
    const run = await meteorzx(['config', 'check', file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('pass --type agent or --type gateway');
  });
});
