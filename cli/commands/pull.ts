import type { Command } from 'commander';
import type { Dispatcher } from 'undici';
import type { AgentStatus } from '../../protocols/index.js';

/** The agent's pull listener wants its pull.token, which `meteorzx pull` reads from here. */
const AGENT_TOKEN_HINT = 'pass --token or set METEORZX_PULL_TOKEN';

/** An https agent whose certificate no trusted CA signed: where `meteorzx pull` takes its CA. */
const AGENT_CA_HINT = 'pass --ca FILE: the PEM CA certificate that signs it';

interface PullOptions {
  after?: string;
  limit?: string;
  out?: string;
  into?: string;
  token?: string;
  gatewayToken?: string;
  ca?: string;
  cert?: string;
  key?: string;
  pageSize: string;
}

export function register(program: Command): void {
  program
    .command('pull')
    .description("fetch an agent's buffered events (NDJSON, in seq order), or have a gateway pull and store them (--into)")
    .argument('<agent-url>', "the agent's pull listener, e.g. http://127.0.0.1:7402")
    .option('--after <seq>', 'start after this seq (default 0, or where --out stops when it exists)')
    .option('--limit <n>', 'at most this many events (default: up to the agent head)')
    .option('-o, --out <file>', 'write NDJSON here (appends and resumes when the file exists) instead of stdout')
    .option('--into <gateway-url>', 'ask this gateway to pull and store the range itself (POST /v1/pull; needs the admin scope)')
    .option('--token <token>', "the agent's pull.token (default: $METEORZX_PULL_TOKEN)")
    .option('--gateway-token <token>', 'bearer token for --into (default: $METEORZX_TOKEN)')
    .option('--ca <file>', "PEM file of the CA that signs the https agent's certificate (--into sends it to the gateway, which uses it unless the URL is in its pullFrom)")
    .option('--cert <file>', "PEM file of a client certificate, for an agent whose pull.tls requires one (mutual TLS); with --key; not with --into (the gateway's is pullFrom[].cert)")
    .option('--key <file>', 'PEM file of the private key of --cert')
    .option('--page-size <n>', 'events per request to the agent (at most 10000)', '1000')
    .action(async (url: string, options: PullOptions) => {
      if (options.into !== undefined) await pullInto(url, options);
      else await pullOut(url, options);
    });
}

function seqOption(value: string | undefined, name: string, min: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min || !Number.isSafeInteger(Number(value))) {
    throw new Error(`${name} must be an integer ≥ ${min}, not "${value}"`);
  }
  return Number(value);
}

async function usage(fn: () => number | undefined): Promise<number | undefined> {
  try {
    return fn();
  } catch (err) {
    const { CommonErrors } = await import('../../common/errors.js');
    throw CommonErrors.METEORZX_USAGE((err as Error).message, { userError: true });
  }
}

/**
 * The PEM text of `--ca`, checked as the gateway checks POST /v1/pull's `ca`;
 * undefined without the option. Read bounded: a wrong path such as a device must not fill the heap.
 */
async function readCa(file: string | undefined, agent: URL): Promise<string | undefined> {
  if (file === undefined) return undefined;
  const [{ readAtMost }, { CommonErrors }, { MAX_CA_PEM_BYTES, caPemProblem }] = await Promise.all([
    import('../../common/read-at-most.js'),
    import('../../common/errors.js'),
    import('../../common/tls-trust.js'),
  ]);
  if (agent.protocol !== 'https:') throw CommonErrors.METEORZX_USAGE(`--ca is for an https agent URL; ${agent.origin} is http`, { userError: true });
  let text: string;
  try {
    // One byte past the limit is enough to refuse it (caPemProblem names the size); a pipe (`--ca <(...)`) may take several reads.
    text = (await readAtMost(file, MAX_CA_PEM_BYTES)).toString('utf8');
  } catch (err) {
    throw CommonErrors.METEORZX_USAGE(`--ca ${file}: cannot read it: ${(err as Error).message}`, { userError: true, cause: err });
  }
  const problem = caPemProblem(text);
  if (problem !== undefined) throw CommonErrors.METEORZX_USAGE(`--ca ${file} ${problem}`, { userError: true });
  return text;
}

async function pullInto(url: string, options: PullOptions): Promise<void> {
  const { baseUrl, call, answerError, tokenFrom } = await import('../gateway-client.js');
  if (options.cert !== undefined || options.key !== undefined) {
    const { CommonErrors } = await import('../../common/errors.js');
    // A private key is not sent to the gateway in a request: it presents the one of pullFrom[].cert/key.
    throw CommonErrors.METEORZX_USAGE("--cert and --key are for a direct pull; with --into the gateway presents pullFrom[].cert and key", { userError: true });
  }
  const after = await usage(() => seqOption(options.after, '--after', 0));
  const limit = await usage(() => seqOption(options.limit, '--limit', 1));
  const ca = await readCa(options.ca, baseUrl(url));
  const body = {
    url,
    ...(after === undefined && limit === undefined ? {} : { after: after ?? 0 }),
    ...(limit === undefined ? {} : { until: (after ?? 0) + limit }),
    ...(options.token === undefined && !process.env.METEORZX_PULL_TOKEN ? {} : { token: options.token ?? process.env.METEORZX_PULL_TOKEN }),
    ...(ca === undefined ? {} : { ca }),
  };
  const res = await call(baseUrl(options.into as string), {
    method: 'POST',
    path: '/v1/pull',
    token: tokenFrom(options.gatewayToken),
    body: JSON.stringify(body),
    contentType: 'application/json',
    timeoutMs: 3_600_000,
  });
  if (res.status !== 200) throw answerError(res, 'gateway pull failed', 'pass --gateway-token or set METEORZX_TOKEN');
  process.stdout.write(`${JSON.stringify(JSON.parse(res.body.toString('utf8')), null, 2)}\n`);
}

/** Where an earlier, interrupted `--out` stopped: its last complete line. A partial last line is cut off. */
async function resumePoint(file: string): Promise<{ seq: number; epoch: string | undefined } | undefined> {
  const { open } = await import('node:fs/promises');
  const fh = await open(file, 'r+').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (fh === undefined) return undefined;
  try {
    const { size } = await fh.stat();
    // An event is at most 64 KiB by default: the last complete line lies in the last few hundred KiB.
    const span = Math.min(size, 1 << 20);
    const tail = Buffer.alloc(span);
    await fh.read(tail, 0, span, size - span);
    const end = tail.lastIndexOf(0x0a);
    if (end < 0) {
      await fh.truncate(0);
      return undefined;
    }
    if (end !== span - 1) await fh.truncate(size - span + end + 1);
    const start = tail.lastIndexOf(0x0a, end - 1) + 1;
    const last = JSON.parse(tail.subarray(start, end).toString('utf8')) as { seq?: number; epoch?: string };
    if (typeof last.seq !== 'number') throw new Error(`the last line of ${file} has no seq; not a pull output`);
    return { seq: last.seq, epoch: last.epoch };
  } finally {
    await fh.close();
  }
}

async function pullOut(url: string, options: PullOptions): Promise<void> {
  const { baseUrl } = await import('../gateway-client.js');
  const base = baseUrl(url);
  const ca = await readCa(options.ca, base);
  const clientCert = await readClientCert(options);
  if (ca === undefined && clientCert === undefined) return pullPages(base, options, undefined);
  const { Agent } = await import('undici');
  // TLS's `ca` replaces the system's CAs for these connections: they go to this one agent only.
  const dispatcher = new Agent({ connect: { ...(ca === undefined ? {} : { ca }), ...clientCert } });
  try {
    await pullPages(base, options, dispatcher);
  } finally {
    await dispatcher.close();
  }
}

/** The PEM files of --cert and --key, read; undefined without them. */
async function readClientCert(options: PullOptions): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  const { readTlsFiles } = await import('../gateway-client.js');
  const { cert, key } = readTlsFiles({ ...(options.cert === undefined ? {} : { cert: options.cert }), ...(options.key === undefined ? {} : { key: options.key }) });
  return cert === undefined || key === undefined ? undefined : { cert, key };
}

async function pullPages(base: URL, options: PullOptions, dispatcher: Dispatcher | undefined): Promise<void> {
  const [{ call, answerError, networkWhy }, { request }, { createWriteStream }, { CommonErrors }, { PullHoles }] = await Promise.all([
    import('../gateway-client.js'),
    import('undici'),
    import('node:fs'),
    import('../../common/errors.js'),
    import('../pull-holes.js'),
  ]);
  const via = dispatcher === undefined ? {} : { dispatcher };
  const token = options.token ?? (process.env.METEORZX_PULL_TOKEN || undefined);
  const pageSize = Math.min((await usage(() => seqOption(options.pageSize, '--page-size', 1))) ?? 1000, 10_000);
  const limit = await usage(() => seqOption(options.limit, '--limit', 1));
  const statusRes = await call(base, { path: '/v1/status', token, untrustedHint: AGENT_CA_HINT, ...via });
  if (statusRes.status !== 200) throw answerError(statusRes, `no agent at ${base.origin}`, AGENT_TOKEN_HINT);
  const status = JSON.parse(statusRes.body.toString('utf8')) as AgentStatus;

  const resumed = options.out === undefined ? undefined : await resumePoint(options.out);
  if (resumed?.epoch !== undefined && resumed.epoch !== status.epoch) {
    throw CommonErrors.METEORZX_USAGE(`${options.out} holds epoch ${resumed.epoch} but the agent is now at epoch ${status.epoch}; write to another --out`, { userError: true });
  }
  const first = (await usage(() => seqOption(options.after, '--after', 0))) ?? 0;
  let after = Math.max(first, resumed?.seq ?? 0);
  const until = limit === undefined ? status.head : Math.min(status.head, first + limit);
  const out: NodeJS.WritableStream = options.out === undefined ? process.stdout : createWriteStream(options.out, { flags: 'a' });
  // Each write's callback reports its error (a full disk, a reader gone); unheard, the event killed the CLI with a stack trace.
  out.on('error', () => undefined);
  const warn = (line: string): void => void process.stderr.write(`meteorzx: warning: ${line}\n`);
  const holes = new PullHoles(after, warn);
  const bar = await progressBar(until - after);
  let done = 0;
  let bytes = 0;
  try {
    while (after < until) {
      const q = new URLSearchParams({ after: String(after), limit: String(Math.min(pageSize, until - after)), epoch: status.epoch });
      let pending = '';
      let lastLine = '';
      let lines = 0;
      // The agent stopped or its connection broke (undici says only "other side closed"): say so, with what was written and how to go on.
      const pageFailed = (err: unknown, when: string): Error =>
        CommonErrors.METEORZX_GATEWAY_UNREACHABLE(
          `pull after seq ${after} from ${base.origin} failed ${when}: ${networkWhy(err)}; ${done + lines} events written${options.out === undefined ? '' : `; run the same command again to resume`}`,
          { userError: true, cause: err },
        );
      const res = await request(`${base.toString().replace(/\/+$/, '')}/v1/events?${q.toString()}`, {
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
        ...via,
      }).catch((err: unknown) => {
        throw pageFailed(err, 'before the agent answered');
      });
      if (res.statusCode !== 200) {
        const body = Buffer.from(await res.body.arrayBuffer());
        throw answerError({ status: res.statusCode, headers: res.headers, body }, `pull after seq ${after} failed`, AGENT_TOKEN_HINT);
      }
      for await (const buf of answerChunks(res.body, (err) => pageFailed(err, 'in the middle of its answer'))) {
        bytes += buf.length;
        await write(out, buf);
        const text = pending + buf.toString('utf8');
        const nl = text.lastIndexOf('\n');
        if (nl < 0) {
          pending = text;
          continue;
        }
        // Every line's seq: one missing between two lines is a hole the agent stepped over (PullHoles).
        for (let start = 0, end = text.indexOf('\n'); end >= 0 && end <= nl; start = end + 1, end = text.indexOf('\n', start)) {
          lastLine = text.slice(start, end);
          holes.line((JSON.parse(lastLine) as { seq: number }).seq);
          lines += 1;
        }
        pending = text.slice(nl + 1);
      }
      if (lines === 0) {
        // An answer with no line whose X-Last-Seq is past `after`: the read met a hole there and ended whole (an
        // answer short of it otherwise is cut off). Step over it, as the next page would have.
        const lastSeq = Number(res.headers['x-last-seq']);
        if (Number.isSafeInteger(lastSeq) && lastSeq > after) {
          holes.holesTo(lastSeq);
          after = lastSeq;
          continue;
        }
        // Every seq up to the agent's head a hole (an empty answer that says so): stepped over, not the end of what it holds.
        const holesTo = Number(res.headers['x-meteorzx-holes-to']);
        if (Number.isSafeInteger(holesTo) && holesTo > after) holes.holesTo(Math.min(holesTo, until));
        break; // the agent has nothing more (retention moved, or head shrank)
      }
      const seq = (JSON.parse(lastLine) as { seq: number }).seq;
      done += lines;
      after = seq;
      bar?.update(done, { bytes: formatBytes(bytes) });
    }
  } catch (err) {
    // The reader of stdout went away (`meteorzx pull … | head`): what it wanted was written; a normal end, as for `query`.
    if (out === process.stdout && (err as NodeJS.ErrnoException).code === 'EPIPE') return;
    throw err;
  } finally {
    bar?.stop();
    if (out !== process.stdout) await new Promise<void>((r) => out.end(() => r()));
  }
  if (bar === undefined && options.out !== undefined && process.stderr.isTTY) process.stderr.write(`pulled ${done} events\n`);
  const missing = holes.summary();
  if (missing !== undefined) warn(missing);
}

/** The chunks of an answer; a failure reading it (not of the loop that takes them) becomes `fail(err)`. */
async function* answerChunks(body: AsyncIterable<unknown>, fail: (err: unknown) => Error): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of body) yield chunk as Buffer;
  } catch (err) {
    throw fail(err);
  }
}

/** Writes and waits for the stream to take it: bounded memory behind a slow reader, and its error rejects. */
function write(out: NodeJS.WritableStream, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => out.write(chunk, (err) => (err ? reject(err) : resolve())));
}

/** A bar on stderr only when it is a terminal: a pipe or a log file gets no escape codes. */
async function progressBar(total: number): Promise<{ update(value: number, payload: { bytes: string }): void; stop(): void } | undefined> {
  if (!process.stderr.isTTY) return undefined;
  const { SingleBar, Presets } = await import('cli-progress');
  const bar = new SingleBar(
    { stream: process.stderr, format: 'pull [{bar}] {value}/{total} events | {bytes} | {speed} ev/s | ETA {eta_formatted}', fps: 5 },
    Presets.shades_classic,
  );
  const started = Date.now();
  bar.start(total, 0, { bytes: '0 B', speed: '0' });
  return {
    update(value, payload) {
      const seconds = Math.max((Date.now() - started) / 1000, 0.001);
      bar.update(value, { ...payload, speed: String(Math.round(value / seconds)) });
    },
    stop: () => bar.stop(),
  };
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}
