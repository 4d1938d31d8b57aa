import type { Logger } from 'pino';
import type { AgentBuffer } from '../buffer/types.js';
import type { AgentConfig } from '../config.js';
import type { AgentMetrics } from '../metrics.js';
import { FileIntake } from './files/file-intake.js';
import { createIntakeMeter } from './intake-meter.js';
import { EdgeBrokerIntake } from './mqtt/edge-broker.js';
import { SerialIntake } from './serial/serial-intake.js';
import { SyslogIntake } from './syslog/syslog-intake.js';
import type { Intake } from './types.js';

export interface CreateIntakesOptions {
  config: AgentConfig;
  buffer: AgentBuffer;
  logger: Logger;
  metrics?: AgentMetrics;
}

/**
 * Builds every intake the config asks for except HTTP (the Agent builds that
 * one, since it reports its address). Nothing is started here: the Agent
 * starts them after the buffer is open and closes them before it.
 */
export function createIntakes({ config, buffer, logger, metrics }: CreateIntakesOptions): Intake[] {
  const intakes: Intake[] = [];
  const { intake, limits } = config;
  const child = (name: string) => logger.child({ component: 'intake', intake: name });

  if (intake.files.length > 0) {
    intakes.push(
      new FileIntake({
        files: intake.files.map((f) => ({
          path: f.path,
          format: f.format,
          startAt: f.startAt,
          type: f.type,
          maxLineBytes: f.maxLineBytes ?? limits.maxEventBytes,
        })),
        buffer,
        limits,
        logger: child('files'),
        meter: createIntakeMeter(metrics, 'files'),
      }),
    );
  }

  if (intake.syslog !== undefined) {
    const { listen, maxMessageBytes, maxConnections, type } = intake.syslog;
    intakes.push(
      new SyslogIntake({
        listen: Array.isArray(listen) ? listen : [listen],
        buffer,
        limits,
        maxMessageBytes,
        maxConnections,
        ...(type === undefined ? {} : { type }),
        logger: child('syslog'),
        meter: createIntakeMeter(metrics, 'syslog'),
      }),
    );
  }

  for (const port of intake.serial) {
    intakes.push(
      new SerialIntake({
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
        logger: logger.child({ component: 'intake', intake: 'serial', path: port.path }),
      }),
    );
  }

  if (intake.mqtt !== undefined) {
    intakes.push(
      new EdgeBrokerIntake({
        listen: intake.mqtt.listen,
        users: intake.mqtt.users,
        limits,
        buffer,
        id: config.id,
        ...(metrics === undefined ? {} : { metrics }),
        logger: child('mqtt'),
      }),
    );
  }

  return intakes;
}
