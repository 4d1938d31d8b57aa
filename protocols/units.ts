import { ProtocolErrors } from './errors.js';

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
};

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

const SIZE_RE = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/;
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/;

/** Parses `1GiB`, `512 MB`, `4096` (bytes) into bytes. Numbers pass through. */
export function parseSize(input: string | number): number {
  if (typeof input === 'number') {
    if (Number.isFinite(input) && input >= 0) return Math.floor(input);
    throw ProtocolErrors.METEORZX_INVALID_SIZE(`not a size: ${String(input)}`, { userError: true });
  }
  const m = SIZE_RE.exec(input);
  const unit = m?.[2]?.toLowerCase() ?? '';
  const factor = unit === '' ? 1 : SIZE_UNITS[unit];
  if (!m || factor === undefined) {
    throw ProtocolErrors.METEORZX_INVALID_SIZE(`not a size: "${input}" (use e.g. 64KiB, 1GiB)`, { userError: true });
  }
  const value = Math.floor(Number(m[1]) * factor);
  if (!Number.isSafeInteger(value)) {
    throw ProtocolErrors.METEORZX_INVALID_SIZE(`size too large: "${input}"`, { userError: true });
  }
  return value;
}

/** Parses `7d`, `1h30m`, `250ms`, `5m` into milliseconds. Numbers are milliseconds. */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (Number.isFinite(input) && input >= 0) return Math.floor(input);
    throw ProtocolErrors.METEORZX_INVALID_DURATION(`not a duration: ${String(input)}`, { userError: true });
  }
  let rest = input.trim();
  if (rest === '') throw ProtocolErrors.METEORZX_INVALID_DURATION('not a duration: empty', { userError: true });
  let total = 0;
  while (rest.length > 0) {
    const m = DURATION_RE.exec(rest);
    if (!m) {
      throw ProtocolErrors.METEORZX_INVALID_DURATION(`not a duration: "${input}" (use e.g. 250ms, 30s, 5m, 1h, 7d)`, {
        userError: true,
      });
    }
    total += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number);
    rest = rest.slice(m[0].length);
  }
  if (!Number.isSafeInteger(Math.floor(total))) {
    throw ProtocolErrors.METEORZX_INVALID_DURATION(`duration too large: "${input}"`, { userError: true });
  }
  return Math.floor(total);
}

const SIZE_PRINT: Array<[string, number]> = [
  ['GiB', 1024 ** 3],
  ['MiB', 1024 ** 2],
  ['KiB', 1024],
];

/** Formats bytes for humans: 1536 → "1.5KiB". */
export function formatSize(bytes: number): string {
  for (const [unit, factor] of SIZE_PRINT) {
    if (bytes >= factor) return `${Number((bytes / factor).toFixed(1))}${unit}`;
  }
  return `${bytes}B`;
}
