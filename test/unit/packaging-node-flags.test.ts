import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fillTemplate, GATEWAY_NODE_FLAGS, PACKAGING, PRODUCTS, ROOT, templateValues } from '../../packaging/lib/products.mjs';

const launcher = (product: keyof typeof PRODUCTS): string =>
  fillTemplate(readFileSync(join(PACKAGING, 'scripts', 'launcher.sh'), 'utf8'), templateValues(PRODUCTS[product], '1.2.3'));

describe('node flags the gateway runs with', () => {
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
});
