import type { ConfigIssue, ConfigPath } from './issues.js';

export type Env = Readonly<Record<string, string | undefined>>;

// `$${` is an escaped literal `${`; otherwise `${...}` is a reference, checked below, and a `${` that no `}`
// closes is a mistake (the shell's "bad substitution"), not text.
const REFERENCE = /\$\$\{|\$\{([^}]*)\}|(\$\{)/g;
const INNER = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/;

/**
 * Expands `${VAR}` and `${VAR:-default}` in every string value (never in
 * keys). Expansion happens after YAML parsing, so a variable's value is data
 * and cannot inject YAML structure. `:-default` applies when VAR is unset or
 * empty, as in the shell. Problems are appended to `issues` with their path.
 */
export function expandEnv(value: unknown, env: Env, issues: ConfigIssue[], path: ConfigPath = []): unknown {
  if (typeof value === 'string') return expandString(value, env, issues, path);
  if (Array.isArray(value)) return value.map((item, i) => expandEnv(item, env, issues, [...path, i]));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = expandEnv(item, env, issues, [...path, key]);
    return out;
  }
  return value;
}

function expandString(text: string, env: Env, issues: ConfigIssue[], path: ConfigPath): string {
  if (!text.includes('${')) return text;
  return text.replace(REFERENCE, (match, inner: string | undefined, unclosed: string | undefined) => {
    if (unclosed !== undefined) {
      issues.push({
        path,
        message: `variable reference "\${" has no closing "}": use \${NAME} or \${NAME:-default}, and $\${ for a literal \${`,
        code: 'METEORZX_CONFIG_INVALID',
      });
      return match;
    }
    if (inner === undefined) return '${';
    const m = INNER.exec(inner);
    if (!m) {
      issues.push({
        path,
        message: `bad variable reference "${match}": use \${NAME} or \${NAME:-default}, and $\${ for a literal \${`,
        code: 'METEORZX_CONFIG_INVALID',
      });
      return match;
    }
    const name = m[1] as string;
    const fallback = m[2];
    const set = env[name];
    if (set !== undefined && set !== '') return set;
    if (fallback !== undefined) return fallback;
    if (set === '') return '';
    issues.push({
      path,
      message: `environment variable ${name} is not set (give a default with \${${name}:-value})`,
      code: 'METEORZX_CONFIG_ENV_MISSING',
    });
    return match;
  });
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}
