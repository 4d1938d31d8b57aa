import { dirname } from 'node:path';
import type { Command } from 'commander';

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
    .action(async (options: GatewayOptions) => {
      await runGateway(options);
    });
}

async function runGateway(options: GatewayOptions): Promise<void> {
  const [{ readConfigFile }, { parseGatewayConfig }, { createLogger }, { Gateway }, { createGatewayMetrics }] = await Promise.all([
    import('../../common/config/load.js'),
    import('../../gateway/config.js'),
    import('../../common/logger.js'),
    import('../../gateway/server.js'),
    import('../../gateway/metrics.js'),
  ]);
  // Read again on SIGHUP (reload).
  const loadConfig = async () => {
    const raw = options.config === undefined ? {} : await readConfigFile(options.config);
    const withDir = options.dataDir === undefined ? raw : { ...(raw as Record<string, unknown>), dataDir: options.dataDir };
    return parseGatewayConfig(withDir, {
      ...(options.config === undefined ? {} : { source: options.config, baseDir: dirname(options.config) }),
    });
  };
  const config = await loadConfig();
  const logger = createLogger({ name: 'gateway', level: config.logLevel });
  let gateway = new Gateway({ config, logger, insecure: options.insecure === true, metrics: createGatewayMetrics() });
  let reloading = Promise.resolve();

  // Registered before start so a signal during start still drains what was opened.
  const stopped = new Promise<void>((resolve, reject) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals += 1;
      if (signals > 1) {
        // A second signal: the operator will not wait for the drain.
        logger.warn({ signal }, 'second signal, exiting without draining');
        process.exit(130);
      }
      logger.info({ signal }, 'draining');
      // After a reload in progress: it may be replacing the gateway being closed.
      reloading.then(() => gateway.close()).then(() => {
        logger.info('stopped');
        resolve();
      }, reject);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });

  const announce = (addrs: Awaited<ReturnType<typeof gateway.start>>) => {
    const mqtt = addrs.mqtt.map((l) => `${l.name === 'tcp' ? 'mqtt' : l.name === 'tls' ? 'mqtts' : 'ws'}://${l.host}:${l.port}`);
    process.stdout.write(`meteorzx gateway ready: ${addrs.http.protocol}://${addrs.http.host}:${addrs.http.port} ${mqtt.join(' ')}\n`);
  };
  announce(await gateway.start());
  // systemd Type=notify: ready only now, with storage open and every listener bound.
  const { notifySystemd } = await import('../../common/systemd-notify.js');
  const notify = { warn: (message: string) => logger.warn(message) };
  await notifySystemd('READY=1', notify);

  // SIGHUP (systemctl reload): a valid new config replaces the running gateway
  // (drained, then started anew on the same store); an invalid one is logged
  // and the gateway runs on unchanged. A failed restart ends the process.
  const reloadFailed = new Promise<never>((_resolve, reject) => {
    process.on('SIGHUP', () => {
      reloading = reloading
        .then(async () => {
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
          await gateway.close();
          gateway = new Gateway({ config: next, logger, insecure: options.insecure === true, metrics: createGatewayMetrics() });
          announce(await gateway.start());
          await notifySystemd('READY=1', notify);
        })
        .catch(reject);
    });
  });
  await Promise.race([stopped, reloadFailed]);
}
