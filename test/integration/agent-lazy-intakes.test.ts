import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAll, parseLine, removeDir, tempDir, waitFor } from './agent-harness.js';

/**
 * DESIGN §7 (the agent stays light): an agent configured with a file intake
 * only must not load the other intakes' modules, nor aedes or serialport,
 * nor the gateway's fastify. A module-resolve hook (node:module register)
 * records every module the real `meteorzx agent` process resolves.
 */

const BIN = resolve(import.meta.dirname, '../../bin/meteorzx.js');
let dir: string;

beforeAll(async () => {
  dir = await tempDir('agent-lazy');
});

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

async function modulesLoadedBy(config: Record<string, unknown>): Promise<string[]> {
  const out = join(dir, `loaded-${Date.now()}.txt`);
  const hooks = join(dir, 'hooks.mjs');
  await writeFile(
    hooks,
    `import { appendFileSync } from 'node:fs';
let out;
export function initialize(data) { out = data.out; }
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(out, result.url + '\\n');
  return result;
}
`,
  );
  const registerFile = join(dir, 'register.mjs');
  await writeFile(
    registerFile,
    `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)}, { data: { out: ${JSON.stringify(out)} } });\n`,
  );
  await writeFile(out, '');
  const file = join(dir, 'agent.json');
  await writeFile(file, JSON.stringify({ dataDir: join(dir, 'agent-data'), pull: { listen: '127.0.0.1:0' }, ...config }));
  const proc = spawn(process.execPath, ['--import', registerFile, BIN, 'agent', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  const logs: string[] = [];
  proc.stderr.on('data', (b: Buffer) => logs.push(...b.toString().split('\n')));
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    await waitFor(() => {
      if (proc.exitCode !== null) throw new Error(`agent exited ${proc.exitCode}: ${logs.slice(-5).join('\n')}`);
      return logs.some((l) => parseLine(l)?.msg === 'listening');
    }, 'agent listening');
  } finally {
    proc.kill('SIGTERM');
    await exited;
  }
  return (await readFile(out, 'utf8')).split('\n').filter(Boolean);
}

describe('a files-only agent loads only what it uses', () => {
  it('no syslog, serial or edge-broker modules, no aedes, serialport or fastify', async () => {
    const loaded = await modulesLoadedBy({ intake: { files: [{ path: join(dir, 'app.log') }] } });
    expect(loaded.some((u) => u.includes('/agent/intake/files/file-intake.js'))).toBe(true);
    const heavy = loaded.filter((u) => /\/agent\/intake\/(syslog|serial|mqtt)\/|\/node_modules\/(aedes|serialport|@serialport|fastify)\//.test(u));
    expect(heavy).toEqual([]);
  });

  it('the syslog intake, when configured, is loaded (the probe sees lazy imports)', async () => {
    const loaded = await modulesLoadedBy({ intake: { syslog: { listen: 'udp://127.0.0.1:0' } } });
    expect(loaded.some((u) => u.includes('/agent/intake/syslog/syslog-intake.js'))).toBe(true);
    expect(loaded.some((u) => u.includes('/agent/intake/files/'))).toBe(false);
  });
});
