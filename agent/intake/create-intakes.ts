import type { Logger } from 'pino';
import { tlsServerOptions } from '../../common/tls-server.js';
import type { AgentBuffer } from '../buffer/types.js';
import type { AgentConfig } from '../config.js';
import type { AgentMetrics } from '../metrics.js';
import { createIntakeMeter } from './intake-meter.js';
import type { Intake } from './types.js';

export interface CreateIntakesOptions {
  config: AgentConfig;
  buffer: AgentBuffer;
  logger: Logger;
  metrics?: AgentMetrics;
}

/**
 * One intake the config asks for, not built yet. `key` names it across
 * reloads (`files`, `syslog`, `serial:<path>`, `mqtt`) and `spec` is the
 * config it is built from: a reload restarts an intake only when its spec
 * changed (see IntakeSet).
 */
export interface IntakePlan {
  readonly key: string;
  readonly spec: unknown;
  create(): Promise<Intake>;
}

/**
 * What to build for every intake the config asks for except HTTP (the Agent
 * builds that one, since it reports its address). Each module is loaded
 * with `import()` only when its intake is configured: a files-only agent
 * never loads aedes, serialport or the syslog parsers.
 */
export function planIntakes({ config, buffer, logger, metrics }: CreateIntakesOptions): IntakePlan[] {
  const plans: IntakePlan[] = [];
  const { intake, limits } = config;
  const child = (name: string) => logger.child({ component: 'intake', intake: name });

  if (intake.files.length > 0) {
    plans.push({
      key: 'files',
      spec: { files: intake.files, maxOpenFiles: intake.maxOpenFiles },
      async create() {
        const { FileIntake } = await import('./files/file-intake.js');
        return new FileIntake({
          files: intake.files.map((f) => ({
            path: f.path,
            format: f.format,
            startAt: f.startAt,
            type: f.type,
            maxLineBytes: f.maxLineBytes ?? limits.maxEventBytes,
            closeInactiveMs: f.closeInactive,
            rotateWaitMs: f.rotateWait,
          })),
          ...(intake.maxOpenFiles === undefined ? {} : { maxOpenFiles: intake.maxOpenFiles }),
          ...(metrics === undefined ? {} : { metrics }),
          buffer,
          limits,
          logger: child('files'),
          meter: createIntakeMeter(metrics, 'files', ['read', 'open', 'append']),
        });
      },
    });
  }

  const syslog = intake.syslog;
  if (syslog !== undefined) {
    plans.push({
      key: 'syslog',
      spec: syslog,
      async create() {
        const { SyslogIntake } = await import('./syslog/syslog-intake.js');
        const { listen, maxMessageBytes, maxConnections, type, tls } = syslog;
        return new SyslogIntake({
          ...(tls === undefined ? {} : { tls: await tlsServerOptions(tls) }),
          listen: Array.isArray(listen) ? listen : [listen],
          buffer,
          limits,
          maxMessageBytes,
          maxConnections,
          ...(type === undefined ? {} : { type }),
          logger: child('syslog'),
          meter: createIntakeMeter(metrics, 'syslog', ['append']),
        });
      },
    });
  }

  for (const port of intake.serial) {
    plans.push({
      key: `serial:${port.path}`,
      spec: port,
      async create() {
        const { SerialIntake } = await import('./serial/serial-intake.js');
        return new SerialIntake({
          path: port.path,
          baudRate: port.baudRate,
          delimiter: port.delimiter,
          format: port.format,
          type: port.type,
          ...(port.source === undefined ? {} : { source: port.source }),
          maxLineBytes: port.maxLineBytes ?? limits.maxEventBytes,
          limits,
          buffer,
          ...(metrics === undefined ? {} : { metrics }),
          logger: child('serial'),
        });
      },
    });
  }

  const mqtt = intake.mqtt;
  if (mqtt !== undefined) {
    plans.push({
      key: 'mqtt',
      spec: mqtt,
      async create() {
        const { EdgeBrokerIntake } = await import('./mqtt/edge-broker.js');
        return new EdgeBrokerIntake({
          listen: mqtt.listen,
          maxConnections: mqtt.maxConnections,
          sessionExpiryMs: mqtt.sessionExpiry,
          ...(mqtt.tls === undefined ? {} : { tls: await tlsServerOptions(mqtt.tls) }),
          users: mqtt.users,
          limits,
          buffer,
          id: config.id,
          ...(metrics === undefined ? {} : { metrics }),
          logger: child('mqtt'),
        });
      },
    });
  }

  return plans;
}

/** Builds (does not start) every intake of `planIntakes`. */
export async function createIntakes(options: CreateIntakesOptions): Promise<Intake[]> {
  return Promise.all(planIntakes(options).map((plan) => plan.create()));
}
