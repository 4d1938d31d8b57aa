import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The esbuild bundles (`npm run bundle`, packaging/bundle.mjs), judged by
 * esbuild's own metafile: what the agent bundle was built from. Fast (esbuild
 * builds both in a few seconds), so it runs in every `npm test`.
 */

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');

interface Metafile {
  inputs: Record<string, { bytes: number }>;
  outputs: Record<string, { bytes: number; imports: { path: string; external?: boolean }[] }>;
}

/** Inputs that must never be in the agent bundle: the gateway's code and its own dependencies. */
const GATEWAY_ONLY = [/(^|\/)node_modules\/fastify\//, /(^|\/)node_modules\/@fastify\//, /(^|\/)node_modules\/@marcbachmann\/cel-js\//, /^gateway\//];

function forbidden(meta: Metafile): string[] {
  return Object.keys(meta.inputs).filter((input) => GATEWAY_ONLY.some((re) => re.test(input)));
}

function externals(meta: Metafile): Set<string> {
  return new Set(Object.values(meta.outputs).flatMap((o) => o.imports.filter((i) => i.external).map((i) => i.path)));
}

let out: string;
let agent: Metafile;
let gateway: Metafile;

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'meteorzx-bundle-'));
  await run(process.execPath, [join(ROOT, 'packaging/bundle.mjs'), '--out', out], { cwd: ROOT });
  agent = JSON.parse(await readFile(join(out, 'agent/meta.json'), 'utf8')) as Metafile;
  gateway = JSON.parse(await readFile(join(out, 'gateway/meta.json'), 'utf8')) as Metafile;
}, 120_000);

afterAll(async () => {
  if (out) await rm(out, { recursive: true, force: true });
});

describe('agent bundle', () => {
  it('is built from cli/agent-main.ts and holds no gateway code or gateway dependency', () => {
    expect(Object.keys(agent.inputs)).toContain('cli/agent-main.ts');
    expect(Object.keys(agent.inputs)).toContain('agent/agent.ts');
    // The operator's tools on an edge host: send to the intake, read the agent's status.
    expect(Object.keys(agent.inputs)).toEqual(expect.arrayContaining(['cli/commands/send.ts', 'cli/commands/status.ts']));
    expect(forbidden(agent)).toEqual([]);
  });

  it('leaves the native modules outside, to be shipped with their prebuilds', () => {
    const ext = externals(agent);
    expect(ext.has('classic-level')).toBe(true);
    expect(ext.has('@serialport/bindings-cpp')).toBe(true);
    // Their JS is not inlined either: it finds its .node file by path.
    expect(Object.keys(agent.inputs).filter((i) => /node_modules\/(classic-level|@serialport\/bindings-cpp)\//.test(i))).toEqual([]);
  });
});

describe('gateway bundle', () => {
  it('does contain the gateway and its dependencies (the check above can see them)', () => {
    const found = forbidden(gateway);
    expect(found.some((i) => i.startsWith('gateway/'))).toBe(true);
    expect(found.some((i) => i.includes('node_modules/fastify/'))).toBe(true);
    expect(found.some((i) => i.includes('node_modules/@marcbachmann/cel-js/'))).toBe(true);
    expect(externals(gateway).has('classic-level')).toBe(true);
  });

  it('is larger than the agent bundle', () => {
    const size = (m: Metafile) => Object.values(m.outputs).reduce((n, o) => n + o.bytes, 0);
    expect(size(gateway)).toBeGreaterThan(size(agent));
  });
});
