import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { allocatorPath, fillTemplate, GATEWAY_ALLOCATOR, GATEWAY_NODE_FLAGS, gatewayEnv, multiarchTriplet, PACKAGING, PRODUCTS, ROOT, templateValues } from '../../packaging/lib/products.mjs';

const launcher = (product: keyof typeof PRODUCTS): string =>
  fillTemplate(readFileSync(join(PACKAGING, 'scripts', 'launcher.sh'), 'utf8'), templateValues(PRODUCTS[product], '1.2.3'));

describe('node flags and allocator the gateway runs with', () => {
  it('the gateway launcher passes them to node before the bundle; the agent launcher passes none', () => {
    const gateway = launcher('gateway');
    expect(GATEWAY_NODE_FLAGS.length).toBeGreaterThan(0);
    expect(gateway).toContain(`exec "$base/runtime/node" ${GATEWAY_NODE_FLAGS.join(' ')} "$base/lib/meteorzx.mjs" "$@"`);
    expect(launcher('agent')).toContain('exec "$base/runtime/node"  "$base/lib/meteorzx-agent.mjs" "$@"');
  });

  it('npm start passes the same flags', () => {
    const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
    expect(start).toBe(`node ${GATEWAY_NODE_FLAGS.join(' ')} bin/meteorzx.js gateway`);
  });

  it('node accepts them (a misspelt flag would stop the service from starting)', () => {
    const out = execFileSync(process.execPath, [...GATEWAY_NODE_FLAGS, '-e', 'process.stdout.write("ok")'], { encoding: 'utf8' });
    expect(out).toBe('ok');
  });

  it('the gateway launcher preloads jemalloc when the host has it, unless METEORZX_SYSTEM_MALLOC is set; the agent launcher never does', () => {
    const script = (product: keyof typeof PRODUCTS, env: Record<string, string>): string => {
      // Run the launcher's allocator lines with `exec` replaced by printing LD_PRELOAD.
      const body = launcher(product).replace(/^exec .*$/m, 'printf %s "${LD_PRELOAD:-}"');
      // No PATH: the launcher must not need any tool to choose the allocator.
      return execFileSync('/bin/sh', ['-c', body, 'launcher'], { encoding: 'utf8', env });
    };
    const lib = allocatorPath(process.arch);
    const present = existsSync(lib);
    expect(script('gateway', {})).toBe(present ? lib : '');
    // An LD_PRELOAD already set is kept after ours (a library that exists, so ld.so has nothing to complain about).
    if (present) expect(script('gateway', { LD_PRELOAD: lib })).toBe(`${lib}:${lib}`);
    expect(script('gateway', { METEORZX_SYSTEM_MALLOC: '1' })).toBe('');
    expect(script('agent', {})).toBe('');
    // The arm64 tarball's launcher names the arm64 library.
    expect(fillTemplate(readFileSync(join(PACKAGING, 'scripts', 'launcher.sh'), 'utf8'), templateValues(PRODUCTS.gateway, '1', 'arm64'))).toContain(
      `allocator="/usr/lib/aarch64-linux-gnu/${GATEWAY_ALLOCATOR}"`,
    );
  });

  it('gatewayEnv (what the benches start the gateway with) matches the launcher', () => {
    const lib = `/usr/lib/${multiarchTriplet(process.arch)}/${GATEWAY_ALLOCATOR}`;
    expect(gatewayEnv({}, () => true).LD_PRELOAD).toBe(lib);
    expect(gatewayEnv({ LD_PRELOAD: '/x.so' }, () => true).LD_PRELOAD).toBe(`${lib}:/x.so`);
    expect(gatewayEnv({}, () => false).LD_PRELOAD).toBeUndefined();
    expect(gatewayEnv({ METEORZX_SYSTEM_MALLOC: '1' }, () => true).LD_PRELOAD).toBeUndefined();
    expect(multiarchTriplet('x64')).toBe('x86_64-linux-gnu');
    expect(multiarchTriplet('aarch64')).toBe('aarch64-linux-gnu');
  });
});
