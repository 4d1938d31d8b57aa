// Ships the native packages the bundles leave external (NATIVE_PACKAGES) in a
// node_modules folder beside the bundle: each package with the JS it needs to
// load its binary, its runtime dependencies, and the prebuilt binaries of
// one platform only. Sources, build files and other platforms' binaries stay
// behind, so the arm64 tarball holds no x64 code and vice versa.
import { cp, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { ROOT } from './products.mjs';

// Needed to compile the addon, never to load it (header-only C/C++ helpers).
const BUILD_ONLY = new Set(['node-addon-api', 'napi-macros', 'node-gyp']);
// Top-level entries of a package never needed at run time. `build/` would be
// a binary compiled on this machine, for this machine's architecture.
const SKIP_ENTRIES = new Set(['node_modules', 'deps', 'src', 'build', 'binding.gyp', 'binding.cc', 'test', 'tests', '.github']);

/**
 * Finds a package the way Node's resolver would from `fromDir`: its own
 * node_modules first, then each parent's.
 */
async function findPackage(name, fromDir) {
  let dir = fromDir;
  for (;;) {
    const candidate = join(dir, 'node_modules', name);
    if (await isDir(candidate)) return candidate;
    if (dir === ROOT || dirname(dir) === dir) break;
    dir = dirname(dir);
  }
  throw new Error(`cannot find package ${name} from ${relative(ROOT, fromDir) || '.'}`);
}

async function isDir(path) {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Copies `names` and their runtime dependencies into destNodeModules.
 * Returns the packages copied as `name@version` with where they went.
 * @param {string[]} names
 * @param {{ destNodeModules: string, platform: string }} options  platform as prebuilds/ names it: linux-x64, linux-arm64
 */
export async function copyNatives(names, { destNodeModules, platform }) {
  /** @type {Map<string, string>} top-level name → version placed there */
  const topLevel = new Map();
  const copied = [];
  // Each entry: package name, where to resolve it from (source tree), the node_modules it goes into.
  const queue = names.map((name) => ({ name, from: ROOT, into: destNodeModules }));
  const seen = new Set();
  while (queue.length > 0) {
    const { name, from, into } = /** @type {{name: string, from: string, into: string}} */ (queue.shift());
    if (BUILD_ONLY.has(name)) continue;
    const src = await findPackage(name, from);
    const pkg = JSON.parse(await readFile(join(src, 'package.json'), 'utf8'));
    // npm's flat layout: one version per name at the top; a second version nests under its dependent.
    const placed = topLevel.get(name);
    const target = placed === undefined || placed === pkg.version ? destNodeModules : into;
    const key = `${target}|${name}@${pkg.version}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (target === destNodeModules) topLevel.set(name, pkg.version);
    const dest = join(target, ...name.split('/'));
    await copyPackage(src, dest, platform);
    copied.push({ name, version: pkg.version, dest });
    for (const dep of Object.keys(pkg.dependencies ?? {})) {
      queue.push({ name: dep, from: src, into: join(dest, 'node_modules') });
    }
  }
  return copied;
}

async function copyPackage(src, dest, platform) {
  await mkdir(dest, { recursive: true });
  for (const entry of await readdir(src, { withFileTypes: true })) {
    if (SKIP_ENTRIES.has(entry.name)) continue;
    if (entry.name === 'prebuilds' && entry.isDirectory()) {
      const wanted = join(src, 'prebuilds', platform);
      if (!(await isDir(wanted))) throw new Error(`${relative(ROOT, src)} has no prebuilt binary for ${platform}`);
      await cp(wanted, join(dest, 'prebuilds', platform), { recursive: true });
      continue;
    }
    await cp(join(src, entry.name), join(dest, entry.name), {
      recursive: true,
      // Nested dependencies are placed by copyNatives, each once.
      filter: (path) => !relative(src, path).split(sep).includes('node_modules'),
    });
  }
}
