import { Option, type Command } from 'commander';
import { CommonErrors } from '../../common/errors.js';
import { withTlsOptions, type TlsOptions } from './tls-options.js';

interface QueryOptions extends TlsOptions {
  id?: string;
  source?: string;
  type?: string;
  since?: string;
  until?: string;
  limit?: string;
  format: 'ndjson' | 'table';
  token?: string;
}

// The gateway's largest page (gateway/http/routes/query.ts MAX_PAGE).
const PAGE = 10_000;

export function register(program: Command): void {
  const command = program
    .command('query')
    .description('print stored events from a gateway, oldest first, following pages to the end')
    .argument('<gateway-url>', 'the gateway HTTP API, e.g. http://127.0.0.1:7400')
    .option('--id <id>', 'only the event stored under this id')
    .option('--source <source>', 'only events of this source')
    .option('--type <type>', 'only events of this type')
    .option('--since <time>', 'received at or after (RFC 3339 or ms since the epoch)')
    .option('--until <time>', 'received before (RFC 3339 or ms since the epoch)')
    .option('--limit <n>', 'print at most n events (default: all)')
    .addOption(new Option('--format <format>', 'output format').choices(['ndjson', 'table']).default('ndjson'))
    .option('--token <token>', 'bearer token with the query scope (default: $METEORZX_TOKEN)');
  withTlsOptions(command).action(async (url: string, options: QueryOptions) => {
    await query(url, options);
  });
}

function parseLimit(text: string | undefined): number {
  if (text === undefined) return Number.POSITIVE_INFINITY;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) {
    throw CommonErrors.METEORZX_USAGE(`--limit: expected a positive integer, got "${text}"`, { userError: true });
  }
  return n;
}

async function query(url: string, options: QueryOptions): Promise<void> {
  const { baseUrl, call, answerError, tokenFrom, useTlsOptions } = await import('../gateway-client.js');
  const base = baseUrl(url);
  const token = tokenFrom(options.token);
  useTlsOptions(options);
  let remaining = parseLimit(options.limit);
  let cursor: string | undefined;
  const damaged = { blocks: 0, pointers: 0 };
  const table = options.format === 'table';
  // `meteorzx query … | head` closes the pipe early: that is the reader's choice, not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
  });
  if (table) process.stdout.write(`${row(['RECEIVED', 'SOURCE', 'TYPE', 'ID', 'VIA', 'INTEGRITY'])}\n`);
  do {
    const params = new URLSearchParams();
    for (const key of ['id', 'source', 'type', 'since', 'until'] as const) {
      const value = options[key];
      if (value !== undefined) params.set(key, value);
    }
    params.set('limit', String(Math.min(PAGE, remaining)));
    if (cursor !== undefined) params.set('cursor', cursor);
    const res = await call(base, { path: `/v1/events?${params.toString()}`, token });
    if (res.status !== 200) throw answerError(res, 'query failed');
    // An agent's pull listener also answers GET /v1/events, but with its whole buffer: it takes no filter, so
    // `--type x` against it printed every buffered event as if it matched (its answer names the agent's epoch).
    if (res.headers['x-meteorzx-epoch'] !== undefined) {
      throw CommonErrors.METEORZX_USAGE(`${base.origin} is an agent's pull listener, not a gateway: it does not filter events (meteorzx pull reads it)`, {
        userError: true,
      });
    }
    const text = res.body.toString('utf8');
    const lines = text.split('\n').filter((l) => l.length > 0);
    remaining -= lines.length;
    await write(table ? lines.map((l) => `${tableRow(l)}\n`).join('') : text);
    const damage = damagedBlocks(res.headers['x-damaged-blocks']);
    for (const { line, pointer } of damage) {
      process.stderr.write(`meteorzx: warning: ${line}\n`);
      damaged[pointer ? 'pointers' : 'blocks'] += 1;
    }
    const next = res.headers['x-next-cursor'];
    // A page of damaged blocks alone still moves on: its cursor is past them.
    cursor = typeof next === 'string' && next !== '' && (lines.length > 0 || damage.length > 0) ? next : undefined;
  } while (cursor !== undefined && remaining > 0);
  if (damaged.blocks + damaged.pointers > 0) {
    const what = [damaged.blocks > 0 ? `${damaged.blocks} damaged block(s)` : '', damaged.pointers > 0 ? `${damaged.pointers} damaged dedup pointer(s)` : ''];
    throw CommonErrors.METEORZX_QUERY_INCOMPLETE(
      `${what.filter((w) => w !== '').join(' and ')} left out (named above); every other event was written (meteorzx verify ${url} locates the damage)`,
      { userError: true },
    );
  }
}

/**
 * The gateway's `X-Damaged-Blocks` header (a JSON array of the blocks a page
 * could not decode and left out, and of a damaged dedup pointer that a
 * lookup by id could not follow, docs/http-api.md) as one line each.
 */
function damagedBlocks(header: string | string[] | undefined): { line: string; pointer: boolean }[] {
  if (header === undefined) return [];
  const text = Array.isArray(header) ? header.join(',') : header;
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch {
    return [{ line: `the gateway left out damaged blocks: ${text.slice(0, 300)}`, pointer: false }];
  }
  if (!Array.isArray(list)) return [{ line: `the gateway left out damaged blocks: ${text.slice(0, 300)}`, pointer: false }];
  return list.map((d: { kind?: unknown; block?: unknown; receivedFrom?: unknown; receivedTo?: unknown; events?: unknown; error?: unknown }) => {
    // A damaged dedup pointer: the event under that id may be stored, but cannot be found by it.
    if (d.kind === 'pointer') return { line: `the event under this id cannot be looked up: ${String(d.error)}`, pointer: true };
    const held = typeof d.events === 'number' ? [`${d.events} event(s)`] : [];
    const received = typeof d.receivedFrom === 'string' ? [`received ${d.receivedFrom}${d.receivedTo !== d.receivedFrom ? ` to ${String(d.receivedTo)}` : ''}`] : [];
    const about = [...held, ...received].join(', ');
    return { line: `left out damaged ${String(d.kind)} block ${String(d.block)}${about === '' ? '' : ` (${about})`}: ${String(d.error)}`, pointer: false };
  });
}

/** Writes and waits for stdout to take it, so a long query through `head` or a slow pipe stays bounded. */
function write(text: string): Promise<void> {
  if (text === '') return Promise.resolve();
  return new Promise((resolve, reject) => process.stdout.write(text, (err) => (err ? reject(err) : resolve())));
}

const WIDTHS = [24, 20, 24, 28, 5, 10];

function row(cells: readonly string[]): string {
  return cells
    .map((c, i) => {
      const w = WIDTHS[i] ?? 10;
      return c.length > w ? `${c.slice(0, w - 1)}…` : c.padEnd(w);
    })
    .join(' ')
    .trimEnd();
}

function tableRow(line: string): string {
  const e = JSON.parse(line) as { id?: string; source?: string; type?: string; ingest?: { receivedAt?: string; method?: string; integrity?: string } };
  return row([e.ingest?.receivedAt ?? '', e.source ?? '', e.type ?? '', e.id ?? '', e.ingest?.method ?? '', e.ingest?.integrity ?? '']);
}
