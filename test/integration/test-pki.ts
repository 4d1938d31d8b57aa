import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface TestPki {
  /** The throw-away CA's certificate. */
  ca: string;
  /** A server certificate for 127.0.0.1 and its key. */
  cert: string;
  key: string;
  /** A client certificate (CN=meteorzx test client) and its key, from the same CA. */
  clientCert: string;
  clientKey: string;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: 'ignore' });
}

/** A throw-away CA made with openssl for this run, and the certificates it signs: the PEM files' paths. */
export async function makePki(into: string): Promise<TestPki> {
  const f = (name: string) => join(into, name);
  const sign = async (name: string, subject: string, ext: string): Promise<void> => {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', subject]);
    await writeFile(f(`${name}.ext`), ext);
    openssl(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}.pem`), '-days', '1', '-extfile', f(`${name}.ext`)]);
  };
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=meteorzx test CA']);
  await sign('server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1\n');
  await sign('client', '/CN=meteorzx test client', 'extendedKeyUsage=clientAuth\n');
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') };
}
