import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkReport, type Report } from '../../bench/lib/results.mjs';

// The runner against fixture benches: one that reports a figure (a different
// value each run), one that crashes. A crash must not stop the others, must
// be named, and must make the exit status 1 (what CI's bench-quick relies on).
const OK = `
import { writeFileSync } from 'node:fs';
const runs = process.argv.includes('--quick') ? 'quick' : 'full';
const n = [10, 30, 20][Number(process.env.METEORZX_BENCH_RESULT.match(/-(\\d+)\\.json$/)[1]) - 1];
writeFileSync(process.env.METEORZX_BENCH_RESULT, JSON.stringify({ figures: [{ id: 'fixture.rate', label: 'fixture ' + runs, value: n, unit: 'ev/s', budget: 'agent.intake.fsync', reference: { label: 'ref', value: 10 } }] }));
`;
const CRASH = `console.log('about to fail'); process.exit(3);`;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meteorzx-bench-run-test-'));
  await writeFile(join(dir, 'fixture-ok.mjs'), OK);
  await writeFile(join(dir, 'fixture-crash.mjs'), CRASH);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function runner(argv: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['bench/run.mjs', '--no-build', '--dir', dir, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b) => (stdout += b));
    p.stderr.on('data', (b) => (stderr += b));
    p.once('error', reject);
    p.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('bench/run.mjs', () => {
  it('runs every bench N times, reports the crash, still prints the median figure, exits 1', async () => {
    const { code, stdout, stderr } = await runner(['--runs', '3']);
    expect(code).toBe(1);
    expect(stderr).toContain('fixture-crash run 1: CRASHED (exited with 3)');
    expect(stderr).toContain('about to fail');
    expect(stdout).toMatch(/fixture full\s+20\.0\s+10\.0–30\.0\s+ev\/s\s+≥ 100,000 ev\/s\s+missed\s+ref\s+10\.0\s+2\.00×/);
    const files = (await readdir(join(dir, 'results'))).filter((f) => f.endsWith('.json'));
    expect(files).toHaveLength(1);
    const report = JSON.parse(await readFile(join(dir, 'results', files[0] ?? ''), 'utf8')) as Report;
    expect(checkReport(report)).toEqual([]);
    expect(report.crashed).toEqual(['fixture-crash']);
    expect(report.benches.find((b) => b.name === 'fixture-ok')?.runs).toHaveLength(3);
  });

  it('exits 0 when nothing crashed, budgets missed or not (--only)', async () => {
    const { code, stdout } = await runner(['--only', 'fixture-ok', '--runs', '1']);
    expect(code).toBe(0);
    expect(stdout).toContain('1 missed (reported, not asserted)');
  });
});
