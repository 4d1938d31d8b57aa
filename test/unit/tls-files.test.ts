import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkTlsFiles, tlsServerOptions, type TlsServerFiles } from '../../common/tls-server.js';
import { readPemSync } from '../../common/read-at-most.js';
import { makePki, type TestPki } from '../integration/test-pki.js';

/**
 * The checks of a listener's PEM files before it starts (and before a
 * reload is applied): each problem one line naming the key and the file.
 * Before, a garbage or non-CA `ca` was taken silently (every client was then
 * refused), and the rest surfaced as OpenSSL's words without the key
 * ("error:05800074:x509 certificate routines::key values mismatch").
 */

let dir: string;
let pki: TestPki;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meteorzx-tls-files-'));
  pki = await makePki(dir);
  await writeFile(join(dir, 'garbage.pem'), 'not a certificate\n');
}, 30_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const at = 'intake.syslog.tls';
const check = (files: Partial<TlsServerFiles>, now?: Date, warn?: (message: string) => void) =>
  checkTlsFiles([[at, { cert: pki.cert, key: pki.key, requestClientCert: false, ...files }]], { ...(now === undefined ? {} : { now }), ...(warn === undefined ? {} : { warn }) });
const messageOf = async (files: Partial<TlsServerFiles>, now?: Date) => (await check(files, now).then(() => 'resolved', (err: Error) => err.message));

describe('checkTlsFiles', () => {
  it('takes a matching certificate, key and CA, skipping sections not configured', async () => {
    await expect(check({ ca: pki.ca, requestClientCert: true })).resolves.toMatch(/^[0-9a-f]{64}$/);
    await expect(checkTlsFiles([['pull.tls', undefined]])).resolves.toMatch(/^[0-9a-f]{64}$/);
  });

  it('reads at most 4 MiB of a PEM file: a path naming a device or a large file is refused, not read whole', async () => {
    const big = join(dir, 'big.pem');
    await writeFile(big, Buffer.alloc(5 * 1024 * 1024, 0x41));
    expect(await messageOf({ cert: big })).toBe(`${at}.cert: ${big}: larger than 4 MiB: not a PEM file`);
    // Read whole, /dev/zero grew the process until the OOM killer took it.
    expect(await messageOf({ ca: '/dev/zero', requestClientCert: true })).toBe(`${at}.ca: /dev/zero: larger than 4 MiB: not a PEM file`);
    await expect(tlsServerOptions({ cert: '/dev/zero', key: pki.key, requestClientCert: false })).rejects.toThrow('/dev/zero: larger than 4 MiB: not a PEM file');
    expect(() => readPemSync('/dev/zero')).toThrow('larger than 4 MiB: not a PEM file');
    expect(readPemSync(pki.cert).toString()).toMatch(/^-----BEGIN CERTIFICATE-----/);
  });

  it('names the key and the file of each problem', async () => {
    const garbage = join(dir, 'garbage.pem');
    expect(await messageOf({ cert: join(dir, 'nope.pem') })).toBe(`${at}.cert: ${join(dir, 'nope.pem')}: no such file`);
    expect(await messageOf({ cert: garbage })).toBe(`${at}.cert: ${garbage}: holds no PEM certificate`);
    expect(await messageOf({ key: pki.clientKey })).toBe(`${at}.key: ${pki.clientKey}: is not the key of ${at}.cert (${pki.cert})`);
    expect(await messageOf({ key: pki.cert })).toBe(`${at}.key: ${pki.cert}: holds no PEM private key (or one that needs a passphrase)`);
    expect(await messageOf({ ca: garbage, requestClientCert: true })).toBe(`${at}.ca: ${garbage}: holds no PEM certificate`);
    expect(await messageOf({ ca: pki.key, requestClientCert: true })).toBe(`${at}.ca: ${pki.key}: holds no PEM certificate`);
    expect(await messageOf({ ca: pki.clientCert, requestClientCert: true })).toBe(
      `${at}.ca: ${pki.clientCert}: holds no CA certificate (basicConstraints CA:TRUE, or self-signed)`,
    );
  });

  it('warns of an expired certificate and takes it (refusing would stop every other intake): clients that check refuse it', async () => {
    const warnings: string[] = [];
    await expect(check({}, new Date(Date.now() + 3 * 86_400_000), (m) => warnings.push(m))).resolves.toMatch(/^[0-9a-f]{64}$/);
    expect(warnings).toEqual([expect.stringMatching(new RegExp(`^${at}\\.cert: ${pki.cert}: expired on \\d{4}-.*; peers that check it will refuse the handshake$`))]);
    await check({}, undefined, (m) => warnings.push(m));
    expect(warnings).toHaveLength(1);
  });

  it('checks a client section (push.http, pullFrom[i]) for what it names: a CA alone, or a certificate with its key', async () => {
    const garbage = join(dir, 'garbage.pem');
    const client = (files: Record<string, string>) => checkTlsFiles([['push.http', files]]).then(() => 'resolved', (err: Error) => err.message);
    expect(await client({ ca: pki.ca })).toBe('resolved');
    expect(await client({ ca: pki.ca, cert: pki.clientCert, key: pki.clientKey })).toBe('resolved');
    expect(await client({})).toBe('resolved');
    expect(await client({ ca: join(dir, 'nope.pem') })).toBe(`push.http.ca: ${join(dir, 'nope.pem')}: no such file`);
    expect(await client({ ca: garbage })).toBe(`push.http.ca: ${garbage}: holds no PEM certificate`);
    expect(await client({ cert: pki.clientCert, key: pki.key })).toBe(`push.http.key: ${pki.key}: is not the key of push.http.cert (${pki.clientCert})`);
  });

  it('gives another digest when a file keeps its path but not its contents (a renewed certificate)', async () => {
    const cert = join(dir, 'renewed.pem');
    const key = join(dir, 'renewed.key');
    await copyFile(pki.cert, cert);
    await copyFile(pki.key, key);
    const before = await check({ cert, key });
    expect(await check({ cert, key })).toBe(before);
    await copyFile(pki.clientCert, cert);
    await copyFile(pki.clientKey, key);
    expect(await check({ cert, key })).not.toBe(before);
  });
});
