import { spawn } from 'node:child_process';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { allocatorPath, GATEWAY_NODE_FLAGS } from '../../packaging/lib/products.mjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pkg from '../../package.json' with { type: 'json' };
import { youngGenerationAfterLoad } from './agent-harness.js';
import { startGateway, tempDir, type RunningGateway } from './gateway-harness.js';
import {
  accountEntry,
  buildPackages,
  dpkgRoot,
  fakeRoot,
  getNdjson,
  hasCommand,
  killAll,
  must,
  pathWithoutNode,
  postEvents,
  ROOT,
  sh,
  startPackagedAgent,
  startPackagedGateway,
} from './packaging-harness.js';

/**
 * Issue 7's Done-when list, on real artefacts built by packaging/package.mjs:
 * the self-contained tarball run with no node on PATH, delivering to a
 * gateway; only arm64 binaries in the arm64 tarball; the systemd units
 * verified; the .deb's metadata, its layout under `dpkg --root`, and an
 * upgrade that keeps every buffered event. Slow (builds ~45 MiB artefacts,
 * downloads the Node.js runtime once into packaging/out/cache), so it runs
 * only with METEORZX_PACKAGING_TESTS=1 (.ci/run sets it).
 */

const ENABLED = process.env.METEORZX_PACKAGING_TESTS === '1';
const N = pkg.version;
const N1 = N.replace(/(\d+)$/, (patch) => String(Number(patch) + 1));
const EVENTS = 300;

let dir: string;
let x64: string; // unpacked x64 tarball (version N)
let debN: string;
let debN1: string;
let arm64Tarball: string;
let gateway: RunningGateway | undefined;
let gatewayDir: string | undefined;

describe.skipIf(!ENABLED)('packaging (METEORZX_PACKAGING_TESTS=1)', () => {
  beforeAll(async () => {
    dir = await tempDir('meteorzx-pkg-');
    // N for both architectures, N+1 (x64 only) for the upgrade: the same script as `npm run package`.
    await Promise.all([
      buildPackages(['--version', N, '--product', 'agent', '--arch', 'x64,arm64', '--out', join(dir, 'n')]),
      buildPackages(['--version', N1, '--product', 'agent', '--arch', 'x64', '--out', join(dir, 'n1')]),
      buildPackages(['--version', N, '--product', 'gateway', '--arch', 'x64', '--no-deb', '--out', join(dir, 'gw')]),
    ]);
    debN = join(dir, 'n', `meteorzx-agent_${N}_amd64.deb`);
    debN1 = join(dir, 'n1', `meteorzx-agent_${N1}_amd64.deb`);
    arm64Tarball = join(dir, 'n', `meteorzx-agent-${N}-linux-arm64.tar.gz`);
    await must('tar', ['-xzf', join(dir, 'n', `meteorzx-agent-${N}-linux-x64.tar.gz`), '-C', dir]);
    x64 = join(dir, `meteorzx-agent-${N}-linux-x64`);
  }, 240_000);

  afterAll(async () => {
    await gateway?.stop();
    killAll();
    if (dir) await rm(dir, { recursive: true, force: true });
    // The gateway's store is in a dir of its own, left behind in /tmp by every run before this.
    if (gatewayDir) await rm(gatewayDir, { recursive: true, force: true });
  });

  it('lists every artefact in SHA256SUMS, which sha256sum -c accepts and a changed byte fails', async () => {
    const n = join(dir, 'n');
    const listed = (await readFile(join(n, 'SHA256SUMS'), 'utf8')).trim().split('\n').map((l) => l.split('  ')[1]);
    const built = (await readdir(n)).filter((f) => f.endsWith('.tar.gz') || f.endsWith('.deb'));
    expect(listed.sort()).toEqual(built.sort());
    expect(built).toHaveLength(4); // agent tarball and .deb, x64 and arm64
    await must('sha256sum', ['-c', 'SHA256SUMS'], { cwd: n });
    const copy = join(dir, 'sums-check');
    await must('cp', ['-r', n, copy]);
    const victim = join(copy, `meteorzx-agent_${N}_amd64.deb`);
    const bytes = await readFile(victim);
    const middle = bytes.length >> 1;
    bytes[middle] = (bytes[middle] as number) ^ 0xff;
    await writeFile(victim, bytes);
    const r = await sh('sha256sum', ['-c', 'SHA256SUMS'], { cwd: copy });
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(new RegExp(`meteorzx-agent_${N.replace(/\./g, '\\.')}_amd64\\.deb: FAILED`));
  });

  it('the x64 tarball runs --version with no node on PATH', async () => {
    const path = await pathWithoutNode(dir);
    expect((await sh('sh', ['-c', 'command -v node'], { env: { PATH: path } })).code).not.toBe(0);
    const r = await sh('env', ['-i', `PATH=${path}`, join(x64, 'bin/meteorzx-agent'), '--version']);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(N);
    // Through a symlink elsewhere, as /usr/bin/meteorzx-agent is.
    await must('ln', ['-s', join(x64, 'bin/meteorzx-agent'), join(path, 'meteorzx-agent')]);
    expect((await sh('env', ['-i', `PATH=${path}`, 'meteorzx-agent', '--version'])).stdout.trim()).toBe(N);
  });

  it('the x64 tarball runs a full agent that delivers its events to a gateway', async () => {
    gatewayDir = await tempDir('meteorzx-pkg-gw-');
    gateway = await startGateway({ dir: gatewayDir });
    const id = `pkg-${process.pid}`;
    const config = join(dir, 'deliver.json');
    const data = join(dir, 'deliver-data');
    await writeFile(
      config,
      JSON.stringify({
        id,
        dataDir: data,
        intake: { http: { listen: '127.0.0.1:0' } },
        pull: { listen: '127.0.0.1:0' },
        push: { http: { url: `${gateway.httpUrl}/v1/events` }, batch: { maxEvents: 100, maxWaitMs: 20 } },
      }),
    );
    const env = { PATH: await pathWithoutNode(join(dir, 'deliver')) };
    const agent = await startPackagedAgent(join(x64, 'bin/meteorzx-agent'), ['--config', config], env);
    const events = Array.from({ length: EVENTS }, (_, i) => ({ id: `pkg-deliver-${i}`, type: 'test.packaging', data: { i } }));
    // Half through the packaged `send` (what an operator on the host runs), half over plain HTTP.
    const file = join(dir, 'deliver.ndjson');
    await writeFile(file, events.slice(0, EVENTS / 2).map((e) => JSON.stringify(e)).join('\n'));
    const sent = await sh(join(x64, 'bin/meteorzx-agent'), ['send', agent.intakeUrl, file], { env });
    expect(sent.code, sent.stderr).toBe(0);
    expect((await postEvents(agent.intakeUrl, events.slice(EVENTS / 2))).accepted).toBe(EVENTS / 2);

    let stored: Record<string, unknown>[] = [];
    for (let tries = 0; tries < 300 && stored.length < EVENTS; tries += 1) {
      await new Promise((r) => setTimeout(r, 100));
      stored = await getNdjson(`${gateway.httpUrl}/v1/events?source=${id}&limit=1000`);
    }
    expect(stored.map((e) => e.id).sort()).toEqual(events.map((e) => e.id).sort());
    expect(stored.every((e) => (e.ingest as { integrity?: string }).integrity === 'verified')).toBe(true);
    // The packaged `status` reads the agent's own status: everything buffered is delivered (the
    // gateway's answer reaches the agent just after the events are stored, so ask until it has).
    let status: Record<string, unknown> = {};
    for (let tries = 0; tries < 50 && status.delivered !== EVENTS; tries += 1) {
      const st = await sh(join(x64, 'bin/meteorzx-agent'), ['status', agent.pullUrl, '--json'], { env });
      expect(st.code, st.stderr).toBe(0);
      status = JSON.parse(st.stdout) as Record<string, unknown>;
      if (status.delivered !== EVENTS) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toMatchObject({ id, head: EVENTS, delivered: EVENTS });
    expect(await agent.stop()).toBe(0);
  });

  it('the packaged agent holds its young generation small under load, as the CLI does (agent/v8-flags.ts)', async () => {
    const config = join(dir, 'heap.json');
    await writeFile(
      config,
      JSON.stringify({ id: `pkg-heap-${process.pid}`, dataDir: join(dir, 'heap-data'), buffer: { durability: 'os' }, intake: { http: { listen: '127.0.0.1:0' } }, pull: { listen: '127.0.0.1:0' } }),
    );
    const agent = await startPackagedAgent(join(x64, 'bin/meteorzx-agent'), ['--config', config], { PATH: await pathWithoutNode(join(dir, 'heap')) });
    // V8's defaults grow it to 32 MB under this load (agent-heap.test.ts shows it through the CLI).
    expect(await youngGenerationAfterLoad(`${agent.intakeUrl}/v1/events`, agent.pullUrl)).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(await agent.stop()).toBe(0);
  });

  it('the gateway tarball runs a gateway with no node on PATH', async () => {
    await must('tar', ['-xzf', join(dir, 'gw', `meteorzx-gateway-${N}-linux-x64.tar.gz`), '-C', join(dir, 'gw')]);
    const launcher = join(dir, 'gw', `meteorzx-gateway-${N}-linux-x64`, 'bin/meteorzx');
    const path = await pathWithoutNode(join(dir, 'gw'));
    expect((await sh('env', ['-i', `PATH=${path}`, launcher, '--version'])).stdout.trim()).toBe(N);
    const config = join(dir, 'gw', 'gateway.json');
    await writeFile(config, JSON.stringify({ dataDir: join(dir, 'gw', 'data'), http: { listen: '127.0.0.1:0' }, mqtt: { listen: '127.0.0.1:0' } }));
    const gw = await startPackagedGateway(launcher, config, { PATH: path });
    // The launcher exec's node with the gateway's flags and, where the host has it, jemalloc preloaded.
    const pid = gw.proc.pid as number;
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    for (const flag of GATEWAY_NODE_FLAGS) expect(cmdline).toContain(flag);
    const maps = await readFile(`/proc/${pid}/maps`, 'utf8');
    expect(maps.includes(allocatorPath('x64'))).toBe(existsSync(allocatorPath('x64')));
    const source = `pkg-gw-${process.pid}`;
    expect((await postEvents(gw.httpUrl, [{ id: `${source}-1`, source, type: 'test.packaging' }])).accepted).toBe(1);
    expect((await getNdjson(`${gw.httpUrl}/v1/events?source=${source}`)).map((e) => e.id)).toEqual([`${source}-1`]);
    expect(await gw.stop()).toBe(0);
  });

  it('each tarball holds ELF binaries of its own architecture only', async () => {
    const arm = join(dir, 'arm64');
    await must('mkdir', ['-p', arm]);
    await must('tar', ['-xzf', arm64Tarball, '-C', arm]);
    for (const [tree, want, not] of [
      [arm, 'ARM aarch64', 'x86-64'],
      [x64, 'x86-64', 'aarch64'],
    ] as const) {
      const r = await must('sh', ['-c', 'find "$1" -type f -exec file {} + | grep ELF', 'sh', tree]);
      const elves = r.stdout.trim().split('\n');
      // node, classic-level and the serialport bindings (glibc and musl builds) at least.
      expect(elves.length).toBeGreaterThanOrEqual(4);
      expect(elves.some((l) => l.includes('/runtime/node:'))).toBe(true);
      expect(elves.some((l) => l.includes('classic-level'))).toBe(true);
      for (const line of elves) {
        expect(line).toContain(want);
        expect(line).not.toContain(not);
      }
    }
  });

  it('systemd-analyze verify accepts both units, as installed', async () => {
    for (const unit of ['meteorzx-agent', 'meteorzx-gateway']) {
      // The unit as install.sh --prefix writes it, pointing at an executable that exists here.
      const prefix = join(dir, 'verify', unit);
      const bin = unit === 'meteorzx-agent' ? 'meteorzx-agent' : 'meteorzx';
      await must('mkdir', ['-p', join(prefix, 'bin')]);
      await must('cp', [join(x64, 'bin/meteorzx-agent'), join(prefix, 'bin', bin)]);
      const text = (await readFile(join(ROOT, 'packaging/systemd', `${unit}.service`), 'utf8')).replaceAll(`/opt/${unit}`, prefix);
      const file = join(dir, 'verify', `${unit}.service`);
      await writeFile(file, text);
      const r = await sh('systemd-analyze', ['verify', file]);
      // verify exits 0 on many problems (an unknown directive, a bad syscall set) and only says so on stderr.
      expect({ code: r.code, output: `${r.stdout}${r.stderr}` }).toEqual({ code: 0, output: '' });
      for (const key of ['User=meteorzx', 'ProtectSystem=strict', 'ProtectHome=yes', 'NoNewPrivileges=yes', 'PrivateTmp=yes', 'Type=notify', 'Restart=on-failure']) {
        expect(text).toContain(key);
      }
    }
  });

  it.skipIf(!hasCommand('python3'))('notifies systemd READY=1, and only after the agent listens', async () => {
    const socket = join(dir, 'notify.sock');
    const receiver = spawn('python3', [join(ROOT, 'test/integration/packaging-notify-receiver.py'), socket], { stdio: ['ignore', 'pipe', 'inherit'] });
    const received: string[] = [];
    await new Promise<void>((resolve, reject) => {
      receiver.once('exit', (code) => reject(new Error(`notify receiver exited with ${code}`)));
      receiver.stdout.on('data', (b: Buffer) => {
        received.push(...b.toString().split('\n').filter(Boolean));
        if (received.includes('bound')) resolve();
      });
    });
    try {
      const config = join(dir, 'notify.json');
      await writeFile(config, JSON.stringify({ dataDir: join(dir, 'notify-data'), intake: { http: { listen: '127.0.0.1:0' } }, pull: { listen: '127.0.0.1:0' } }));
      const agent = await startPackagedAgent(join(x64, 'bin/meteorzx-agent'), ['--config', config], {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        NOTIFY_SOCKET: socket,
      });
      const ready = () => received.find((l) => l.endsWith(' READY=1'));
      for (let i = 0; i < 200 && ready() === undefined; i += 1) await new Promise((r) => setTimeout(r, 50));
      expect(ready()).toBeDefined();
      // The receiver's clock against the agent's: READY=1 arrived no earlier than the `listening` line was written.
      const listening = agent.logs.map((l) => JSON.parse(l) as { msg?: string; time?: string }).find((l) => l.msg === 'listening');
      expect(Number(ready()?.split(' ')[0])).toBeGreaterThanOrEqual(Date.parse(listening?.time ?? ''));
      expect(agent.logs.join('\n')).not.toContain('could not notify systemd');
      expect(await agent.stop()).toBe(0);
    } finally {
      receiver.kill('SIGKILL');
    }
  });

  it('dpkg-deb --info and --contents show the package as documented', async () => {
    const info = (await must('dpkg-deb', ['--info', debN])).stdout;
    for (const want of ['Package: meteorzx-agent', `Version: ${N}`, 'Architecture: amd64', 'conffiles', 'postinst', 'prerm', 'postrm']) expect(info).toContain(want);
    expect((await must('dpkg-deb', ['--info', debN, 'conffiles'])).stdout.trim()).toBe('/etc/meteorzx/agent.yaml');
    const contents = (await must('dpkg-deb', ['--contents', debN])).stdout;
    for (const path of [
      './opt/meteorzx-agent/bin/meteorzx-agent',
      './opt/meteorzx-agent/lib/meteorzx-agent.mjs',
      './opt/meteorzx-agent/runtime/node',
      './opt/meteorzx-agent/lib/node_modules/classic-level/prebuilds/linux-x64/classic-level.node',
      './etc/meteorzx/agent.yaml',
      './lib/systemd/system/meteorzx-agent.service',
      './usr/bin/meteorzx-agent -> /opt/meteorzx-agent/bin/meteorzx-agent',
    ]) {
      expect(contents).toContain(path);
    }
    expect(contents).not.toContain('/var/lib/meteorzx');
    expect(contents).not.toContain('linux-arm64');
  });

  it('installs into a root with dpkg --root; an upgrade keeps every buffered event and the edited config', async () => {
    const root = await fakeRoot(join(dir, 'root'));
    await dpkgRoot(root, ['-i', debN]);
    // Laid out as docs/packaging.md says.
    const user = accountEntry(await readFile(join(root, 'etc/passwd'), 'utf8'), 'meteorzx');
    expect(user?.[5]).toBe('/var/lib/meteorzx');
    const group = accountEntry(await readFile(join(root, 'etc/group'), 'utf8'), 'meteorzx');
    const dataDir = join(root, 'var/lib/meteorzx/agent');
    const dataStat = await stat(dataDir);
    expect([dataStat.uid, dataStat.mode & 0o777]).toEqual([Number(user?.[2]), 0o750]);
    const confPath = join(root, 'etc/meteorzx/agent.yaml');
    const conf = await stat(confPath);
    expect([conf.uid, conf.gid, conf.mode & 0o777]).toEqual([0, Number(group?.[2]), 0o640]);
    expect(await readFile(confPath, 'utf8')).toBe(await readFile(join(ROOT, 'packaging/etc/agent.yaml'), 'utf8'));
    expect((await must('readlink', [join(root, 'etc/systemd/system/multi-user.target.wants/meteorzx-agent.service')])).stdout.trim()).toBe(
      '/lib/systemd/system/meteorzx-agent.service',
    );
    const launcher = join(root, 'opt/meteorzx-agent/bin/meteorzx-agent');
    expect((await must(launcher, ['--version'])).stdout.trim()).toBe(N);

    // Version N buffers events with push disabled (the default config has no push sink); free ports via a local edit.
    await writeFile(confPath, (await readFile(confPath, 'utf8')).replace('127.0.0.1:7401', '127.0.0.1:0').replace('127.0.0.1:7402', '127.0.0.1:0'));
    const run = (bin: string) => startPackagedAgent(bin, ['--config', confPath, '--data-dir', dataDir], { PATH: process.env.PATH ?? '/usr/bin:/bin' });
    const before = await run(launcher);
    const events = Array.from({ length: EVENTS }, (_, i) => ({ id: `pkg-upgrade-${i}`, type: 'test.upgrade', data: { i } }));
    for (let i = 0; i < EVENTS; i += 100) expect((await postEvents(before.intakeUrl, events.slice(i, i + 100))).accepted).toBe(100);
    const statusN = (await (await fetch(`${before.pullUrl}/v1/status`)).json()) as { epoch: string; head: number; delivered: number };
    expect([statusN.head, statusN.delivered]).toEqual([EVENTS, 0]);
    expect(await before.stop()).toBe(0);

    await dpkgRoot(root, ['-i', debN1]);
    expect((await must('dpkg', [`--root=${root}`, '-s', 'meteorzx-agent'])).stdout).toContain(`Version: ${N1}`);
    expect((await must(launcher, ['--version'])).stdout.trim()).toBe(N1);
    expect(await readFile(confPath, 'utf8')).toContain('127.0.0.1:0');

    const after = await run(launcher);
    const status = (await (await fetch(`${after.pullUrl}/v1/status`)).json()) as { epoch: string; head: number };
    expect([status.epoch, status.head]).toEqual([statusN.epoch, EVENTS]);
    const pulled = await getNdjson(`${after.pullUrl}/v1/events?after=0&limit=${EVENTS}`);
    expect(pulled.map((e) => e.id)).toEqual(events.map((e) => e.id));
    expect(pulled.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(await after.stop()).toBe(0);

    // Removal and purge leave the buffer where it is.
    await dpkgRoot(root, ['--purge', 'meteorzx-agent']);
    expect((await sh('test', ['-e', join(root, 'opt/meteorzx-agent')])).code).not.toBe(0);
    expect((await sh('test', ['-e', confPath])).code).not.toBe(0);
    expect((await readdir(dataDir)).length).toBeGreaterThan(0);
  });

  it('install.sh --root lays out the tarball; uninstall.sh keeps config and data', async () => {
    const root = await fakeRoot(join(dir, 'tar-root'));
    await must(join(x64, 'install.sh'), ['--root', root]);
    for (const path of ['opt/meteorzx-agent/bin/meteorzx-agent', 'opt/meteorzx-agent/runtime/node', 'etc/meteorzx/agent.yaml', 'etc/systemd/system/meteorzx-agent.service']) {
      expect((await sh('test', ['-e', join(root, path)])).code, path).toBe(0);
    }
    expect((await must('readlink', [join(root, 'usr/local/bin/meteorzx-agent')])).stdout.trim()).toBe('/opt/meteorzx-agent/bin/meteorzx-agent');
    expect(accountEntry(await readFile(join(root, 'etc/passwd'), 'utf8'), 'meteorzx')).toBeDefined();
    // Again, over itself: an upgrade keeps an edited config and puts the new default beside it.
    await writeFile(join(root, 'etc/meteorzx/agent.yaml'), 'logLevel: debug\n');
    await must(join(x64, 'install.sh'), ['--root', root]);
    expect(await readFile(join(root, 'etc/meteorzx/agent.yaml'), 'utf8')).toBe('logLevel: debug\n');
    expect((await sh('test', ['-e', join(root, 'etc/meteorzx/agent.yaml.dist')])).code).toBe(0);
    await must(join(root, 'opt/meteorzx-agent/uninstall.sh'), ['--root', root]);
    expect((await sh('test', ['-e', join(root, 'opt/meteorzx-agent')])).code).not.toBe(0);
    expect((await sh('test', ['-e', join(root, 'etc/systemd/system/meteorzx-agent.service')])).code).not.toBe(0);
    expect((await sh('test', ['-d', join(root, 'var/lib/meteorzx/agent')])).code).toBe(0);
  });
});
