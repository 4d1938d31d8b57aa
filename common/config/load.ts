import { dirname, extname } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { jsonDepth } from '../../protocols/limits.js';
import { CommonErrors } from '../errors.js';
import { readAtMost } from '../read-at-most.js';
import { expandEnv, isPlainObject, type Env } from './env.js';
import { ConfigInvalidError, type ConfigIssue, type ConfigPath } from './issues.js';
import { resolveSecretFiles } from './secrets.js';
import { createIssueCollector, pathKey } from './zod-issues.js';

/** What a validated config looks like to code: deeply read-only, as it is deeply frozen. */
export type DeepReadonly<T> = T extends (...args: never[]) => unknown
  ? T
  : T extends readonly (infer U)[]
    ? readonly DeepReadonly<U>[]
    : T extends object
      ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
      : T;

export interface ParseOptions {
  /** Where `${VAR}` is looked up. Default: process.env. */
  env?: Env;
  /** Folder relative secret-file paths are resolved against. Default: the config file's folder, else the working directory. */
  baseDir?: string;
  /** Name used in messages (the file name). */
  source?: string;
  /** Which schema (`agent`, `gateway`), for messages. */
  kind?: string;
}

export type LoadOptions = Omit<ParseOptions, 'source' | 'baseDir'>;

// A config is a page of text; this bound keeps a wrong path (a log, a device) from being slurped.
const MAX_CONFIG_BYTES = 1024 * 1024;
// Far deeper than any real config. The steps after parsing (${VAR} expansion, validation) walk the
// value recursively; a JSON file of 300,000 nested brackets overflowed the stack there, unnamed.
const MAX_CONFIG_DEPTH = 64;

/**
 * Reads a config file: JSON when it ends in `.json`, YAML when `.yaml`/`.yml`;
 * otherwise JSON when its first character is `{`, else YAML. An empty YAML
 * file is an empty mapping (every default).
 */
export async function readConfigFile(file: string): Promise<unknown> {
  let text: string;
  try {
    const buf = await readAtMost(file, MAX_CONFIG_BYTES);
    if (buf.length > MAX_CONFIG_BYTES) throw new RangeError('larger than 1 MiB');
    text = buf.toString('utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw CommonErrors.METEORZX_CONFIG_NOT_FOUND(`config file not found: ${file}`, { userError: true, cause: err });
    const why = code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message;
    throw CommonErrors.METEORZX_CONFIG_UNREADABLE(`cannot read config file ${file}: ${why}`, { userError: true, cause: err });
  }
  return parseConfigText(text, file);
}

/** Parses config text; `file` picks the format by extension and names the file in errors. */
export function parseConfigText(text: string, file: string): unknown {
  const ext = extname(file).toLowerCase();
  const json = ext === '.json' || (ext !== '.yaml' && ext !== '.yml' && text.trimStart().startsWith('{'));
  const value = json ? parseJson(text, file) : parseYaml(text, file);
  if (jsonDepth(value, MAX_CONFIG_DEPTH) > MAX_CONFIG_DEPTH) {
    throw CommonErrors.METEORZX_CONFIG_SYNTAX(`${file}: nested more than ${MAX_CONFIG_DEPTH} levels deep; not a config`, { userError: true });
  }
  return value;
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const message = (err as Error).message;
    const at = /at position (\d+)/.exec(message);
    const where = at ? `:${lineColumn(text, Number(at[1]))}` : '';
    throw CommonErrors.METEORZX_CONFIG_SYNTAX(`${file}${where}: not valid JSON: ${message}`, { userError: true, cause: err });
  }
}

function parseYaml(text: string, file: string): unknown {
  // YAML 1.2 core schema: `on`/`yes` stay strings; aliases are bounded (billion laughs).
  const doc = parseDocument(text, { uniqueKeys: true });
  const first = doc.errors[0];
  if (first) {
    const pos = first.linePos?.[0];
    const where = pos ? `:${pos.line}:${pos.col}` : '';
    const more = doc.errors.length > 1 ? ` (and ${doc.errors.length - 1} more)` : '';
    const message = (first.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
    throw CommonErrors.METEORZX_CONFIG_SYNTAX(`${file}${where}: not valid YAML: ${message}${more}`, { userError: true, cause: first });
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 }) as unknown;
  } catch (err) {
    // The alias bound (billion laughs) throws here, not in doc.errors: a user's file, not a bug of ours.
    throw CommonErrors.METEORZX_CONFIG_SYNTAX(`${file}: not valid YAML: ${(err as Error).message}`, { userError: true, cause: err });
  }
  return value === null || value === undefined ? {} : value;
}

function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset).split('\n');
  return `${before.length}:${(before.at(-1)?.length ?? 0) + 1}`;
}

/**
 * Expands `${VAR}`, reads secret files, validates against `schema`, and
 * returns the result deeply frozen. Throws ConfigInvalidError listing every
 * problem found by any of these steps, each with its path.
 */
export function parseConfig<S extends z.ZodType>(schema: S, raw: unknown, options: ParseOptions = {}): DeepReadonly<z.output<S>> {
  const issues: ConfigIssue[] = [];
  const expanded = expandEnv(raw, options.env ?? process.env, issues);
  const secrets = resolveSecretFiles(expanded, options.baseDir ?? process.cwd(), issues);
  const collector = createIssueCollector();
  const result = schema.safeParse(secrets.value, { error: collector.errorMap });
  if (!result.success) {
    // A value already reported (unset variable, unreadable secret) would only repeat as a schema error.
    const reported = issues.map((issue) => issue.path);
    for (const issue of collector.toIssues(result.error.issues)) {
      const path = renameSecretKey(issue.path, secrets.fileKeys);
      if (!reported.some((prefix) => startsWith(path, prefix))) issues.push({ ...issue, path });
    }
  }
  if (issues.length > 0) throw new ConfigInvalidError(inDocumentOrder(issues, raw), { source: options.source, kind: options.kind });
  return deepFreeze(result.data) as DeepReadonly<z.output<S>>;
}

/** Reads `file` and parses it with `parseConfig`; secret files are found relative to its folder. */
export async function loadConfig<S extends z.ZodType>(schema: S, file: string, options: LoadOptions = {}): Promise<DeepReadonly<z.output<S>>> {
  const raw = await readConfigFile(file);
  return parseConfig(schema, raw, { ...options, source: file, baseDir: dirname(file) });
}

function renameSecretKey(path: ConfigPath, fileKeys: ReadonlyMap<string, string>): ConfigPath {
  for (let n = path.length; n > 0; n--) {
    const fileKey = fileKeys.get(pathKey(path.slice(0, n)));
    if (fileKey !== undefined) return [...path.slice(0, n - 1), fileKey, ...path.slice(n)];
  }
  return path;
}

function startsWith(path: ConfigPath, prefix: ConfigPath): boolean {
  return prefix.length <= path.length && prefix.every((key, i) => key === path[i]);
}

/** Sorts issues the way the user reads the file: by where their path (or its nearest existing parent) appears. */
function inDocumentOrder(issues: readonly ConfigIssue[], raw: unknown): ConfigIssue[] {
  const position = new Map<string, number>();
  const visit = (node: unknown, path: ConfigPath): void => {
    position.set(pathKey(path), position.size);
    if (Array.isArray(node)) node.forEach((item, i) => visit(item, [...path, i]));
    else if (isPlainObject(node)) for (const [key, item] of Object.entries(node)) visit(item, [...path, key]);
  };
  visit(raw, []);
  const rank = (path: ConfigPath): number => {
    for (let n = path.length; n >= 0; n--) {
      const at = position.get(pathKey(path.slice(0, n)));
      if (at !== undefined) return at;
    }
    return 0;
  };
  return issues
    .map((issue, i) => ({ issue, rank: rank(issue.path), i }))
    .sort((a, b) => a.rank - b.rank || a.i - b.i)
    .map((entry) => entry.issue);
}

/** Freezes a parsed config and everything in it: validated once at start, then immutable (STYLE §5). */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}
