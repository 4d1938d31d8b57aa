// The .deb of one product and architecture, built with `dpkg-deb --build`
// from the same staged tree as the tarball. Layout (docs/packaging.md):
//   /opt/<name>/{bin,lib,runtime,docs,VERSION}   the program, as in the tarball
//   /usr/bin/<bin> → /opt/<name>/bin/<bin>
//   /etc/meteorzx/<config>                        conffile: an upgrade keeps local edits
//   /lib/systemd/system/<name>.service
// The data directory is not in the package, so neither an upgrade nor a
// removal touches it; postinst creates it.
import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ARCHES, fillTemplate, installPrefix, PACKAGING, templateValues } from './products.mjs';

const run = promisify(execFile);

/**
 * @param {{ product: import('./products.mjs').Product, version: string, arch: string, tree: string, stageRoot: string, outDir: string }} options
 * @returns {Promise<string>} the .deb's path
 */
export async function buildDeb({ product, version, arch, tree, stageRoot, outDir }) {
  const debArch = ARCHES[/** @type {keyof typeof ARCHES} */ (arch)].deb;
  const root = join(stageRoot, `deb-${product.name}-${arch}`);
  await rm(root, { recursive: true, force: true });
  const prefix = join(root, installPrefix(product));
  await mkdir(prefix, { recursive: true });
  for (const entry of ['bin', 'lib', 'runtime', 'docs', 'VERSION']) await cp(join(tree, entry), join(prefix, entry), { recursive: true });

  await mkdir(join(root, 'usr', 'bin'), { recursive: true });
  await symlink(`${installPrefix(product)}/bin/${product.bin}`, join(root, 'usr', 'bin', product.bin));
  await mkdir(join(root, 'etc', 'meteorzx'), { recursive: true });
  await cp(join(tree, 'etc', product.config), join(root, 'etc', 'meteorzx', product.config));
  // /lib rather than /usr/lib: found by systemd on hosts from before the /usr merge too.
  await mkdir(join(root, 'lib', 'systemd', 'system'), { recursive: true });
  await cp(join(tree, 'systemd', `${product.name}.service`), join(root, 'lib', 'systemd', 'system', `${product.name}.service`));
  const docDir = join(root, 'usr', 'share', 'doc', product.name);
  await mkdir(docDir, { recursive: true });
  await writeFile(
    join(docDir, 'copyright'),
    `${product.name}: MeteorZX, Apache-2.0 (/usr/share/common-licenses/Apache-2.0).\n` +
      `Includes the Node.js runtime (MIT and others, ${installPrefix(product)}/runtime/LICENSE)\n` +
      `and npm packages under ${installPrefix(product)}/lib (licences in each package folder and bundle).\n`,
  );

  const debian = join(root, 'DEBIAN');
  await mkdir(debian);
  const { stdout } = await run('du', ['-sk', '--exclude=DEBIAN', root]);
  const installedKiB = Number.parseInt(stdout, 10);
  await writeFile(
    join(debian, 'control'),
    [
      `Package: ${product.name}`,
      `Version: ${version}`,
      `Architecture: ${debArch}`,
      'Maintainer: MeteorZX maintainers <meteorzx@localhost>',
      `Installed-Size: ${installedKiB}`,
      'Section: admin',
      'Priority: optional',
      // useradd (passwd) and systemctl are used when present; nothing else is needed: node ships inside.
      // The gateway's launcher preloads jemalloc when it is there (products.mjs GATEWAY_ALLOCATOR).
      `Recommends: ${product.preloadAllocator ? 'systemd, libjemalloc2' : 'systemd'}`,
      `Description: ${product.summary}`,
      ' Self-contained: ships its own Node.js runtime and native modules.',
      ' Runs as the system service ' + `${product.name}.service under the user meteorzx;`,
      ` data in ${product.dataDir} is kept across upgrades and removal.`,
      '',
    ].join('\n'),
  );
  await writeFile(join(debian, 'conffiles'), `/etc/meteorzx/${product.config}\n`);
  const values = { ...templateValues(product, version, arch), SERVICE_FUNCTIONS: await readFile(join(PACKAGING, 'scripts', 'service-functions.sh'), 'utf8') };
  for (const script of ['postinst', 'prerm', 'postrm']) {
    const to = join(debian, script);
    await writeFile(to, fillTemplate(await readFile(join(PACKAGING, 'debian', script), 'utf8'), values));
    await chmod(to, 0o755);
  }

  const deb = join(outDir, `${product.name}_${version}_${debArch}.deb`);
  // gzip, not the default xz: older dpkg reads it, and it builds in seconds instead of a minute.
  await run('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z6', '--build', root, deb], { maxBuffer: 16 << 20 });
  await rm(root, { recursive: true, force: true });
  return deb;
}
