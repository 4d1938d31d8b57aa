import { dirname } from 'node:path';
import type { Command } from 'commander';
import { hostPort } from '../../common/host-port.js';
import { HeldWarnings, withHeldSignals, type HeldSignals } from '../held-signals.js';

interface GatewayOptions {
  config?: string;
  dataDir?: string;
  insecure?: boolean;
}

export function register(program: Command): void {
  program
    .command('gateway')
    .description('run the gateway: MQTT broker and HTTP API in front of the pipeline and storage')
    .option('-c, --config <file>', 'gateway config (YAML or JSON); default: built-in defaults')
    .option('-d, --data-dir <dir>', 'where the gateway keeps its data (overrides dataDir in the config)')
    .option('--insecure', 'allow a non-loopback listener with no auth configured', false)
    // Signals held before anything slow: a stop or reload in the first moments would otherwise kill the process.
    .action((options: GatewayOptions) => withHeldSignals((held) => runGateway(options, held)));
}

async function runGateway(options: GatewayOptions, held: HeldSignals): Promise<void> {
  const [{ readConfigFile }, { parseGatewayConfig, gatewayTlsSections }, { createLogger }, { Gateway }, { createGatewayMetrics, countReloadFailure }, { checkTlsFiles }] = await Promise.all([
    import('../../common/config/load.js'),
    import('../../gateway/config.js'),
    import('../../common/logger.js'),
    import('../../gateway/server.js'),
    import('../../gateway/metrics.js'),
    import('../../common/tls-server.js'),
  ]);
  // An expired certificate is a warning: held until the logger exists (it needs the config), then logged.
  const warnings = new HeldWarnings();
  // Read again on SIGHUP (reload). The TLS files are read too: a bad one rejects the reload, not the restart after it.
  const loadConfig = async () => {
    const raw = options.config === undefined ? {} : await readConfigFile(options.config);
    // Only a mapping takes --data-dir; anything else goes to the schema as it is, which names it (a string
    // spread into an object became one "unknown key" per character).
    const isMapping = typeof raw === 'object' && raw !== null && !Array.isArray(raw);
    const withDir = options.dataDir === undefined || !isMapping ? raw : { ...raw, dataDir: options.dataDir };
    const parsed = parseGatewayConfig(withDir, {
      ...(options.config === undefined ? {} : { source: options.config, baseDir: dirname(options.config) }),
    });
    await checkTlsFiles(gatewayTlsSections(parsed), { warn: warnings.warn });
    return parsed;
  };
  const config = await loadConfig();
  const logger = createLogger({ name: 'gateway', level: config.logLevel });
  warnings.logTo(logger);
  // The ready line is for whoever started us. One that read it and left (`meteorzx gateway | head -1`) closed
  // the pipe, and the line written again after a reload failed with EPIPE, an unhandled error that killed the gateway.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') logger.warn({ err }, 'cannot write the ready line to stdout');
  });
  const { runService } = await import('../service-loop.js');
  // SIGHUP (systemctl reload): a valid new config replaces the running gateway (drained, then started
  // anew on the same store); an invalid one is logged and the gateway runs on unchanged.
  await runService({
    config,
    load: loadConfig,
    create: (next) => new Gateway({ config: next, logger, insecure: options.insecure === true, metrics: createGatewayMetrics() }),
    // The ready line on stdout, whatever the log level; systemd hears READY=1 after it (storage open, listeners bound).
    start: async (gateway) => {
      const addrs = await gateway.start();
      const mqtt = addrs.mqtt.map((l) => `${l.name === 'tcp' ? 'mqtt' : l.name === 'tls' ? 'mqtts' : l.secure === true ? 'wss' : 'ws'}://${hostPort(l.host, l.port)}`);
      process.stdout.write(`meteorzx gateway ready: ${addrs.http.protocol}://${hostPort(addrs.http.host, addrs.http.port)} ${mqtt.join(' ')}\n`);
    },
    onReloadFailed: () => countReloadFailure(),
    logger,
    held,
  });
}
