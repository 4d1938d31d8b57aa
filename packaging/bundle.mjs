#!/usr/bin/env node
// `npm run bundle`: one ESM file per product, built by esbuild straight from
// the TypeScript sources (no tsc step needed), plus esbuild's metafile beside
// each so a test can prove what went in.
//
//   packaging/out/bundle/agent/meteorzx-agent.mjs   ← cli/agent-main.ts
//   packaging/out/bundle/gateway/meteorzx.mjs       ← cli/main.ts (every command)
//
// Native modules stay outside the bundle (their .node files are loaded by
// path at run time); packaging/lib/natives.mjs ships them beside it.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { NATIVE_PACKAGES, ROOT } from './lib/products.mjs';

export const DEFAULT_OUT = join(ROOT, 'packaging', 'out', 'bundle');

/** The bundles: product name → entry and output file name. */
export const BUNDLES = {
  agent: { entry: 'cli/agent-main.ts', file: 'meteorzx-agent.mjs' },
  gateway: { entry: 'cli/main.ts', file: 'meteorzx.mjs' },
};

// The dependencies are CommonJS: esbuild turns their require() of Node
// built-ins into a call of the ambient `require`, which an ES module lacks.
const BANNER = [
  "import { createRequire as __meteorzxCreateRequire } from 'node:module';",
  'const require = __meteorzxCreateRequire(import.meta.url);',
].join('\n');

/**
 * Builds the named bundles into outDir/<name>/ and returns, per bundle, its
 * path, size in bytes and metafile path.
 * @param {{ outDir?: string, names?: (keyof typeof BUNDLES)[], version?: string }} [options]
 */
export async function bundle(options = {}) {
  const outDir = resolve(options.outDir ?? DEFAULT_OUT);
  const names = options.names ?? /** @type {(keyof typeof BUNDLES)[]} */ (Object.keys(BUNDLES));
  const results = {};
  for (const name of names) {
    const spec = BUNDLES[name];
    const dir = join(outDir, name);
    await mkdir(dir, { recursive: true });
    const outfile = join(dir, spec.file);
    const result = await build({
      absWorkingDir: ROOT,
      entryPoints: [spec.entry],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      external: NATIVE_PACKAGES,
      banner: { js: BANNER },
      // Identifiers keep their names: stack traces from the field stay readable.
      minifySyntax: true,
      minifyWhitespace: true,
      keepNames: true,
      legalComments: 'eof',
      plugins: options.version === undefined ? [] : [versionOverride(options.version)],
      metafile: true,
      logLevel: 'warning',
    });
    const metafile = join(dir, 'meta.json');
    await writeFile(metafile, JSON.stringify(result.metafile));
    const output = Object.values(result.metafile.outputs)[0];
    results[name] = { file: outfile, bytes: output?.bytes ?? 0, metafile };
  }
  return results;
}

/**
 * Makes the bundle report `version` (`--version`) instead of package.json's:
 * a package built as N+1 must say so, e.g. in the upgrade test.
 * @param {string} version
 * @returns {import('esbuild').Plugin}
 */
function versionOverride(version) {
  const pkgPath = join(ROOT, 'package.json');
  return {
    name: 'meteorzx-version',
    setup(b) {
      b.onLoad({ filter: /[\\/]package\.json$/ }, async (args) => {
        if (args.path !== pkgPath) return undefined;
        const pkg = JSON.parse(await readFile(pkgPath, 'utf8'));
        return { contents: JSON.stringify({ ...pkg, version }), loader: 'json' };
      });
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const outArg = process.argv.indexOf('--out');
  const results = await bundle(outArg > 0 ? { outDir: process.argv[outArg + 1] } : {});
  for (const [name, r] of Object.entries(results)) {
    process.stdout.write(`${name.padEnd(8)} ${(r.bytes / 1024 / 1024).toFixed(2).padStart(6)} MiB  ${r.file}\n`);
  }
}
