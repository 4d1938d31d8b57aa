// The Node.js runtime shipped in the tarballs: the npm registry's
// node-linux-<arch> package (the official release binary, as an npm package),
// fetched with `npm pack` once and cached, so builds after the first are
// offline and every build of a version ships the same bytes.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Returns the path of node-linux-<arch>-<version>.tgz in cacheDir, downloading it first if needed.
 * @param {{ arch: string, version: string, cacheDir: string }} options
 */
export async function fetchNodeRuntime({ arch, version, cacheDir }) {
  const file = join(cacheDir, `node-linux-${arch}-${version}.tgz`);
  if (existsSync(file)) return file;
  await mkdir(cacheDir, { recursive: true });
  // Into a private folder, then renamed: builds running at once never see half a file.
  const tmp = await mkdtemp(join(cacheDir, '.fetch-'));
  try {
    await run('npm', ['pack', `node-linux-${arch}@${version}`, '--pack-destination', tmp, '--silent'], { maxBuffer: 16 << 20 });
    const [packed] = (await readdir(tmp)).filter((f) => f.endsWith('.tgz'));
    if (packed === undefined) throw new Error(`npm pack node-linux-${arch}@${version} produced no file`);
    await rename(join(tmp, packed), file);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return file;
}

/**
 * Unpacks the runtime's `bin/node` and LICENSE into destDir (destDir/node, destDir/LICENSE).
 * The package's headers, docs and npm are left out: the launcher needs node only.
 */
export async function unpackNodeRuntime(tgz, destDir) {
  await mkdir(destDir, { recursive: true });
  await run('tar', ['-xzf', tgz, '-C', destDir, '--strip-components=2', 'package/bin/node']);
  await run('tar', ['-xzf', tgz, '-C', destDir, '--strip-components=1', 'package/LICENSE']);
}
