import type { Command } from 'commander';
import type { AgentStatus, SourcesResponse } from '../../protocols/index.js';
import { withTlsOptions, type TlsOptions } from './tls-options.js';

interface StatusOptions extends TlsOptions {
  token?: string;
  json?: boolean;
  source?: string;
}

export function register(program: Command): void {
  const command = program
    .command('status')
    .description("show an agent's buffer and push state, or a gateway's health and sources")
    .argument('<url>', "an agent's pull listener (http://127.0.0.1:7402) or a gateway (http://127.0.0.1:7400)")
    .option('--token <token>', 'bearer token (default: $METEORZX_TOKEN)')
    .option('--json', 'print the raw JSON answer', false)
    .option('--source <id>', 'a gateway: only this source and the epochs of the agent with this id (a gateway with many sources lists them all otherwise)');
  withTlsOptions(command).action(async (url: string, options: StatusOptions) => {
    await status(url, options);
  });
}

async function status(url: string, options: StatusOptions): Promise<void> {
  const { baseUrl, call, answerError, tokenFrom, useTlsOptions } = await import('../gateway-client.js');
  const base = baseUrl(url);
  const token = tokenFrom(options.token);
  useTlsOptions(options);
  // An agent answers /v1/status; a gateway has no such route and answers /healthz.
  const agent = await call(base, { path: '/v1/status', token });
  if (agent.status === 200) {
    const s = JSON.parse(agent.body.toString('utf8')) as AgentStatus;
    process.stdout.write(options.json ? `${JSON.stringify(s, null, 2)}\n` : formatAgent(s));
    if (s.writeError) {
      // Its intakes answer 503 and its sources wait: for a probe reading the exit status, as a gateway not ready.
      const { CommonErrors } = await import('../../common/errors.js');
      throw CommonErrors.METEORZX_NOT_READY(`agent ${s.id} at ${base.origin} cannot write its buffer: ${s.writeError}`, { userError: true });
    }
    return;
  }
  const health = await call(base, { path: '/healthz' });
  if (health.status !== 200) throw answerError(agent.status === 404 ? health : agent, `no agent or gateway status at ${base.origin}`);
  const ready = await call(base, { path: '/readyz' });
  // Page by page (a page holds up to 10,000 sources), or the one source asked for; the first page's other
  // sections (pulls) are kept as they are.
  let s: SourcesResponse | undefined;
  for (let query: Record<string, string> = options.source === undefined ? {} : { source: options.source }; ; ) {
    const page = await call(base, { path: `/v1/sources?${new URLSearchParams(query).toString()}`, token });
    if (page.status !== 200) throw answerError(page, 'gateway is up, but /v1/sources failed');
    const { next, ...part } = JSON.parse(page.body.toString('utf8')) as SourcesResponse;
    if (s === undefined) s = part;
    else {
      s.epochs.push(...part.epochs);
      s.sources.push(...part.sources);
      if (part.damaged !== undefined) s.damaged = [...(s.damaged ?? []), ...part.damaged];
    }
    if (next === undefined) break;
    query = { after: next };
  }
  const isReady = ready.status === 200;
  process.stdout.write(options.json ? `${JSON.stringify({ ready: isReady, ...s }, null, 2)}\n` : formatGateway(isReady, s));
  for (const key of s.damaged ?? []) process.stderr.write(`meteorzx: warning: registry key ${key} is damaged and left out of this report (meteorzx verify names it)\n`);
  if (!isReady) {
    // A check (a cron job, a monitoring probe) reads the exit status: printing NOT READY and exiting 0 told it all was well.
    const { CommonErrors } = await import('../../common/errors.js');
    throw CommonErrors.METEORZX_NOT_READY(`gateway at ${base.origin} is not ready (GET /readyz answered ${ready.status})`, { userError: true });
  }
}

function formatAgent(s: AgentStatus): string {
  const lines = [
    `agent ${s.id} (epoch ${s.epoch})`,
    `  head seq        ${s.head}`,
    `  delivered seq   ${s.delivered} (${s.head - s.delivered} waiting)`,
    `  oldest seq      ${s.oldest}`,
    `  buffered        ${s.bufferedEvents} events, ${s.bufferedBytes} bytes`,
    `  push            ${s.push.state}${s.push.lastError ? ` (last error: ${s.push.lastError})` : ''}`,
  ];
  if (s.recovered) lines.push(`  recovered       ${s.recovered}`);
  // While it is set the intakes answer 503: the one line that says why.
  if (s.writeError) lines.push(`  write error     ${s.writeError}`);
  return `${lines.join('\n')}\n`;
}

function formatGateway(ready: boolean, s: SourcesResponse): string {
  const lines = [`gateway ${ready ? 'ready' : 'NOT READY'}: ${s.sources.length} sources, ${s.epochs.length} agent epochs`];
  for (const src of s.sources) {
    lines.push(`  ${src.source.padEnd(24)} last seen ${src.lastSeen}  accepted ${src.accepted}  duplicates ${src.duplicates}  rejected ${src.rejected}`);
  }
  for (const e of s.epochs) {
    const gaps = e.gaps.length === 0 ? 'no gaps' : `gaps ${e.gaps.map((g) => (g.from === g.to ? `${g.from}` : `${g.from}-${g.to}`)).join(', ')}`;
    lines.push(`  agent ${e.agent} epoch ${e.epoch}: last seq ${e.lastSeq}, received ${e.received}, ${gaps}`);
  }
  for (const key of s.damaged ?? []) lines.push(`  DAMAGED registry key ${key}: left out until the next commit of its source or epoch mends it (meteorzx verify names it)`);
  return `${lines.join('\n')}\n`;
}
