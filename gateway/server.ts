import type { Logger } from 'pino';
import { readClientTls, tlsServerOptions } from '../common/tls-server.js';
import { hostPort } from '../common/host-port.js';
import { openFileLimit } from '../common/open-file-limit.js';
import { CHAIN_ALLOWANCE_BYTES, DEFAULT_LIMITS, type Limits } from '../protocols/index.js';
import { eventAlert } from './alerts/alert.js';
import { AlertSink } from './alerts/alert-sink.js';
import { VolumeWatch } from './alerts/volume-watch.js';
import type { GatewayConfig } from './config.js';
import { GatewayErrors } from './errors.js';
import type { GatewayMetrics } from './metrics.js';
import type { Ingestor } from './pipeline/ingestor.js';
import type { PipelineAlert } from './pipeline/options.js';
import type { LedgerAnchor, Storage } from './storage/types.js';
import type { RegistryRepair } from './storage/level/registry-repair.js';
import { exposureProblem } from './auth/exposure.js';
import { MqttUsers } from './auth/mqtt-users.js';
import { TokenAuth } from './auth/tokens.js';
import { HttpApi, type BoundHttp } from './http/api.js';
import { MqttIngress } from './mqtt/broker.js';
import { TailClaims } from './alerts/tail-claims.js';
import { ListenFailed, type BoundListener, type MqttListenerSpecs } from './mqtt/listeners.js';
import type { PullService } from './pull/pull-service.js';

/** The pipeline as the server drives it: an Ingestor with a lifecycle. */
export interface RunningPipeline extends Ingestor {
  start(): Promise<void>;
  close(): Promise<void>;
}

export interface PipelineArgs {
  storage: Storage;
  config: GatewayConfig;
  limits: Limits;
  gatewayName: string;
  metrics: GatewayMetrics | undefined;
  logger: Logger;
  /** The gateway's alert sink, for rule and chain-break alerts (called once the event is durable). */
  onAlert: (alert: PipelineAlert) => void;
  /** Accepted events per source per commit, when `alerts.volumeDrop` is on. */
  countAccepted?: (source: string, n: number) => void;
}

export interface GatewayOptions {
  config: GatewayConfig;
  logger: Logger;
  /** Start even when a listener binds a non-loopback address with no auth (DESIGN §6). */
  insecure?: boolean;
  /** Injectable for tests; default: LevelStorage under config.dataDir. */
  storage?: Storage;
  /** Injectable for tests; default: the real pipeline. */
  createPipeline?: (args: PipelineArgs) => RunningPipeline | Promise<RunningPipeline>;
  metrics?: GatewayMetrics;
  /** How long an MQTT publish waits out an overloaded pipeline before its connection is closed (ms). */
  mqttMaxWaitMs?: number;
  /** Most concurrent POST /v1/events; more answer 503 + Retry-After. */
  maxInflightIngests?: number;
  /** Most body bytes those may hold at once, raw and decompressed (default 64 MiB); past it, 503 + Retry-After. */
  maxPendingIngestBytes?: number;
}

export interface GatewayAddresses {
  http: BoundHttp;
  mqtt: BoundListener[];
}

// Config key of each listener, named in every error about it.
/** How often the ledger head is logged when it moved (see logLedgerHead). */
const LEDGER_LOG_MS = 3_600_000;

const MQTT_KEYS: Record<BoundListener['name'], string> = { tcp: 'mqtt.listen', tls: 'mqtt.tls.listen', ws: 'mqtt.ws.listen' };

/** One line naming the port and the config key to change, for the errors operators hit most. */
function listenError(err: unknown, key: string, host: string, port: number): Error {
  const code = err instanceof ListenFailed ? err.errno : (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') {
    return GatewayErrors.METEORZX_PORT_IN_USE(`port ${port} on ${host} is already in use: stop the other process or change ${key} in the config`, {
      userError: true,
      cause: err,
    });
  }
  const why = code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' ? 'no such local address' : (err as Error).message;
  return GatewayErrors.METEORZX_LISTEN_FAILED(`cannot listen on ${host}:${port} (${key}): ${why}`, { userError: true, cause: err });
}

/**
 * The gateway process: storage → pipeline → ingress (MQTT broker, HTTP API).
 * `start()` opens them in that order and `close()` drains in reverse, so
 * nothing is acknowledged that is not durable and nothing durable is lost.
 */
export class Gateway {
  private storage: Storage | undefined;
  private pipeline: RunningPipeline | undefined;
  private mqtt: MqttIngress | undefined;
  private readonly tails = new TailClaims();
  private http: HttpApi | undefined;
  private pulls: PullService | undefined;
  private alerts: AlertSink | undefined;
  private volume: VolumeWatch | undefined;
  private ledgerLog: ReturnType<typeof setInterval> | undefined;
  private ledgerLogged: string | undefined;
  private ready = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly opts: GatewayOptions) {}

  get isReady(): boolean {
    return this.ready;
  }

  async start(): Promise<GatewayAddresses> {
    const { config, logger } = this.opts;
    this.checkExposure();
    // An agent's events arrive with the chain fields it added after checking their size against the same limit.
    const limits: Limits = { ...DEFAULT_LIMITS, ...config.limits, chainAllowanceBytes: CHAIN_ALLOWANCE_BYTES };
    // One sink for every alert of the gateway: pipeline rules and chain checks, pulls, backfill.
    const alerts = new AlertSink({
      webhook: config.alerts.webhook,
      webhookTls: config.alerts.webhookTls === undefined ? undefined : readClientTls(config.alerts.webhookTls),
      metrics: this.opts.metrics,
      logger: logger.child({ component: 'alerts' }),
    });
    this.alerts = alerts;
    this.volume = this.volumeWatch(alerts);
    const volume = this.volume;
    try {
      const repaired = (r: RegistryRepair): void =>
        alerts.raise({ kind: 'registry-repaired', detail: r.detail, key: r.key, quarantinedAs: r.quarantinedAs, at: new Date().toISOString() });
      this.storage = this.opts.storage ?? (await defaultStorage(config.dataDir, logger, repaired));
      await this.storage.open();
      const create = this.opts.createPipeline ?? (await defaultPipelineFactory());
      this.pipeline = await create({
        storage: this.storage,
        config,
        limits,
        gatewayName: config.id,
        metrics: this.opts.metrics,
        logger,
        onAlert: (alert) => alerts.raise(eventAlert(alert)),
        ...(volume === undefined ? {} : { countAccepted: (source: string, n: number) => volume.count(source, n) }),
      });
      await this.pipeline.start();
      volume?.start();

      const mqttAddrs = await this.startMqtt(limits);
      await this.createPulls(limits);
      const httpAddr = await this.startHttp(limits);
      await this.pulls?.start();
      this.ready = true;
      const addresses = { http: httpAddr, mqtt: mqttAddrs };
      logger.info(
        {
          http: `${httpAddr.protocol}://${hostPort(httpAddr.host, httpAddr.port)}`,
          httpPort: httpAddr.port,
          mqtt: Object.fromEntries(mqttAddrs.map((l) => [l.name, hostPort(l.host, l.port)])),
          mqttPort: mqttAddrs.find((l) => l.name === 'tcp')?.port,
          dataDir: config.dataDir,
        },
        'listening',
      );
      this.logLedgerHead();
      this.ledgerLog = setInterval(() => this.logLedgerHead(), LEDGER_LOG_MS).unref();
      return addresses;
    } catch (err) {
      await this.close().catch((closeErr: unknown) => logger.error({ err: closeErr }, 'close after a failed start failed'));
      throw err;
    }
  }

  /**
   * Logs the ledger head (`n:hash`, as `meteorzx verify` prints it) when it
   * moved since the last line: at start, hourly, at stop. Shipped off the
   * host with the rest of the log, these lines are anchors an operator can
   * give `verify --anchor`, to prove later that the ledger up to one of them
   * was neither cut short nor rewritten (docs/operations.md).
   */
  private logLedgerHead(): void {
    let head: LedgerAnchor | undefined;
    try {
      head = this.storage?.ledgerHead?.();
    } catch {
      return; // storage closed meanwhile
    }
    if (head === undefined) return;
    const anchor = `${head.n}:${head.hash}`;
    if (anchor === this.ledgerLogged) return;
    this.ledgerLogged = anchor;
    this.opts.logger.info({ ledgerHead: anchor }, 'ledger head');
  }

  /** The `volume-drop` alert, when `alerts.volumeDrop` is given. */
  private volumeWatch(alerts: AlertSink): VolumeWatch | undefined {
    const { config, logger } = this.opts;
    const drop = config.alerts.volumeDrop;
    if (drop === undefined) return undefined;
    let loggedAt = -Infinity;
    return new VolumeWatch({
      windowMs: drop.window,
      below: drop.below,
      raise: (alert) => alerts.raise(alert),
      onUntracked: (events) => {
        if (Date.now() - loggedAt < 60_000) return;
        loggedAt = Date.now();
        logger.warn({ events }, 'alerts.volumeDrop watches 100,000 sources at most: events of sources beyond them were not watched');
      },
    });
  }

  private checkExposure(): void {
    const { config } = this.opts;
    const checks = [
      { key: 'http.listen', host: config.http.listen.host, authConfigured: config.auth.tokens.length > 0, authKey: 'auth.tokens' },
      { key: 'mqtt.listen', host: config.mqtt.listen.host, authConfigured: config.auth.mqtt.length > 0, authKey: 'auth.mqtt' },
      ...(config.mqtt.tls ? [{ key: 'mqtt.tls.listen', host: config.mqtt.tls.listen.host, authConfigured: config.auth.mqtt.length > 0, authKey: 'auth.mqtt' }] : []),
      ...(config.mqtt.ws ? [{ key: 'mqtt.ws.listen', host: config.mqtt.ws.listen.host, authConfigured: config.auth.mqtt.length > 0, authKey: 'auth.mqtt' }] : []),
    ];
    for (const check of checks) {
      const problem = exposureProblem(check, this.opts.insecure ?? false);
      if (problem !== undefined) throw GatewayErrors.METEORZX_INSECURE_BIND(problem, { userError: true });
    }
  }

  private async startMqtt(limits: Limits): Promise<BoundListener[]> {
    const { config, logger, metrics } = this.opts;
    const specs: MqttListenerSpecs = { tcp: config.mqtt.listen };
    if (config.mqtt.tls) specs.tls = { ...config.mqtt.tls.listen, options: await tlsServerOptions(config.mqtt.tls) };
    if (config.mqtt.ws) specs.ws = { ...config.mqtt.ws.listen, ...(config.mqtt.ws.tls ? { options: await tlsServerOptions(config.mqtt.ws.tls) } : {}) };
    this.mqtt = new MqttIngress({
      ingestor: this.pipeline as RunningPipeline,
      users: new MqttUsers(config.auth.mqtt),
      limits,
      listeners: specs,
      logger: logger.child({ component: 'mqtt' }),
      id: config.id,
      forwardEvents: config.pipeline.transforms.length === 0 && !config.pipeline.rules.some((rule) => rule.drop === true),
      ...(this.opts.mqttMaxWaitMs === undefined ? {} : { maxWaitMs: this.opts.mqttMaxWaitMs }),
      sessionExpiryMs: config.mqtt.sessionExpiry,
      onStatus: (agent, payload) => this.tails.record(agent, payload),
      maxConnections: config.mqtt.maxConnections ?? defaultMaxMqttConnections(),
      ...(metrics === undefined
        ? {}
        : {
            onClientCount: (n: number) => metrics.mqttClients.set(n),
            onSessionExpired: () => metrics.mqttSessionsExpired.inc(),
            onConnectionRefused: () => metrics.mqttConnectionsRefused.inc(),
          }),
    });
    try {
      return await this.mqtt.start();
    } catch (err) {
      if (err instanceof ListenFailed) throw listenError(err, MQTT_KEYS[err.listener], err.host, err.port);
      throw err;
    }
  }

  /** Pull connectors, on-demand pulls and gap backfill (gateway/pull, docs/pull.md). */
  private async createPulls(limits: Limits): Promise<void> {
    const { config, logger, metrics } = this.opts;
    const { PullService } = await import('./pull/pull-service.js');
    const storage = this.storage as Storage;
    const mqtt = this.mqtt as MqttIngress;
    this.pulls = new PullService({
      config,
      ingestor: this.pipeline as RunningPipeline,
      // What agents say they delivered past what is stored is a hole too (a bridge that lost a tail).
      epochs: async () => this.tails.withTails(await storage.agentEpochs()),
      limits,
      command: (agent, command) => mqtt.publishCommand(agent, JSON.stringify(command)),
      online: (agent) => mqtt.agentOnline(agent),
      alerts: this.alerts as AlertSink,
      metrics,
      logger: logger.child({ component: 'pull' }),
    });
  }

  private async startHttp(limits: Limits): Promise<BoundHttp> {
    const { config, logger, metrics } = this.opts;
    this.http = new HttpApi({
      ingestor: this.pipeline as RunningPipeline,
      storage: this.storage as Storage,
      tokens: new TokenAuth(config.auth.tokens),
      limits,
      ...(metrics === undefined
        ? {}
        : { metrics: metrics.registry, onDamagedRead: (damaged) => damaged.forEach((d) => metrics.damagedReads.inc({ kind: d.kind })) }),
      // Not ready while the store cannot write either (its database reopening after a full disk, say):
      // the reopen goes on by itself, so readiness comes back without traffic.
      isReady: () => this.ready && this.storage?.writable?.() !== false,
      maxInflightIngests: this.opts.maxInflightIngests ?? 64,
      ...(this.opts.maxPendingIngestBytes === undefined ? {} : { maxPendingIngestBytes: this.opts.maxPendingIngestBytes }),
      ...(this.pulls === undefined ? {} : { pulls: this.pulls }),
      logger: logger.child({ component: 'http' }),
      headersTimeoutMs: config.http.headersTimeout,
      maxConnections: config.http.maxConnections ?? defaultMaxHttpConnections(),
      ...(metrics === undefined ? {} : { onConnectionRefused: () => metrics.httpConnectionsRefused.inc() }),
      ...(config.http.tls ? { tls: await tlsServerOptions(config.http.tls) } : {}),
    });
    const { host, port } = config.http.listen;
    try {
      return await this.http.start(host, port);
    } catch (err) {
      throw listenError(err, 'http.listen', host, port);
    }
  }

  /**
   * Drains and stops, idempotently: readiness goes false, listeners stop
   * accepting, requests and publishes already inside the pipeline finish and
   * are answered, then the pipeline flushes and storage closes.
   */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.ready = false;
    // Pulls stop first: a run in progress finishes its page while the pipeline still takes it.
    await this.pulls?.close().catch((err: unknown) => this.opts.logger.error({ err }, 'closing pulls failed'));
    const ingress = await Promise.allSettled([this.http?.close(), this.mqtt?.close()]);
    await this.pipeline?.close();
    clearInterval(this.ledgerLog);
    // The last commits' head, once they are durable and before the store closes.
    if (this.pipeline !== undefined) this.logLedgerHead();
    this.volume?.stop();
    // After the pipeline: its last commits raise their alerts; what the webhook still holds goes out now.
    await this.alerts?.close().catch((err: unknown) => this.opts.logger.error({ err }, 'closing alerts failed'));
    await this.storage?.close();
    const failed = ingress.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}

/**
 * Default of `http.maxConnections`: a quarter of the open-file limit, so idle connections never take the
 * descriptors MQTT clients and LevelDB need (256 under `ulimit -n 1024`), and at most 4096 (systemd's
 * LimitNOFILE=65536 leaves the rest to MQTT devices).
 */
function defaultMaxHttpConnections(): number {
  return Math.max(16, Math.min(4096, Math.floor(openFileLimit() / 4)));
}

/** Default of `mqtt.maxConnections`: half of the open-file limit (512 under `ulimit -n 1024`; 32,768 under systemd's 65536). */
function defaultMaxMqttConnections(): number {
  return Math.max(16, Math.floor(openFileLimit() / 2));
}

async function defaultStorage(dataDir: string, logger: Logger, onRegistryRepair: (r: RegistryRepair) => void): Promise<Storage> {
  const { LevelStorage } = await import('./storage/level/index.js');
  return new LevelStorage({ dataDir, logger, onRegistryRepair });
}

async function defaultPipelineFactory(): Promise<(args: PipelineArgs) => RunningPipeline> {
  const { createPipeline } = await import('./pipeline/index.js');
  return (args) => createPipeline(args);
}
