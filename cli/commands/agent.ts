import { dirname } from 'node:path';
import type { Command } from 'commander';
import { CommonErrors } from '../../common/errors.js';

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
    .option('--insecure', 'allow the pull listener on a non-loopback address without pull.token')
    .action(async (options: AgentCliOptions) => {
      await runAgent(options);
    });
}

/** Runs until SIGTERM or SIGINT, then drains and closes (a second signal exits at once). */
async function runAgent(options: AgentCliOptions): Promise<void> {
  // Loaded here, not at the top: other commands must not pay for them, and the agent never loads the gateway.
  const [{ readConfigFile }, { parseAgentConfig }, { createLogger }, { Agent }] = await Promise.all([
    import('../../common/config/load.js'),
    import('../../agent/config.js'),
    import('../../common/logger.js'),
    import('../../agent/agent.js'),
  ]);
  // Read again on SIGHUP (reload).
  const loadConfig = async () => {
    let raw: unknown = options.config === undefined ? {} : await readConfigFile(options.config);
    if (options.dataDir !== undefined) {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
        throw CommonErrors.METEORZX_CONFIG_INVALID(`${options.config ?? 'config'}: expected a mapping at the top level`, { userError: true });
      }
      raw = { ...raw, dataDir: options.dataDir };
    }
    return parseAgentConfig(raw, {
      kind: 'agent',
      ...(options.config === undefined ? {} : { source: options.config, baseDir: dirname(options.config) }),
    });
  };
  const config = await loadConfig();
  const logger = createLogger({ name: 'agent', level: config.logLevel });
  const deps = { logger, insecure: options.insecure === true };
  let agent = new Agent(config, deps);

  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      // A second signal means "now": the buffer's acked data is durable anyway, only in-flight sends are resent.
      process.once('SIGTERM', () => process.exit(1));
      process.once('SIGINT', () => process.exit(1));
      resolve(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await agent.start();
  // systemd Type=notify: ready only now, with the buffer open and every intake listening.
  const { notifySystemd } = await import('../../common/systemd-notify.js');
  const notify = { warn: (message: string) => logger.warn(message) };
  await notifySystemd('READY=1', notify);

  // SIGHUP (systemctl reload): a valid new config replaces the running agent
  // (drained like on SIGTERM, then started anew on the same buffer); an
  // invalid one is logged and the agent runs on unchanged.
  let reloading = Promise.resolve();
  const reloadFailed = new Promise<never>((_resolve, reject) => {
    process.on('SIGHUP', () => {
      reloading = reloading.then(async () => {
        await notifySystemd('RELOADING=1', notify);
        let next: Awaited<ReturnType<typeof loadConfig>>;
        try {
          next = await loadConfig();
        } catch (err) {
          logger.error({ err }, 'reload: config rejected, running on with the current one');
          await notifySystemd('READY=1', notify);
          return;
        }
        logger.info('reload: restarting with the new config');
        await agent.close();
        agent = new Agent(next, deps);
        await agent.start();
        await notifySystemd('READY=1', notify);
      }).catch(reject);
    });
  });
  const signal = await Promise.race([stopped, reloadFailed]);
  logger.info({ signal }, 'stopping');
  await reloading;
  await agent.close();
}
