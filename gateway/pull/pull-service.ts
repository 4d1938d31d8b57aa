import type { Logger } from 'pino';
import type { RaiseAlert } from '../alerts/alert-sink.js';
import { GapWatch } from '../alerts/gap-watch.js';
import type { EpochStatus, Limits, PullCommand, PullRequest } from '../../protocols/index.js';
import type { GatewayConfig } from '../config.js';
import { GatewayErrors } from '../errors.js';
import type { GatewayMetrics } from '../metrics.js';
import type { Ingestor } from '../pipeline/ingestor.js';
import { Backfill } from './backfill.js';
import { PullConnector, type PullResult, type PullStatus } from './connector.js';
import { PullStore, type LostRange } from './pull-store.js';
import { PullScheduler, type Timers } from './scheduler.js';
import { readClientTls } from '../../common/tls-server.js';

export interface PullServiceOptions {
  config: Pick<GatewayConfig, 'dataDir' | 'pullFrom' | 'alerts' | 'backfill'>;
  ingestor: Ingestor;
  /** Every (agent, epoch) of the registry, with its open holes. */
  epochs: () => Promise<EpochStatus[]>;
  limits: Limits;
  /** Publishes on audit/<agent>/cmd through the gateway's broker. */
  command?: (agent: string, command: PullCommand) => Promise<void>;
  /** Whether the agent is connected to the gateway's broker (its retained status says online). */
  online?: (agent: string) => Promise<boolean>;
  /** The gateway's alert sink (log, metric, webhook). */
  alerts: RaiseAlert;
  metrics?: GatewayMetrics | undefined;
  logger: Logger;
  timers?: Timers;
}

/** The `pulls` section added to `GET /v1/sources`. */
export interface PullsSection {
  connectors: PullStatus[];
  lost: LostRange[];
}

/**
 * Everything the gateway pulls (issue 5): the `pullFrom` connectors and
 * their schedule, on-demand pulls (`POST /v1/pull`) and gap backfill.
 * start() after the pipeline is up, close() before it drains.
 */
export class PullService {
  private readonly store: PullStore;
  private readonly connectors: PullConnector[];
  private readonly scheduler: PullScheduler;
  private readonly backfill: Backfill;
  private readonly gapWatch: GapWatch | undefined;
  private backfillTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: PullServiceOptions) {
    const { config, logger, metrics } = options;
    this.store = new PullStore(config.dataDir);
    this.gapWatch = config.alerts.gaps ? new GapWatch({ graceMs: config.backfill.grace, raise: (alert) => options.alerts.raise(alert) }) : undefined;
    this.connectors = config.pullFrom.map((p) => {
      const { ca, cert, key } = readClientTls(p);
      return this.connector(p.url, p.token, ca, p.retries, true, p.timeout, cert === undefined || key === undefined ? undefined : { cert, key });
    });
    this.scheduler = new PullScheduler(
      config.pullFrom.map((p, i) => ({ connector: this.connectors[i] as PullConnector, every: p.every })),
      options.timers,
    );
    this.backfill = new Backfill({
      epochs: options.epochs,
      store: this.store,
      ingestor: options.ingestor,
      connectors: () => this.connectors,
      ...(options.command === undefined ? {} : { command: options.command }),
      ...(options.online === undefined ? {} : { online: options.online }),
      graceMs: config.backfill.grace,
      tries: config.backfill.tries,
      alerter: options.alerts,
      repair: config.backfill.enabled,
      gapWatch: this.gapWatch,
      metrics,
      logger: logger.child({ component: 'backfill' }),
    });
  }

  async start(): Promise<void> {
    await this.store.open();
    this.gapWatch?.restore(await this.store.gapScanAt(), Date.now());
    for (const c of this.connectors) await c.init();
    this.scheduler.start();
    const { backfill, alerts } = this.options.config;
    // The same scan repairs holes and raises seq-gap alerts: it runs when either is on.
    if (backfill.enabled || alerts.gaps) {
      this.backfillTimer = setInterval(() => {
        this.backfill.scan().catch((err: unknown) => this.options.logger.warn({ err }, 'backfill scan failed'));
      }, backfill.every);
      this.backfillTimer.unref();
    }
  }

  /**
   * `POST /v1/pull`: a configured URL reruns its connector (or pulls the
   * given range); any other URL is pulled once, with the request's token and CA.
   */
  async pull(request: PullRequest): Promise<PullResult> {
    const configured = this.connectors.find((c) => sameUrl(c.url, request.url));
    const ranged = request.after !== undefined || request.until !== undefined;
    if (configured !== undefined && (request.ca !== undefined || request.token !== undefined)) {
      // Its connector is the one lock on that agent, so it pulls with the trust and token its config gives it.
      this.options.logger.info({ url: request.url }, 'POST /v1/pull: token and ca ignored for a pullFrom url (its config applies)');
    }
    if (configured !== undefined && !ranged) {
      const result = await configured.run({ manual: true });
      if (result === undefined) throw GatewayErrors.METEORZX_PULL_FAILED(`pull from ${request.url} failed: ${configured.status().lastError ?? ''}`);
      return result;
    }
    const connector = configured ?? this.connector(request.url, request.token, request.ca, { tries: 0, delay: 0 }, false);
    try {
      return await connector.pullRange({ after: request.after ?? 0, ...(request.until === undefined ? {} : { until: request.until }) });
    } catch (err) {
      throw GatewayErrors.METEORZX_PULL_FAILED(`pull from ${request.url} failed: ${(err as Error).message}`, { cause: err });
    } finally {
      if (connector !== configured) await connector.close();
    }
  }

  /** The `pulls` section of `GET /v1/sources`; with `agent`, only what concerns that agent. */
  async section(agent?: string): Promise<PullsSection> {
    const connectors = this.connectors.map((c) => c.status());
    const lost = await this.store.lost(agent);
    if (agent === undefined) return { connectors, lost };
    return { connectors: connectors.filter((c) => c.agent === agent), lost };
  }

  /** One backfill pass now (tests, and operators via future tooling). */
  scanGaps(): Promise<void> {
    return this.backfill.scan();
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.scheduler.close();
      clearInterval(this.backfillTimer);
      // The scan in progress looks at no further hole, and its request in flight ends with the connectors':
      // waited for first, an agent that never answers held the stop for its request timeout.
      this.backfill.stop();
      await Promise.all(this.connectors.map((c) => c.close()));
      await this.backfill.idle();
      await this.store.close();
    })();
    return this.closing;
  }

  private connector(
    url: string,
    token: string | undefined,
    ca: string | Buffer | undefined,
    retries: { tries: number; delay: number },
    durable: boolean,
    requestTimeoutMs?: number,
    clientCert?: { cert: Buffer; key: Buffer },
  ): PullConnector {
    return new PullConnector({
      url,
      ...(clientCert === undefined ? {} : { clientCert }),
      ...(requestTimeoutMs === undefined ? {} : { requestTimeoutMs }),
      token,
      ca,
      retries,
      limits: this.options.limits,
      ingestor: this.options.ingestor,
      ...(durable ? { store: this.store } : {}),
      alerter: this.options.alerts,
      metrics: this.options.metrics,
      // The service's logger already says component "pull"; a key bound twice is written twice in a pino line.
      logger: this.options.logger.child({ url }),
    });
  }
}

function sameUrl(a: string, b: string): boolean {
  return a.replace(/\/+$/, '') === b.replace(/\/+$/, '');
}
