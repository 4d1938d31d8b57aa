import type { Logger } from 'pino';
import { tlsServerOptions } from '../common/tls-server.js';
import { hostPort } from '../common/host-port.js';
import { CHAIN_ALLOWANCE_BYTES, type AgentStatus, type Limits } from '../protocols/index.js';
import type { BufferOptions } from './buffer/options.js';
import type { AgentBuffer } from './buffer/types.js';
import type { AgentConfig } from './config.js';
import { AgentErrors } from './errors.js';
import type { ListenAddress } from './http-helpers.js';
import { HttpIntake } from './intake/http.js';
import type { IntakeChanges, IntakeSet } from './intake/intake-set.js';
import type { Intake } from './intake/types.js';
import { AgentMetrics } from './metrics.js';
import type { CommandRunner } from './push/commands.js';
import { createTransport } from './push/create-transport.js';
import { Sender } from './push/sender.js';
import { StatusServer } from './status/server.js';

export type BufferFactory = (options: BufferOptions) => AgentBuffer | Promise<AgentBuffer>;

export interface AgentDeps {
  logger: Logger;
  /** Builds the (unopened) buffer; default: the LevelDB buffer. */
  createBuffer?: BufferFactory;
  /** Allow the pull listener on a non-loopback address without a token. */
  insecure?: boolean;
  /** Injectable for tests: jitter source and clock of the push sender. */
  random?: () => number;
  now?: () => number;
}

export interface AgentAddresses {
  intake: ListenAddress | undefined;
  pull: ListenAddress;
}

/**
 * One running agent: the durable buffer, the intakes feeding it, the push
 * sender draining it and the status/pull server. `start()` brings them up in
 * dependency order (buffer first: everything else reads or writes it);
 * `close()` takes them down in reverse so nothing acknowledged is lost:
 * intakes stop (appends in progress finish and are answered), the sender
 * finishes its in-flight sends and records their acks, then the buffer
 * finishes its commit and closes.
 */
export class Agent {
  private buffer: AgentBuffer | undefined;
  private sender: Sender | undefined;
  private commands: CommandRunner | undefined;
  private statusServer: StatusServer | undefined;
  private readonly intakes: Intake[] = [];
  private httpIntake: HttpIntake | undefined;
  /** Files, syslog, serial, edge broker: the intakes a reload may change in place. */
  private readers: IntakeSet | undefined;
  private closed: Promise<void> | undefined;
  readonly metrics: AgentMetrics;

  constructor(
    /** Replaced by an in-place reload. */
    public config: AgentConfig,
    private readonly deps: AgentDeps,
  ) {
    this.metrics = new AgentMetrics({ buffer: () => this.requireBuffer().state(), push: () => this.status().push.state });
  }

  async start(): Promise<AgentAddresses> {
    const { config, deps } = this;
    const log = deps.logger;
    try {
      const createBuffer = deps.createBuffer ?? (await defaultBufferFactory());
      this.buffer = await createBuffer(this.bufferOptions());
      await this.buffer.open();
      const state = this.buffer.state();
      if (state.recovered !== undefined) log.warn({ recovered: state.recovered, epoch: state.epoch }, 'buffer was recovered');
      log.info({ id: state.id, epoch: state.epoch, head: state.head, delivered: state.delivered }, 'buffer open');

      this.statusServer = new StatusServer({
        listen: config.pull.listen,
        ...(config.pull.token === undefined ? {} : { token: config.pull.token }),
        ...(config.pull.tls === undefined ? {} : { tls: await tlsServerOptions(config.pull.tls) }),
        insecure: deps.insecure ?? false,
        status: () => this.status(),
        metrics: this.metrics,
        buffer: this.buffer,
        maxPullEvents: config.limits.maxBatchEvents * 10,
        maxConnections: config.pull.maxConnections,
        logger: log,
      });
      await this.statusServer.start();

      const transport = await createTransport(config, state.epoch);
      if (transport !== undefined) {
        this.sender = new Sender(this.buffer, transport, {
          maxEvents: config.push.batch.maxEvents,
          maxWaitMs: config.push.batch.maxWaitMs,
          // Half the body limit: the gateway's limit is usually ours, and JSON framing adds a little.
          maxBytes: Math.floor(config.limits.maxBodyBytes / 2),
          backoff: config.push.backoff,
          breaker: config.push.breaker,
          logger: log.child({ component: 'push', sink: transport.name }),
          metrics: this.metrics,
          ...(deps.random ? { random: deps.random } : {}),
          ...(deps.now ? { now: deps.now } : {}),
        });
        await this.sender.start();
        if (transport.onCommand !== undefined) {
          // On-demand pull over the push link (MQTT): re-push a range the gateway asks for.
          const { CommandRunner } = await import('./push/commands.js');
          this.commands = new CommandRunner({
            buffer: this.buffer,
            transport,
            batchEvents: config.push.batch.maxEvents,
            batchBytes: Math.floor(config.limits.maxBodyBytes / 2),
            logger: log.child({ component: 'commands' }),
          });
          this.commands.attach();
        }
      }

      if (config.intake.http !== undefined) {
        this.httpIntake = new HttpIntake({
          listen: config.intake.http.listen,
          limits: { ...config.limits, maxBodyBytes: config.intake.http.maxBodyBytes } satisfies Limits,
          buffer: this.buffer,
          metrics: this.metrics,
          logger: log.child({ component: 'intake', intake: 'http' }),
          maxConnections: config.intake.http.maxConnections,
          headersTimeoutMs: config.intake.http.headersTimeout,
          ...(config.intake.http.token === undefined ? {} : { token: config.intake.http.token }),
          ...(config.intake.http.tls === undefined ? {} : { tls: await tlsServerOptions(config.intake.http.tls) }),
          insecure: deps.insecure ?? false,
        });
        this.intakes.push(this.httpIntake);
      }
      for (const intake of this.intakes) await intake.start();
      await this.applyReaders(config);

      const addresses: AgentAddresses = { intake: this.httpIntake?.address(), pull: this.statusServer.address() };
      log.info(
        {
          intake: addresses.intake && hostPort(addresses.intake.host, addresses.intake.port),
          pull: hostPort(addresses.pull.host, addresses.pull.port),
          intakes: [...this.intakes, ...(this.readers?.intakes() ?? [])].map((i) => i.describe()),
          push: transport?.name ?? 'none',
          epoch: state.epoch,
        },
        'listening',
      );
      return addresses;
    } catch (err) {
      await this.close().catch((closeErr: unknown) => log.error({ err: closeErr }, 'cleanup after a failed start failed'));
      throw err;
    }
  }

  status(): AgentStatus {
    const state = this.requireBuffer().state();
    const push = this.sender?.status() ?? { state: 'disabled' as const, lastError: null };
    return {
      id: state.id,
      epoch: state.epoch,
      head: state.head,
      delivered: state.delivered,
      oldest: state.oldest,
      bufferedEvents: state.bufferedEvents,
      bufferedBytes: state.bufferedBytes,
      push,
      ...(state.recovered === undefined ? {} : { recovered: state.recovered }),
      ...(state.writeError === undefined ? {} : { writeError: state.writeError }),
    };
  }

  /** Graceful stop (SIGTERM): intakes, then the sender, then the status server, then the buffer. Idempotent. */
  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    const log = this.deps.logger;
    const step = async (what: string, run: () => Promise<void>) => {
      try {
        await run();
      } catch (err) {
        log.error({ err }, `closing ${what} failed`);
      }
    };
    for (const intake of this.intakes) await step(`intake ${intake.name}`, () => intake.close());
    await this.readers?.close((intake, err) => log.error({ err }, `closing intake ${intake.name} failed`));
    this.commands?.close();
    if (this.sender) await step('push sender', () => (this.sender as Sender).close());
    if (this.statusServer) await step('status server', () => (this.statusServer as StatusServer).close());
    if (this.buffer) await step('buffer', () => (this.buffer as AgentBuffer).close());
    log.info('agent stopped');
  }

  /**
   * SIGHUP: applies `next` in place when only the reading intakes differ
   * (files, syslog, serial, mqtt): unchanged ones keep running, changed ones
   * are restarted (see IntakeSet). Undefined, with nothing touched, when
   * anything else differs: the caller then restarts the whole agent. Throws
   * when a new intake cannot start, after putting the current ones back; and
   * METEORZX_RELOAD_UNRECOVERABLE when they cannot be put back either (their
   * port taken meanwhile): the agent then runs with those intakes down, which
   * the caller must not let pass unseen (the CLI exits 1, for Restart=).
   */
  async reload(next: AgentConfig): Promise<IntakeChanges | undefined> {
    const { onlyReadingIntakesDiffer } = await import('./intake/intake-set.js');
    if (this.closed !== undefined || !onlyReadingIntakesDiffer(this.config, next)) return undefined;
    let changes: IntakeChanges;
    try {
      changes = await this.applyReaders(next);
    } catch (err) {
      // As nginx: a new intake that cannot start (its port taken) leaves the agent on its current config.
      // The ones the attempt stopped or started are put back as they were; the caller logs why.
      try {
        await this.applyReaders(this.config);
      } catch (back) {
        throw AgentErrors.METEORZX_RELOAD_UNRECOVERABLE(
          `${(err as Error).message}; and the current intakes cannot start again: ${(back as Error).message}`,
          { cause: back },
        );
      }
      throw err;
    }
    this.config = next;
    this.deps.logger.info({ ...changes, intakes: [...this.intakes, ...(this.readers?.intakes() ?? [])].map((i) => i.describe()) }, 'intakes reloaded');
    return changes;
  }

  private async applyReaders(config: AgentConfig): Promise<IntakeChanges> {
    const { files, syslog, serial, mqtt } = config.intake;
    if (this.readers === undefined && files.length === 0 && serial.length === 0 && syslog === undefined && mqtt === undefined) {
      return { started: [], stopped: [], kept: [] };
    }
    // Loaded only when configured: an HTTP-only agent never pays for them (nor for aedes or serialport).
    const [{ planIntakes }, { IntakeSet }] = await Promise.all([import('./intake/create-intakes.js'), import('./intake/intake-set.js')]);
    this.readers ??= new IntakeSet({ metrics: this.metrics });
    return this.readers.apply(planIntakes({ config, buffer: this.requireBuffer(), logger: this.deps.logger, metrics: this.metrics }));
  }

  private requireBuffer(): AgentBuffer {
    if (this.buffer === undefined) throw new Error('agent not started');
    return this.buffer;
  }

  private bufferOptions(): BufferOptions {
    const { config } = this;
    return {
      dataDir: config.dataDir,
      id: config.id,
      maxBytes: config.buffer.maxBytes,
      whenFull: config.buffer.whenFull,
      retainMs: config.buffer.retain,
      // The config's `retain` bounds undelivered events too: older ones are dropped with a gap event.
      maxUndeliveredAgeMs: config.buffer.retain,
      durability: config.buffer.durability,
      // What the gateway takes (with the same limits): an event the agent stored must not be refused on push.
      maxLineBytes: config.limits.maxEventBytes + CHAIN_ALLOWANCE_BYTES,
      logger: this.deps.logger.child({ component: 'buffer' }),
    };
  }
}

async function defaultBufferFactory(): Promise<BufferFactory> {
  const { LevelBuffer } = await import('./buffer/index.js');
  return (options) => new LevelBuffer(options);
}
