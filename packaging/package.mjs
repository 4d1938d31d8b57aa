#!/usr/bin/env node
// `npm run package`: self-contained tarballs and .deb packages.
//
//   node packaging/package.mjs [--version V] [--arch x64,arm64] [--product agent,gateway]
//                              [--no-deb] [--out DIR] [--cache DIR]
//
// Writes into packaging/out/ (git-ignored):
//   meteorzx-agent-<v>-linux-<arch>.tar.gz    meteorzx-agent_<v>_<amd64|arm64>.deb
//   meteorzx-gateway-<v>-linux-<arch>.tar.gz  meteorzx-gateway_<v>_<amd64|arm64>.deb
//   SHA256SUMS                                this run's artefacts, for `sha256sum -c SHA256SUMS`
// Layouts: docs/packaging.md.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { bundle } from './bundle.mjs';
import { buildDeb } from './lib/deb.mjs';
import { copyNatives } from './lib/natives.mjs';
import {
  ARCHES,
  fillTemplate,
  NATIVE_PACKAGES,
  NODE_VERSION,
  PACKAGE_VERSION,
  PACKAGING,
  PRODUCTS,
  ROOT,
  templateValues,
} from './lib/products.mjs';
import { fetchNodeRuntime, unpackNodeRuntime } from './lib/runtime.mjs';

const run = promisify(execFile);

export const DEFAULT_OUT = join(PACKAGING, 'out');

/**
 * @typedef {object} PackageOptions
 * @property {string} [version]     default: package.json's
 * @property {string[]} [arches]    default: x64 and arm64
 * @property {('agent'|'gateway')[]} [products]  default: both
 * @property {boolean} [deb]        build .deb packages too (default true)
 * @property {string} [outDir]      default: packaging/out
 * @property {string} [cacheDir]    downloaded runtimes (default: packaging/out/cache)
 * @property {(line: string) => void} [log]
 */

/**
 * Builds the artefacts; returns their paths and sizes.
 * @param {PackageOptions} [options]
 */
export async function buildPackages(options = {}) {
  const version = options.version ?? PACKAGE_VERSION;
  const arches = options.arches ?? Object.keys(ARCHES);
  const products = options.products ?? /** @type {('agent'|'gateway')[]} */ (Object.keys(PRODUCTS));
  const outDir = options.outDir ?? DEFAULT_OUT;
  const cacheDir = options.cacheDir ?? join(DEFAULT_OUT, 'cache');
  const log = options.log ?? ((line) => process.stdout.write(`${line}\n`));
  for (const arch of arches) if (!(arch in ARCHES)) throw new Error(`unknown arch ${arch} (use ${Object.keys(ARCHES).join(', ')})`);

  const bundles = await bundle({ outDir: join(outDir, 'bundle'), names: products.map((p) => PRODUCTS[p].bundle), version });
  const stageRoot = join(outDir, 'stage');
  const artefacts = [];
  for (const arch of arches) {
    const runtime = await fetchNodeRuntime({ arch, version: NODE_VERSION, cacheDir });
    for (const name of products) {
      const product = PRODUCTS[name];
      const built = bundles[product.bundle];
      const natives = await nativesOf(built.metafile);
      const dirName = `${product.name}-${version}-linux-${arch}`;
      const tree = join(stageRoot, dirName);
      await rm(tree, { recursive: true, force: true });
      await stageTree({ product, version, arch, tree, bundleFile: built.file, natives, runtime });

      const tarball = join(outDir, `${dirName}.tar.gz`);
      await run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-czf', tarball, '-C', stageRoot, dirName]);
      artefacts.push({ kind: 'tarball', product: name, arch, file: tarball, bytes: (await stat(tarball)).size });
      log(`${tarball} (${mib((await stat(tarball)).size)})`);

      if (options.deb !== false) {
        const deb = await buildDeb({ product, version, arch, tree, stageRoot, outDir });
        artefacts.push({ kind: 'deb', product: name, arch, file: deb, bytes: (await stat(deb)).size });
        log(`${deb} (${mib((await stat(deb)).size)})`);
      }
      await rm(tree, { recursive: true, force: true });
    }
  }
  const checksums = join(outDir, 'SHA256SUMS');
  await writeFile(checksums, (await Promise.all(artefacts.map(async (a) => `${await sha256(a.file)}  ${basename(a.file)}\n`))).join(''));
  log(`${checksums} (${artefacts.length} artefacts)`);
  return { version, nodeVersion: NODE_VERSION, bundles, artefacts, checksums };
}

/** SHA-256 of a file, hex, read as a stream (artefacts are tens of MiB). */
async function sha256(file) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return hash.digest('hex');
}

/** The native packages a bundle imports, read from its metafile. */
async function nativesOf(metafile) {
  const meta = JSON.parse(await readFile(metafile, 'utf8'));
  const imported = new Set();
  for (const output of Object.values(meta.outputs)) {
    for (const imp of output.imports) if (imp.external) imported.add(imp.path);
  }
  return NATIVE_PACKAGES.filter((name) => imported.has(name));
}

/**
 * The tarball's tree (docs/packaging.md):
 *   bin/<bin>  lib/<bundle> lib/node_modules/  runtime/node  etc/<config>
 *   systemd/<unit>  docs/  install.sh  uninstall.sh  VERSION
 */
async function stageTree({ product, version, arch, tree, bundleFile, natives, runtime }) {
  const values = {
    ...templateValues(product, version, arch),
    SERVICE_FUNCTIONS: await readFile(join(PACKAGING, 'scripts', 'service-functions.sh'), 'utf8'),
  };
  const fill = async (from, to, mode) => {
    await writeFile(to, fillTemplate(await readFile(from, 'utf8'), values));
    await chmod(to, mode);
  };
  for (const dir of ['bin', 'lib', 'etc', 'systemd', 'docs']) await mkdir(join(tree, dir), { recursive: true });
  await fill(join(PACKAGING, 'scripts', 'launcher.sh'), join(tree, 'bin', product.bin), 0o755);
  await cp(bundleFile, join(tree, 'lib', product.bundleFile));
  await copyNatives(natives, { destNodeModules: join(tree, 'lib', 'node_modules'), platform: `linux-${arch}` });
  await unpackNodeRuntime(runtime, join(tree, 'runtime'));
  await cp(join(PACKAGING, 'etc', product.config), join(tree, 'etc', product.config));
  await cp(join(PACKAGING, 'systemd', `${product.name}.service`), join(tree, 'systemd', `${product.name}.service`));
  for (const doc of ['operations.md', 'packaging.md', 'config.md']) {
    await cp(join(ROOT, 'docs', doc), join(tree, 'docs', doc)).catch(() => undefined);
  }
  await cp(join(ROOT, 'README.md'), join(tree, 'docs', 'README.md')).catch(() => undefined);
  await fill(join(PACKAGING, 'scripts', 'install.sh'), join(tree, 'install.sh'), 0o755);
  await fill(join(PACKAGING, 'scripts', 'uninstall.sh'), join(tree, 'uninstall.sh'), 0o755);
  await writeFile(join(tree, 'VERSION'), `${product.name} ${version} linux-${arch} node ${NODE_VERSION}\n`);
}

function mib(bytes) {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function parseArgs(argv) {
  /** @type {PackageOptions} */
  const options = {};
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === '--version') options.version = value();
    else if (arg === '--arch') options.arches = value().split(',');
    else if (arg === '--product') options.products = /** @type {('agent'|'gateway')[]} */ (value().split(','));
    else if (arg === '--no-deb') options.deb = false;
    else if (arg === '--out') options.outDir = value();
    else if (arg === '--cache') options.cacheDir = value();
    else throw new Error(`unknown option ${arg}`);
  }
  return options;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  try {
    const result = await buildPackages(parseArgs(process.argv.slice(2)));
    for (const [name, b] of Object.entries(result.bundles)) process.stdout.write(`bundle ${name}: ${mib(b.bytes)}\n`);
  } catch (err) {
    process.stderr.write(`package: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
