// How a bench of this suite hands its result to bench/run.mjs: a JSON file at
// $METEORZX_BENCH_RESULT when the runner set it, else bench/results/<name>.json
// (so a bench run by hand leaves its result where the older benches do).
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ROOT } from './processes.mjs';

/** Writes `{bench: name, at, node, ...result}`; returns the path. */
export async function emitResult(name, result) {
  const path = process.env.METEORZX_BENCH_RESULT || join(ROOT, 'bench', 'results', `${name}.json`);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify({ bench: name, at: new Date().toISOString(), node: process.version, ...result }, null, 2)}\n`);
  return path;
}
