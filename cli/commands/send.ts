import type { Command } from 'commander';
import type { IngestResponse } from '../../protocols/index.js';
import { withTlsOptions, type TlsOptions } from './tls-options.js';

interface SendOptions extends TlsOptions {
  token?: string;
  batch: string;
}

// Keeps each body well under the 8 MiB default maxBodyBytes, whatever the events' size.
const MAX_BATCH_BYTES = 4 * 1024 * 1024;
/**
 * The longest line, and the longest JSON array, read: both are held as one string, and past V8's string
 * limit (≈ 512 MB) `send /dev/zero` died with a RangeError and a stack trace at ≈ 620 MB of RSS; now it
 * stops at ≈ 160 MB. No event comes near it (a gateway takes 8 MiB bodies by default).
 */
const MAX_TEXT_BYTES = 64 * 1024 * 1024;
const MAX_TRIES = 30;

export function register(program: Command): void {
  const command = program
    .command('send')
    .description('POST events (NDJSON, a JSON array, or JSON events one after another, pretty-printed or not) to an agent intake or a gateway, in batches; exit 1 if any is rejected')
    .argument('<url>', 'agent intake or gateway, e.g. http://127.0.0.1:7400')
    .argument('[file]', 'file of events; "-" or none reads standard input')
    .option('--token <token>', 'bearer token with the ingest scope (default: $METEORZX_TOKEN)')
    .option('--batch <n>', 'events per request, at most 1000', '1000');
  withTlsOptions(command).action(async (url: string, file: string | undefined, options: SendOptions) => {
    await send(url, file, options);
  });
}

interface Batch {
  /** Index of the batch's first event in the whole input. */
  offset: number;
  lines: string[];
}

/** The input, refused once a line (or a JSON array's text, `whole`) passes MAX_TEXT_BYTES. */
async function cappedInput(input: NodeJS.ReadableStream): Promise<NodeJS.ReadableStream> {
  const [{ Transform }, { CommonErrors }] = await Promise.all([import('node:stream'), import('../../common/errors.js')]);
  let run = 0;
  let line = 1;
  const capped = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      for (let at = chunk.indexOf(10); ; at = chunk.indexOf(10, at + 1)) {
        if (at < 0) break;
        line += 1;
        run = -(at + 1); // bytes of this chunk before the new line's start
      }
      run += chunk.length;
      if (run > MAX_TEXT_BYTES) {
        done(CommonErrors.METEORZX_USAGE(`line ${line} of the input is longer than 64 MiB: not events this command can send`, { userError: true }));
        return;
      }
      done(null, chunk);
    },
  });
  input.on('error', (err: Error) => capped.destroy(err));
  return input.pipe(capped);
}

async function* batches(input: NodeJS.ReadableStream, size: number): AsyncGenerator<Batch> {
  const [{ createInterface }, { CommonErrors }] = await Promise.all([import('node:readline'), import('../../common/errors.js')]);
  const lines = createInterface({ input: await cappedInput(input), crlfDelay: Number.POSITIVE_INFINITY });
  let arrayBytes = 0;
  let first = true;
  let jsonText: string[] | undefined;
  let current: string[] = [];
  let bytes = 0;
  let offset = 0;
  // Adds one event's line; the batch it completed, if any.
  const add = (record: string): Batch | undefined => {
    let full: Batch | undefined;
    // Bytes, as the receiver counts them: in characters, text of 3 bytes each made 10.5 MB of a "4 MiB" batch.
    const recordBytes = Buffer.byteLength(record) + 1;
    if (current.length >= size || (current.length > 0 && bytes + recordBytes > MAX_BATCH_BYTES)) {
      full = { offset, lines: current };
      offset += current.length;
      current = [];
      bytes = 0;
    }
    current.push(record);
    bytes += recordBytes;
    return full;
  };
  const records = new RecordSplitter();
  for await (const line of lines) {
    if (first && line.trim() !== '') {
      first = false;
      // A JSON array is read whole, then split; anything else is one event per line, or per pretty-printed value.
      if (line.trimStart().startsWith('[')) jsonText = [];
    }
    if (jsonText !== undefined) {
      arrayBytes += line.length + 1;
      if (arrayBytes > MAX_TEXT_BYTES) {
        throw CommonErrors.METEORZX_USAGE('the input is a JSON array longer than 64 MiB: send it as NDJSON (one event per line), or in parts', { userError: true });
      }
      jsonText.push(line);
      continue;
    }
    for (const record of records.push(line)) {
      const full = add(record);
      if (full !== undefined) yield full;
    }
  }
  // A JSON array's events are batched as lines are, by count and by bytes.
  for (const record of jsonText === undefined ? records.end() : await arrayLines(jsonText.join('\n'))) {
    const full = add(record);
    if (full !== undefined) yield full;
  }
  if (current.length > 0) yield { offset, lines: current };
}

/**
 * Input lines to events, one NDJSON line each. NDJSON is one event per line;
 * a JSON event written over several lines (`jq .` prints each event so, one
 * after another) is one event per value, its lines joined. Which it is, the
 * first value tells: a first line that is not JSON by itself but starts a
 * value that is, over its lines. A broken first NDJSON line is then still
 * that line alone, rejected by the receiver; every other line keeps its own.
 */
class RecordSplitter {
  /** Pretty-printed values (true), NDJSON (false), or not known until the first value ends. */
  private pretty: boolean | undefined;
  private pending: string[] = [];
  private pendingBytes = 0;
  private depth = 0;

  push(text: string): string[] {
    // A byte-order mark (Windows editors write one) is no sign of a pretty-printed value.
    const line = this.pretty === undefined && this.pending.length === 0 && text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
    if (this.pending.length === 0 && line.trim() === '') return [];
    // An unindented `{` inside a value starts the next one (printers indent what is inside a value): what is
    // pending was cut short, and goes as it is, for the receiver to reject, not joined with what follows.
    // Inside the first value, a line that is JSON by itself tells NDJSON after a broken first line.
    let cut: string[] = [];
    if (this.pending.length > 0 && line.startsWith('{')) {
      this.pretty ??= !isJson(line);
      cut = this.take();
    }
    if (this.pretty === false || (this.pretty === undefined && this.pending.length === 0 && isJson(line))) {
      this.pretty = false;
      return [...cut, line];
    }
    this.pending.push(line);
    this.pendingBytes += line.length;
    this.depth = depthAfter(line, this.depth);
    // A value past what one body carries is no event anyone takes: let the receiver say what is wrong with it.
    if (this.depth > 0 && this.pendingBytes <= MAX_BATCH_BYTES) return cut;
    return [...cut, ...this.take()];
  }

  end(): string[] {
    return this.pending.length === 0 ? [] : this.take();
  }

  private take(): string[] {
    const lines = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    this.depth = 0;
    // A JSON string cannot hold a line break, so each line starts and ends between tokens: trimmed and joined, the value is unchanged.
    const value = lines.map((l) => l.trim()).join('');
    this.pretty ??= isJson(value);
    return this.pretty ? [value] : lines.filter((l) => l.trim() !== '');
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Nesting depth after `line`, from `depth` before it; a line starts outside any string (JSON strings hold no line break). */
function depthAfter(line: string, depth: number): number {
  let inString = false;
  for (let i = 0; i < line.length; i += 1) {
    const c = line.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i += 1;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) depth += 1;
    else if (c === 0x7d || c === 0x5d) depth -= 1;
  }
  return depth;
}

async function arrayLines(text: string): Promise<string[]> {
  const { CommonErrors } = await import('../../common/errors.js');
  let events: unknown;
  try {
    // A byte-order mark first (PowerShell 5 writes one) is not part of the JSON, as the receiver's decoder also holds.
    events = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (err) {
    throw CommonErrors.METEORZX_USAGE(`input starts with "[" but is not a JSON array: ${(err as Error).message}`, { userError: true });
  }
  if (!Array.isArray(events)) throw CommonErrors.METEORZX_USAGE('input is not a JSON array', { userError: true });
  return events.map((e) => JSON.stringify(e));
}

async function send(url: string, file: string | undefined, options: SendOptions): Promise<void> {
  const [{ baseUrl, call, answerError, tokenFrom, useTlsOptions }, { createReadStream }, { CommonErrors }] = await Promise.all([
    import('../gateway-client.js'),
    import('node:fs'),
    import('../../common/errors.js'),
  ]);
  const size = Number(options.batch);
  if (!/^\d+$/.test(options.batch) || size < 1 || size > 1000) {
    throw CommonErrors.METEORZX_USAGE(`--batch: expected 1 to 1000, got "${options.batch}"`, { userError: true });
  }
  const base = baseUrl(url);
  const token = tokenFrom(options.token);
  useTlsOptions(options);
  const fromFile = file !== undefined && file !== '-';
  // A directory opens, then fails its first read with EISDIR's own words: say it at once.
  if (fromFile && (await import('node:fs/promises').then(({ stat }) => stat(file)).catch(() => undefined))?.isDirectory() === true) {
    throw CommonErrors.METEORZX_USAGE(`cannot read ${file}: it is a directory; give a file of events, or - for stdin`, { userError: true });
  }
  const input = fromFile ? createReadStream(file) : process.stdin;
  const opened = new Promise<void>((resolve, reject) => {
    if (input === process.stdin) return resolve();
    input.once('open', () => resolve());
    input.once('error', (err: NodeJS.ErrnoException) =>
      reject(CommonErrors.METEORZX_USAGE(`cannot read ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`, { userError: true })),
    );
  });
  await opened;

  const total: IngestResponse = { accepted: 0, duplicates: 0, rejected: [] };
  let n = 0;
  /** POSTs events `offset`… as one body; the answer, with `index` counted from `offset`'s event. */
  const post = async (lines: string[], offset: number): Promise<IngestResponse> => {
    const body = `${lines.join('\n')}\n`;
    let res = await call(base, { method: 'POST', path: '/v1/events', token, body, contentType: 'application/x-ndjson' });
    // Backpressure (DESIGN §3.5): wait as told and send the same batch again; ids make the retry harmless.
    for (let tries = 1; (res.status === 503 || res.status === 429) && tries < MAX_TRIES; tries += 1) {
      const after = Number(res.headers['retry-after']);
      await new Promise((r) => setTimeout(r, (Number.isFinite(after) && after > 0 ? after : 1) * 1000));
      res = await call(base, { method: 'POST', path: '/v1/events', token, body, contentType: 'application/x-ndjson' });
    }
    // A receiver whose limits are below this batch (maxBodyBytes, maxBatchEvents): halves, as the agent's push does.
    if (res.status === 413 && lines.length > 1) {
      const half = Math.ceil(lines.length / 2);
      const first = await post(lines.slice(0, half), offset);
      const second = await post(lines.slice(half), offset + half);
      const moved = second.rejected.map((r) => ({ index: r.index + half, error: r.error }));
      return { accepted: first.accepted + second.accepted, duplicates: first.duplicates + second.duplicates, rejected: [...first.rejected, ...moved] };
    }
    if (res.status !== 200) throw answerError(res, `batch ${n} (events ${offset}-${offset + lines.length - 1})`);
    return JSON.parse(res.body.toString('utf8')) as IngestResponse;
  };
  for await (const batch of batches(input, size)) {
    n += 1;
    const r = await post(batch.lines, batch.offset);
    total.accepted += r.accepted;
    total.duplicates += r.duplicates;
    for (const item of r.rejected) total.rejected.push({ index: batch.offset + item.index, error: item.error });
    process.stdout.write(`batch ${n}: ${batch.lines.length} events: accepted ${r.accepted}, duplicates ${r.duplicates}, rejected ${r.rejected.length}\n`);
    for (const item of r.rejected) process.stdout.write(`  rejected event ${batch.offset + item.index}: ${item.error}\n`);
  }
  const sent = total.accepted + total.duplicates + total.rejected.length;
  process.stdout.write(`total: ${sent} events in ${n} batches: accepted ${total.accepted}, duplicates ${total.duplicates}, rejected ${total.rejected.length}\n`);
  if (total.rejected.length > 0) {
    throw CommonErrors.METEORZX_EVENTS_REJECTED(`${total.rejected.length} of ${sent} events rejected (listed above)`, { userError: true });
  }
}
