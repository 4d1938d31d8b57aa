import { isIP } from 'node:net';
import { z } from 'zod';
import { formatSize, parseDuration, parseSize } from '../../protocols/units.js';
import { LOG_LEVELS } from '../log-level.js';
import { describeValue } from './issues.js';

/**
 * Field types shared by the agent and gateway schemas. Each accepts what a
 * person writes in YAML (`1GiB`, `7d`, `127.0.0.1:7401`, `"500"` from an
 * environment variable) and outputs what code wants (bytes, ms, {host, port}).
 */

export interface Bounds {
  min?: number;
  max?: number;
}

/** Source and agent ids (DESIGN §2). */
export const SOURCE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** A string or a number: a value written in YAML, or a whole `${VAR}` expansion (always a string). */
function scalar(what: string) {
  return z.union([z.string(), z.number()], {
    error: (iss) => (iss.input === undefined ? 'required' : `expected ${what}, got ${describeValue(iss.input)}`),
  });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function checkBounds(ctx: z.core.$RefinementCtx, value: number, bounds: Bounds, show: (n: number) => string): void {
  if (bounds.min !== undefined && value < bounds.min) ctx.addIssue({ code: 'custom', message: `must be at least ${show(bounds.min)}` });
  if (bounds.max !== undefined && value > bounds.max) ctx.addIssue({ code: 'custom', message: `must be at most ${show(bounds.max)}` });
}

/** `64KiB`, `1GiB`, `512MB`, or a number of bytes. Output: bytes. */
export function size(bounds: Bounds = {}) {
  return scalar('a size such as 64KiB or 1GiB').transform((input, ctx) => {
    try {
      const bytes = parseSize(input);
      checkBounds(ctx, bytes, bounds, formatSize);
      return bytes;
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: messageOf(err) });
      return z.NEVER;
    }
  });
}

/** `250ms`, `30s`, `5m`, `1h30m`, `7d`, or a number of milliseconds. Output: ms. */
export function duration(bounds: Bounds = {}) {
  return scalar('a duration such as 30s or 7d').transform((input, ctx) => {
    try {
      const ms = parseDuration(input);
      checkBounds(ctx, ms, bounds, formatMs);
      return ms;
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: messageOf(err) });
      return z.NEVER;
    }
  });
}

/** Shortest exact form of a duration, for messages: 300000 → "5m". */
export function formatMs(ms: number): string {
  for (const [unit, factor] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= factor && ms % factor === 0) return `${ms / factor}${unit}`;
  }
  return `${ms}ms`;
}

/** An integer, also as a string of digits (`${BATCH:-500}`). */
export function int(bounds: Bounds = {}) {
  return scalar('an integer').transform((input, ctx) => {
    const n = typeof input === 'number' ? input : /^\s*-?\d+\s*$/.test(input) ? Number(input) : NaN;
    if (!Number.isSafeInteger(n)) {
      ctx.addIssue({ code: 'custom', message: `expected an integer, got ${describeValue(input)}` });
      return z.NEVER;
    }
    checkBounds(ctx, n, bounds, String);
    return n;
  });
}

/** A number, also as a numeric string. */
export function number(bounds: Bounds = {}) {
  return scalar('a number').transform((input, ctx) => {
    const n = typeof input === 'number' ? input : input.trim() === '' ? NaN : Number(input);
    if (!Number.isFinite(n)) {
      ctx.addIssue({ code: 'custom', message: `expected a number, got ${describeValue(input)}` });
      return z.NEVER;
    }
    checkBounds(ctx, n, bounds, String);
    return n;
  });
}

/** true/false, also as the strings "true"/"false". */
export function bool() {
  return z
    .union([z.boolean(), z.enum(['true', 'false'])], {
      error: (iss) => (iss.input === undefined ? 'required' : `expected true or false, got ${describeValue(iss.input)}`),
    })
    .transform((input) => input === true || input === 'true');
}

/** A non-empty string: a file path, a name. */
export function text() {
  return z.string().min(1);
}

/** An inline secret; `<key>File` gives it from a file instead (see secrets.ts). */
export function secret() {
  return z.string().min(1);
}

export function logLevel() {
  return z.enum(LOG_LEVELS);
}

export function sourceId() {
  return z.string().regex(SOURCE_ID_PATTERN, {
    error: (iss) => `not a valid id: ${describeValue(iss.input)} (use 1 to 128 of A-Z a-z 0-9 . _ : -)`,
  });
}

/** A `relayFor` pattern: a source id where `*` and `?` are wildcards. */
export function sourcePattern() {
  return z.string().regex(/^[A-Za-z0-9._:*?-]{1,128}$/, {
    error: (iss) => `not a source pattern: ${describeValue(iss.input)} (a source id, * and ? as wildcards)`,
  });
}

/** A dotted path to an event field: `data.card`, `actor`. */
export function fieldPath() {
  return z.string().regex(/^[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*$/, {
    error: (iss) => `not a field path: ${describeValue(iss.input)} (use dotted names such as data.card)`,
  });
}

/**
 * A dotted path whose names may end in `[]`, jq's step into every item of
 * an array: `data.cards[].number`, `data.emails[]` (docs/config.md).
 */
export function itemsFieldPath() {
  return z.string().regex(/^[A-Za-z0-9_$@-]+(\[\])*(\.[A-Za-z0-9_$@-]+(\[\])*)*$/, {
    error: (iss) =>
      `not a field path: ${describeValue(iss.input)} (use dotted names such as data.card; a name may end in [] for every item of an array: data.cards[].number)`,
  });
}

/** An absolute URL whose scheme is one of `schemes` (without the colon). Output: the string as written. */
export function url(schemes: readonly string[]) {
  const allowed = schemes.map((s) => `${s}://`).join(' or ');
  return z.string().superRefine((input, ctx) => {
    if (!URL.canParse(input)) {
      ctx.addIssue({ code: 'custom', message: `not a URL: ${describeValue(input)} (expected ${allowed}...)` });
      return;
    }
    const parsed = new URL(input);
    if (!schemes.includes(parsed.protocol.slice(0, -1))) {
      ctx.addIssue({ code: 'custom', message: `expected a URL starting with ${allowed}, got ${describeValue(input)}` });
    } else if (parsed.hostname === '') {
      ctx.addIssue({ code: 'custom', message: `URL has no host: ${describeValue(input)}` });
    }
  });
}

export interface ListenAddress {
  host: string;
  port: number;
}

export interface SocketListenAddress extends ListenAddress {
  /** `tls`: TCP with TLS (syslog over TLS, RFC 5425). */
  protocol: 'udp' | 'tcp' | 'tls';
}

/**
 * `host:port`, `[::1]:port`, or a bare port (bound to 127.0.0.1, the safe
 * default of DESIGN §6). Port 0 asks the OS for a free port (tests).
 */
export function listen() {
  return scalar('host:port').transform((input, ctx) => {
    const address = parseListen(String(input));
    if (typeof address === 'string') {
      ctx.addIssue({ code: 'custom', message: address });
      return z.NEVER;
    }
    return address;
  });
}

/** `udp://host:port`, `tcp://host:port` or `tls://host:port` (syslog). */
export function socketListen() {
  return z.string().transform((input, ctx): SocketListenAddress => {
    const m = /^(udp|tcp|tls):\/\/(.*)$/.exec(input);
    const address = m ? parseListen(m[2] as string) : `expected udp://host:port, tcp://host:port or tls://host:port, got ${describeValue(input)}`;
    if (typeof address === 'string') {
      ctx.addIssue({ code: 'custom', message: address });
      return z.NEVER;
    }
    return { protocol: (m as RegExpExecArray)[1] as SocketListenAddress['protocol'], ...address };
  });
}

const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/** A listen address, or the message saying why it is not one. */
export function parseListen(input: string): ListenAddress | string {
  const text = input.trim();
  const bad = `not a listen address: ${describeValue(input)} (use host:port, e.g. 127.0.0.1:7401)`;
  let host: string;
  let portText: string;
  if (/^\d+$/.test(text)) {
    host = '127.0.0.1';
    portText = text;
  } else {
    const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
    if (!m) return bad;
    host = m[1] as string;
    portText = m[2] as string;
    const ipv6 = text.startsWith('[');
    if (ipv6 ? isIP(host) !== 6 : isIP(host) !== 4 && !HOST_NAME.test(host)) return bad;
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port > 65535) return `port out of range in ${describeValue(input)} (0 to 65535)`;
  return { host, port };
}

/**
 * Rejects items of a list that repeat another's key (two tokens named `ops`).
 * Use as `.superRefine(unique((t) => t.name, 'name'))`; `hideValue` keeps a
 * secret out of the message.
 */
export function unique<T>(keyOf: (item: T) => string | undefined, field: string, options: { hideValue?: boolean } = {}) {
  return (items: readonly T[], ctx: z.core.$RefinementCtx<T[]>): void => {
    const first = new Map<string, number>();
    items.forEach((item, i) => {
      const key = keyOf(item);
      if (key === undefined) return;
      const earlier = first.get(key);
      if (earlier === undefined) {
        first.set(key, i);
        return;
      }
      const what = options.hideValue ? field : `${field} ${describeValue(key)}`;
      ctx.addIssue({ code: 'custom', path: [i, field], message: `duplicate ${what} (same as item ${earlier})` });
    });
  };
}

/**
 * For a mapping whose keys are alternatives (`push: {http} | {mqtt}`): at
 * most one (or exactly one) of `keys` may be present.
 */
export function oneOf<T extends object>(keys: readonly (keyof T & string)[], options: { required: boolean }) {
  return (value: T, ctx: z.core.$RefinementCtx<T>): void => {
    const present = keys.filter((k) => value[k] !== undefined);
    if (present.length > 1) {
      ctx.addIssue({ code: 'custom', message: `give only one of ${keys.join(', ')} (got ${present.join(' and ')})` });
    } else if (present.length === 0 && options.required) {
      ctx.addIssue({ code: 'custom', message: `needs one of ${keys.join(', ')}` });
    }
  };
}
