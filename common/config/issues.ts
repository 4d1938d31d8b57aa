import { MeteorError } from '../../protocols/errors.js';
import type { CommonErrorCode } from '../errors.js';

export type ConfigPath = readonly (string | number)[];

/** One problem found in a config, located by its path in the document. */
export interface ConfigIssue {
  readonly path: ConfigPath;
  readonly message: string;
  /** METEORZX_CONFIG_INVALID, METEORZX_CONFIG_ENV_MISSING or METEORZX_CONFIG_SECRET_FILE. */
  readonly code: CommonErrorCode;
}

const PLAIN_KEY = /^[A-Za-z0-9_-]+$/;

/** `push.http.url`, `pipeline.transforms.0.mask`, `pipeline.transforms.2.rename."data.user"`. */
export function formatPath(path: ConfigPath): string {
  if (path.length === 0) return '(top level)';
  return path.map((key) => (typeof key === 'number' || PLAIN_KEY.test(key) ? String(key) : JSON.stringify(key))).join('.');
}

export function formatIssue(issue: ConfigIssue): string {
  return `${formatPath(issue.path)}: ${issue.message}`;
}

/**
 * Every problem of a config at once, so a user fixes them in one round. The
 * code is the issues' own code when they all share one (only a missing
 * variable, say), else METEORZX_CONFIG_INVALID.
 */
export class ConfigInvalidError extends MeteorError {
  readonly issues: readonly ConfigIssue[];
  /** File name, or undefined for a config given as an object. */
  readonly source: string | undefined;
  /** `agent`, `gateway`: which schema it was checked against. */
  readonly kind: string | undefined;

  constructor(issues: readonly ConfigIssue[], context: { source?: string; kind?: string } = {}) {
    const codes = new Set(issues.map((issue) => issue.code));
    const [only] = codes;
    const code: CommonErrorCode = codes.size === 1 && only !== undefined ? only : 'METEORZX_CONFIG_INVALID';
    const summary = configSummary(issues.length, context);
    super(code, [summary, ...issues.map(formatIssue)].join('\n'), { userError: true });
    this.name = 'ConfigInvalidError';
    this.issues = issues;
    this.source = context.source;
    this.kind = context.kind;
  }

  /** The first line of the message: `agent.yaml: invalid agent config (3 errors)`. */
  get summary(): string {
    return configSummary(this.issues.length, { source: this.source, kind: this.kind });
  }
}

function configSummary(count: number, context: { source?: string | undefined; kind?: string | undefined }): string {
  const what = context.kind ? `invalid ${context.kind} config` : 'invalid config';
  return `${context.source ?? 'config'}: ${what} (${count} ${count === 1 ? 'error' : 'errors'})`;
}

export function isConfigInvalidError(err: unknown): err is ConfigInvalidError {
  return err instanceof ConfigInvalidError;
}

/** How a value reads in a message: strings quoted and cut, containers named the way YAML users call them. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  return String(value);
}
