import type { Command } from 'commander';
import { CommonErrors } from '../../common/errors.js';
import { SOURCE_RE } from '../../protocols/index.js';
import { ANCHOR_FORM, parseAnchor } from '../../gateway/storage/ledger.js';
import type { LedgerAnchor, VerifyReport } from '../../gateway/storage/types.js';
import { withTlsOptions, type TlsOptions } from './tls-options.js';

interface VerifyOptions extends TlsOptions {
  dataDir?: string;
  source?: string;
  anchor?: string;
  token?: string;
}

export function register(program: Command): void {
  const command = program
    .command('verify')
    .description("check the custody ledger's hash chain and every stored event's hash; exit 1 naming the first break")
    .argument('[gateway-url]', 'a running gateway, e.g. http://127.0.0.1:7400 (needs the admin scope)')
    .option('-d, --data-dir <dir>', "a stopped gateway's data directory, read directly")
    .option('--source <source>', 'only events and index keys of this source (the ledger is always checked whole)')
    .option('--anchor <n:hash>', 'a "ledger head" printed by an earlier verify (kept outside the gateway): fail unless the ledger still holds that record with that hash')
    .option('--token <token>', 'bearer token with the admin scope (default: $METEORZX_TOKEN)');
  withTlsOptions(command).action(async (url: string | undefined, options: VerifyOptions) => {
    if ((url === undefined) === (options.dataDir === undefined)) {
      throw CommonErrors.METEORZX_USAGE('give either a gateway URL or --data-dir DIR', { userError: true });
    }
    // A source no event can have would verify nothing and say ok.
    if (options.source !== undefined && !SOURCE_RE.test(options.source)) {
      throw CommonErrors.METEORZX_USAGE(`--source must match ${String(SOURCE_RE)}`, { userError: true });
    }
    const anchor = options.anchor === undefined ? undefined : parseAnchor(options.anchor);
    if (options.anchor !== undefined && anchor === undefined) throw CommonErrors.METEORZX_USAGE(`--anchor: expected ${ANCHOR_FORM}`, { userError: true });
    const report = url === undefined ? await verifyDir(options.dataDir as string, options.source, anchor) : await verifyUrl(url, options, anchor);
    await judge(report);
  });
}

async function verifyUrl(url: string, options: VerifyOptions, anchor: LedgerAnchor | undefined): Promise<VerifyReport> {
  const { baseUrl, call, answerError, tokenFrom, useTlsOptions } = await import('../gateway-client.js');
  useTlsOptions(options);
  const params = new URLSearchParams();
  if (options.source !== undefined) params.set('source', options.source);
  if (anchor !== undefined) params.set('anchor', `${anchor.n}:${anchor.hash}`);
  const query = params.size === 0 ? '' : `?${params.toString()}`;
  // A whole-store check can take minutes on a large store.
  const res = await call(baseUrl(url), { method: 'POST', path: `/v1/verify${query}`, token: tokenFrom(options.token), timeoutMs: 3_600_000 });
  if (res.status !== 200) throw answerError(res, 'verify failed');
  return JSON.parse(res.body.toString('utf8')) as VerifyReport;
}

async function verifyDir(dataDir: string, source: string | undefined, anchor: LedgerAnchor | undefined): Promise<VerifyReport> {
  const [{ existsSync }, { join }, { LevelStorage }, { GatewayErrors }, { isLevelLocked, levelMessage }] = await Promise.all([
    import('node:fs'),
    import('node:path'),
    import('../../gateway/storage/level/index.js'),
    import('../../gateway/errors.js'),
    import('../../common/level-errors.js'),
  ]);
  // Read-only: verifying must not change what it verifies (no registry checkpoint after a crash).
  const storage = new LevelStorage({ dataDir, readOnly: true });
  if (!existsSync(join(dataDir, 'store'))) {
    throw CommonErrors.METEORZX_USAGE(`${dataDir} holds no gateway store (no ${join(dataDir, 'store')})`, { userError: true });
  }
  try {
    await storage.open();
  } catch (err) {
    // LevelDB's LOCK: only one process may open the store, and the gateway keeps it open while running.
    const why = isLevelLocked(err) ? 'it is in use (stop the gateway first, or verify through its URL)' : levelMessage((err as Error).cause ?? err);
    throw GatewayErrors.METEORZX_STORAGE_FAILED(`cannot open ${dataDir}: ${why}`, { userError: true, cause: err });
  }
  const progress = await progressBar();
  try {
    return await storage.verify({
      ...(source === undefined ? {} : { source }),
      ...(anchor === undefined ? {} : { anchor }),
      onProgress: (done) => progress.update(done),
    });
  } finally {
    progress.stop();
    await storage.close();
  }
}

interface Progress {
  update(done: number): void;
  stop(): void;
}

/** A counter on a TTY, nothing in a pipe (DESIGN §5). The total is unknown until the walk ends. */
async function progressBar(): Promise<Progress> {
  if (!process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const { SingleBar } = await import('cli-progress');
  const bar = new SingleBar({ format: 'verifying… {value} records checked', stream: process.stderr, hideCursor: true, fps: 5 });
  bar.start(0, 0);
  return { update: (done) => bar.update(done), stop: () => bar.stop() };
}

async function judge(report: VerifyReport): Promise<void> {
  const summary = `${report.ledgerRecords} custody records, ${report.events} events`;
  // The anchor to keep outside the gateway: a later `verify --anchor` proves the ledger up to it unchanged.
  const head = report.ledgerHead === undefined ? '' : `ledger head: ${report.ledgerHead.n}:${report.ledgerHead.hash}\n`;
  if (report.ok) {
    process.stdout.write(`verify ok: ${summary}\n${head}`);
    return;
  }
  for (const p of report.problems) process.stdout.write(`${p.kind} ${p.where}: ${p.detail}\n`);
  const first = report.problems[0];
  const where = first === undefined ? 'unknown location' : `${{ ledger: 'custody ledger record', event: 'event', registry: 'registry key' }[first.kind]} ${first.where}: ${first.detail}`;
  // The report lists the first problems only; a gateway from before problemCount sends the list alone.
  const count = report.problemCount ?? report.problems.length;
  const listed = count > report.problems.length ? `, the first ${report.problems.length} listed` : '';
  throw CommonErrors.METEORZX_VERIFY_FAILED(`verify failed (${summary} checked; ${count} problem(s)${listed}); first: ${where}`, {
    userError: true,
  });
}
