import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { isPlainObject } from './env.js';
import { pathKey } from './zod-issues.js';
import type { ConfigIssue, ConfigPath } from './issues.js';

/**
 * Keys whose value may instead be read from a file: `tokenFile: /run/secrets/t`
 * stands for `token: <the file's content>`. Add a name here to give another
 * secret key a file form; the schemas only ever see the inline key.
 */
export const SECRET_KEYS = ['token', 'password', 'hashKey'] as const;

// A secret is a line, not a blob; the bound also stops a path like /dev/zero from being read forever.
const MAX_SECRET_BYTES = 64 * 1024;

export interface ResolvedSecrets {
  readonly value: unknown;
  /** Path of each inline key filled from a file (as pathKey) → the `xxxFile` key the user wrote. */
  readonly fileKeys: ReadonlyMap<string, string>;
}

/**
 * Replaces every `<secret>File` key with `<secret>` holding the file's content,
 * trailing line breaks removed (`echo secret > file` adds one). Relative paths
 * are resolved against `baseDir` (the config file's folder).
 */
export function resolveSecretFiles(value: unknown, baseDir: string, issues: ConfigIssue[]): ResolvedSecrets {
  const fileKeys = new Map<string, string>();
  const walk = (node: unknown, path: ConfigPath): unknown => {
    if (Array.isArray(node)) return node.map((item, i) => walk(item, [...path, i]));
    if (!isPlainObject(node)) return node;
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(node)) {
      const stem = secretStem(key);
      if (stem === undefined) {
        out[key] = walk(item, [...path, key]);
        continue;
      }
      const at = [...path, key];
      if (stem in node) {
        issues.push({ path: at, message: `give either ${stem} or ${key}, not both`, code: 'METEORZX_CONFIG_SECRET_FILE' });
        continue;
      }
      // Later messages about the secret (required, unknown key) must name the key the user wrote.
      fileKeys.set(pathKey([...path, stem]), key);
      const secret = readSecret(item, baseDir);
      if (typeof secret === 'string') out[stem] = secret;
      else issues.push({ path: at, message: secret.error, code: 'METEORZX_CONFIG_SECRET_FILE' });
    }
    return out;
  };
  return { value: walk(value, []), fileKeys };
}

function secretStem(key: string): string | undefined {
  if (!key.endsWith('File')) return undefined;
  const stem = key.slice(0, -'File'.length);
  return (SECRET_KEYS as readonly string[]).includes(stem) ? stem : undefined;
}

function readSecret(file: unknown, baseDir: string): string | { error: string } {
  if (typeof file !== 'string' || file === '') return { error: 'expected the path of a file holding the secret' };
  const full = resolve(baseDir, file);
  try {
    const stat = statSync(full);
    if (!stat.isFile()) return { error: `secret file ${JSON.stringify(full)} is not a regular file` };
    if (stat.size > MAX_SECRET_BYTES) return { error: `secret file ${JSON.stringify(full)} is larger than 64KiB` };
    const secret = readFileSync(full, 'utf8').replace(/[\r\n]+$/, '');
    if (secret === '') return { error: `secret file ${JSON.stringify(full)} is empty` };
    return secret;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    return { error: `cannot read secret file ${JSON.stringify(full)}: ${why}` };
  }
}
