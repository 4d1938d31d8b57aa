import { dirname } from 'node:path';
import type { Command } from 'commander';
import { CommonErrors } from '../../common/errors.js';
import { errorCode } from '../../protocols/errors.js';
import { HeldWarnings, withHeldSignals, type HeldSignals } from '../held-signals.js';

interface AgentCliOptions {
  config?: string;
  dataDir?: string;
  insecure?: boolean;
}

export function register(program: Command): void {
  program
    .command('agent')
    .description('run the agent: local intake → durable buffer → push to the gateway, plus the status and pull API')
    .option('-c, --config <file>', 'agent config file (YAML or JSON); without it every default applies')
    .option('--data-dir <dir>', 'where the buffer lives (overrides dataDir)')
    .option('--insecure', 'allow the pull listener and the HTTP intake on a non-loopback address without pull.token, intake.http.token')
    // Signals held before anything slow: a stop or reload in the first moments would otherwise kill the process.
    .action((options: AgentCliOptions) => withHeldSignals((held) => runAgent(options, held)));
}

/** Runs until SIGTERM or SIGINT, then drains and closes (cli/service-loop.ts: signals, reload, systemd notify). */
async function runAgent(options: AgentCliOptions, held: HeldSignals): Promise<void> {
  // First, before the buffer and the intakes allocate: the young generation's size (agent/v8-flags.ts).
  (await import('../../agent/v8-flags.js')).applyAgentV8Flags();
  // Loaded here, not at the top: other commands must not pay for them, and the agent never loads the gateway.
  const [{ readConfigFile }, { parseAgentConfig, agentTlsSections }, { createLogger }, { Agent }, { checkTlsFiles }, { countReloadFailure }] = await Promise.all([
    import('../../common/config/load.js'),
    import('../../agent/config.js'),
    import('../../common/logger.js'),
    import('../../agent/agent.js'),
    import('../../common/tls-server.js'),
    import('../../agent/metrics.js'),
  ]);
  // The digest of the TLS files each loaded config was checked with: a reload that renews a certificate restarts.
  const tlsDigests = new WeakMap<object, string>();
  // An expired certificate is a warning: held until the logger exists (it needs the config), then logged.
  const warnings = new HeldWarnings();
  // Read again on SIGHUP (reload). The TLS files are read too: a bad one rejects the reload, not the restart after it.
  const loadConfig = async () => {
    let raw: unknown = options.config === undefined ? {} : await readConfigFile(options.config);
    if (options.dataDir !== undefined) {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
        throw CommonErrors.METEORZX_CONFIG_INVALID(`${options.config ?? 'config'}: expected a mapping at the top level`, { userError: true });
      }
      raw = { ...raw, dataDir: options.dataDir };
    }
    const parsed = parseAgentConfig(raw, {
      kind: 'agent',
      ...(options.config === undefined ? {} : { source: options.config, baseDir: dirname(options.config) }),
    });
    tlsDigests.set(parsed, await checkTlsFiles(agentTlsSections(parsed), { warn: warnings.warn }));
    return parsed;
  };
  const config = await loadConfig();
  let tlsDigest = tlsDigests.get(config);
  const logger = createLogger({ name: 'agent', level: config.logLevel });
  warnings.logTo(logger);
  const deps = { logger, insecure: options.insecure === true };
  const { runService } = await import('../service-loop.js');
  // SIGHUP (systemctl reload): a config that changes only the reading intakes (files, syslog, serial, mqtt)
  // is applied in place; any other change restarts the agent on the same buffer (docs/agent.md, "Reload").
  await runService({
    config,
    load: loadConfig,
    create: (next) => new Agent(next, deps),
    // systemd Type=notify hears READY=1 only after this: the buffer open and every intake listening.
    start: async (agent) => {
      await agent.start();
    },
    reloadInPlace: async (agent, next) => {
      // The listeners hold the certificates they started with: new file contents need a restart.
      const renewed = tlsDigests.get(next) !== tlsDigest;
      tlsDigest = tlsDigests.get(next);
      return !renewed && (await agent.reload(next)) !== undefined;
    },
    // Its intakes could not be put back: exit 1 for Restart=on-failure rather than run on with them down.
    unrecoverable: (err) => errorCode(err) === 'METEORZX_RELOAD_UNRECOVERABLE',
    onReloadFailed: countReloadFailure,
    logger,
    held,
  });
}
