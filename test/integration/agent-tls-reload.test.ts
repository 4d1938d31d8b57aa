import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killAll, parseLine, removeDir, startAgent, tempDir, waitFor, type Agent } from './agent-harness.js';
import { runCli } from './gateway-harness.js';
import { makePki, type TestPki } from './test-pki.js';

/**
 * The agent's TLS files across start, `config check` and SIGHUP. Before, a
 * certificate file spoiled before a reload killed the agent in the restart
 * ("meteorzx: error:0480006C:PEM routines::no start line"), a certificate
 * renewed at the same path was never served (the reload, seeing the same
 * config, kept every listener), and `config check` said "valid" whatever
 * the files held.
 */

let dir: string;
let pki: TestPki;
let agent: Agent;
let syslogPort: number;
let configFile: string;
let config: Record<string, unknown>;
const served = { cert: '', key: '' };

beforeAll(async () => {
  dir = await tempDir('agent-tls-reload');
  await mkdir(join(dir, 'pki'));
  pki = await makePki(join(dir, 'pki'));
  served.cert = join(dir, 'served.pem');
  served.key = join(dir, 'served.key');
  await copyFile(pki.cert, served.cert);
  await copyFile(pki.key, served.key);
  syslogPort = await freePort();
  config = { id: 'tls-reload', intake: { http: { listen: '127.0.0.1:0' }, syslog: { listen: `tls://127.0.0.1:${syslogPort}`, tls: served } } };
  await mkdir(join(dir, 'agent'));
  agent = await startAgent(join(dir, 'agent'), config);
  configFile = join(dir, 'agent', 'agent.json');
  config = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>; // as startAgent wrote it
}, 60_000);

afterAll(async () => {
  await killAll();
  await removeDir(dir);
});

/** The common name of the certificate the syslog listener serves now. */
function servedName(): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port: syslogPort, host: '127.0.0.1', rejectUnauthorized: false }, () => {
      resolve(String(socket.getPeerCertificate().subject.CN));
      socket.destroy();
    });
    socket.on('error', reject);
  });
}

/** SIGHUPs the agent and waits for the nth log line with `msg`. */
async function hup(msg: string): Promise<void> {
  const count = () => agent.logs.filter((l) => parseLine(l)?.msg === msg).length;
  const before = count();
  agent.proc.kill('SIGHUP');
  await waitFor(() => {
    if (agent.proc.exitCode !== null) throw new Error(`agent exited: ${agent.logs.slice(-3).join('\n')}`);
    return count() > before;
  }, `${msg} after SIGHUP`);
}

describe('agent TLS files on reload and in config check', () => {
  it('a reload with a spoiled certificate is rejected and the agent runs on with the one it has', async () => {
    expect(await servedName()).toBe('127.0.0.1');
    await writeFile(served.cert, 'not a certificate\n');
    // A changed setting too, so that the reload would restart the agent rather than keep the listener.
    await writeFile(configFile, JSON.stringify({ ...config, logLevel: 'debug' }));
    await hup('reload: config rejected, running on with the current one');
    const rejected = agent.logs.map(parseLine).find((l) => l?.msg === 'reload: config rejected, running on with the current one');
    expect((rejected?.err as { message?: string } | undefined)?.message).toBe(`intake.syslog.tls.cert: ${served.cert}: holds no PEM certificate`);
    expect(await servedName()).toBe('127.0.0.1');
  });

  it('config check names the spoiled file in one line and exits 1', async () => {
    const run = await runCli(['config', 'check', configFile]);
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n').at(-1)).toBe(`meteorzx: intake.syslog.tls.cert: ${served.cert}: holds no PEM certificate`);
  });

  it('a certificate renewed at the same path is served after a reload that changes nothing else', async () => {
    await writeFile(configFile, JSON.stringify(config));
    await copyFile(pki.clientCert, served.cert);
    await copyFile(pki.clientKey, served.key);
    await hup('listening');
    expect(await servedName()).toBe('meteorzx test client');
  });
});
