import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainEvent, newId, type AuditEvent } from '../../protocols/index.js';
import { removeDir, tempDir, waitFor } from './agent-harness.js';
import { ingest, runCli, startGateway, type RunningGateway } from './gateway-harness.js';
import { webhookReceiver, type Receiver } from './pull-helpers.js';
import { makePki, type TestPki } from './test-pki.js';

/**
 * One alert sink for the whole gateway (docs/config.md, `alerts`): what
 * the pipeline raises (rule alerts, chain breaks) reaches `alerts.webhook`
 * as the pull side's alerts do — a JSON array of alerts per POST.
 */


const alertsOf = (hook: Receiver, kind: string, match: Record<string, unknown> = {}): Record<string, unknown>[] =>
  hook.bodies.filter((a) => a.kind === kind && Object.entries(match).every(([k, v]) => a[k] === v));

describe('pipeline alerts reach the webhook', () => {
  let dir: string;
  let gateway: RunningGateway;
  let hook: Receiver;

  beforeAll(async () => {
    dir = await tempDir('gateway-alerts-');
    hook = await webhookReceiver();
    gateway = await startGateway({
      dir,
      config: {
        alerts: { webhook: hook.url },
        pipeline: { rules: [{ name: 'root-login', if: 'type == "auth.login" && actor == "root"', alert: true }] },
      },
    });
  });

  afterAll(async () => {
    await gateway?.stop();
    await hook?.close();
    await removeDir(dir);
  });

  it('a rule with alert: true is POSTed with the rule, the event id, source, type and time', async () => {
    const answer = await ingest(gateway.httpUrl, [
      { id: 'ev-root-1', type: 'auth.login', actor: 'root', source: 'host-a' },
      { id: 'ev-alice-1', type: 'auth.login', actor: 'alice', source: 'host-a' },
    ]);
    expect(answer.accepted).toBe(2);
    const [alert] = await waitFor(() => (alertsOf(hook, 'rule').length > 0 ? alertsOf(hook, 'rule') : undefined), 'rule alert');
    expect(alert).toEqual({ kind: 'rule', rule: 'root-login', id: 'ev-root-1', source: 'host-a', type: 'auth.login', at: expect.any(String), detail: expect.stringContaining('root-login') });
    expect(Number.isNaN(Date.parse(String(alert?.at)))).toBe(false);
    const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/meteorzx_gateway_alerts_total\{rule="root-login"\} 1\b/);
  });

  it('a rule that matches every event of a burst: all alerts counted and POSTed, at most 10 log lines for them per 10 s', async () => {
    const before = alertsOf(hook, 'rule').length;
    const burst = Array.from({ length: 500 }, (_, i) => ({ id: `ev-root-burst-${i}`, type: 'auth.login', actor: 'root', source: 'host-b' }));
    expect((await ingest(gateway.httpUrl, burst)).accepted).toBe(500);
    await waitFor(() => alertsOf(hook, 'rule').length >= before + 500, '500 more rule alerts');
    const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`meteorzx_gateway_alerts_total\\{rule="root-login"\\} ${before + 500}\\b`));
    // Before the fix: one warn line per alert, 500 of them.
    const logged = gateway.logs.filter((l) => l.includes('"kind":"rule"') && l.includes('"rule":"root-login"'));
    expect(logged.length).toBeGreaterThan(0);
    expect(logged.length).toBeLessThanOrEqual(10);
  });

  it('a retry of an alerting event that dedup drops raises no second alert', async () => {
    const count = async (): Promise<number> => {
      const m = /meteorzx_gateway_alerts_total\{rule="root-login"\} (\d+)/.exec(await (await fetch(`${gateway.httpUrl}/metrics`)).text());
      return Number(m?.[1] ?? 0);
    };
    const retry = { id: 'ev-root-retry', type: 'auth.login', actor: 'root', source: 'host-c' };
    expect((await ingest(gateway.httpUrl, [retry])).accepted).toBe(1);
    const after = await count();
    // Alerts are counted before the answer is sent: a duplicate that alerted would show here.
    expect(await ingest(gateway.httpUrl, [retry, retry])).toMatchObject({ accepted: 0, duplicates: 2 });
    expect(await count()).toBe(after);
    // Then a new event: once its alert is POSTed, any alert of the retries would have been before it.
    expect((await ingest(gateway.httpUrl, [{ ...retry, id: 'ev-root-fresh' }])).accepted).toBe(1);
    await waitFor(() => alertsOf(hook, 'rule').some((a) => a.id === 'ev-root-fresh'), 'alert of the new event');
    expect(alertsOf(hook, 'rule').filter((a) => a.id === 'ev-root-retry')).toHaveLength(1);
  });

  it('a chain break is POSTed with the event it broke on', async () => {
    const first = chainEvent({ id: newId(), type: 'door.open', source: 'ag-cb', agent: 'ag-cb', epoch: 'E1', seq: 1 }, undefined);
    // Seq 2 claims a prev that is not seq 1's hash.
    const second = chainEvent({ id: 'ev-cb-2', type: 'door.open', source: 'ag-cb', agent: 'ag-cb', epoch: 'E1', seq: 2 }, 'f'.repeat(64));
    expect((await ingest(gateway.httpUrl, [first, second])).accepted).toBe(2);
    const [alert] = await waitFor(() => (alertsOf(hook, 'chain-break').length > 0 ? alertsOf(hook, 'chain-break') : undefined), 'chain-break alert');
    expect(alert).toMatchObject({ kind: 'chain-break', id: 'ev-cb-2', source: 'ag-cb', type: 'door.open', detail: expect.any(String) });
    expect(alertsOf(hook, 'chain-break')).toHaveLength(1);
  });
});

describe('volume-drop', () => {
  let dir: string;
  let gateway: RunningGateway;
  let hook: Receiver;

  beforeAll(async () => {
    dir = await tempDir('gateway-alerts-volume-');
    hook = await webhookReceiver();
    gateway = await startGateway({ dir, config: { alerts: { webhook: hook.url, volumeDrop: { window: '1s', below: 0.5 } } } });
  });

  afterAll(async () => {
    await gateway?.stop();
    await hook?.close();
    await removeDir(dir);
  });

  const burst = (source: string, n: number): AuditEvent[] => Array.from({ length: n }, (_, i) => ({ id: `${source}-${i}`, type: 'door.open', source }));

  it('a source that sends, then stops, raises exactly one volume-drop alert naming it', async () => {
    expect((await ingest(gateway.httpUrl, burst('quiet-1', 20))).accepted).toBe(20);
    const [alert] = await waitFor(() => (alertsOf(hook, 'volume-drop', { source: 'quiet-1' }).length > 0 ? alertsOf(hook, 'volume-drop', { source: 'quiet-1' }) : undefined), 'volume-drop of quiet-1');
    expect(alert).toEqual({ kind: 'volume-drop', source: 'quiet-1', windowMs: 1000, earlier: 0, previous: 20, current: 0, at: expect.any(String), detail: expect.stringContaining('quiet-1') });
    // A later source falls silent two windows after quiet-1 has been forgotten: by its alert, any second one of quiet-1 would be in.
    expect((await ingest(gateway.httpUrl, burst('marker-1', 5))).accepted).toBe(5);
    await waitFor(() => alertsOf(hook, 'volume-drop', { source: 'marker-1' }).length > 0, 'volume-drop of marker-1');
    expect(alertsOf(hook, 'volume-drop', { source: 'quiet-1' })).toHaveLength(1);
    const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/meteorzx_gateway_alerts_total\{rule="volume-drop"\} 2\b/);
  });
});

/** Seqs 1..n of one agent's chain, as the agent would push them. */
function chainOf(agent: string, epoch: string, n: number): AuditEvent[] {
  const out: AuditEvent[] = [];
  let prev: string | undefined;
  for (let seq = 1; seq <= n; seq += 1) {
    const event = chainEvent({ id: newId(), type: 'door.open', source: agent, agent, epoch, seq, time: new Date().toISOString() }, prev);
    prev = event.hash;
    out.push(event);
  }
  return out;
}

const seqs = (chain: readonly AuditEvent[], ...wanted: number[]): AuditEvent[] => wanted.map((seq) => chain[seq - 1] as AuditEvent);

describe('seq-gap', () => {
  let dir: string;
  let on: RunningGateway;
  let off: RunningGateway;
  let onHook: Receiver;
  let offHook: Receiver;

  beforeAll(async () => {
    dir = await tempDir('gateway-alerts-gaps-');
    [onHook, offHook] = await Promise.all([webhookReceiver(), webhookReceiver()]);
    const rules = [{ name: 'marker', if: 'type == "test.marker"', alert: true }];
    [on, off] = await Promise.all([
      startGateway({ dir, config: { dataDir: `${dir}/on`, alerts: { webhook: onHook.url }, backfill: { grace: '2s', every: '100ms' } } }),
      startGateway({ dir, config: { dataDir: `${dir}/off`, alerts: { webhook: offHook.url, gaps: false }, backfill: { grace: '100ms', every: '50ms' }, pipeline: { rules } } }),
    ]);
  });

  afterAll(async () => {
    await Promise.all([on?.stop(), off?.stop()]);
    await Promise.all([onHook?.close(), offHook?.close()]);
    await removeDir(dir);
  });

  const gapAlerts = (hook: Receiver, agent: string): unknown[] => alertsOf(hook, 'seq-gap', { agent }).map((a) => [a.from, a.to]);

  it('a hole open for backfill.grace raises one seq-gap alert; a hole filled at once raises none', async () => {
    const chain = chainOf('ag-gap', 'EG1', 8);
    await ingest(on.httpUrl, seqs(chain, 1, 2));
    await ingest(on.httpUrl, seqs(chain, 4)); // 3 never comes
    await ingest(on.httpUrl, seqs(chain, 6)); // 5 is in the next push
    await ingest(on.httpUrl, seqs(chain, 5));
    const [alert] = await waitFor(() => (alertsOf(onHook, 'seq-gap').length > 0 ? alertsOf(onHook, 'seq-gap') : undefined), 'seq-gap alert');
    expect(alert).toEqual({ kind: 'seq-gap', agent: 'ag-gap', epoch: 'EG1', from: 3, to: 3, since: expect.any(String), at: expect.any(String), detail: expect.stringContaining('3..3') });
    // A later hole alerts after every earlier one could have: by then, a second alert for 3 or one for 5 would be in.
    await ingest(on.httpUrl, seqs(chain, 8)); // 7 never comes
    await waitFor(() => alertsOf(onHook, 'seq-gap', { from: 7 }).length > 0, 'seq-gap alert for 7');
    expect(gapAlerts(onHook, 'ag-gap')).toEqual([
      [3, 3],
      [7, 7],
    ]);
    const metrics = await (await fetch(`${on.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/meteorzx_gateway_alerts_total\{rule="seq-gap"\} 2\b/);
  });

  it('a hole alerted before a gateway restart does not alert again after it', async () => {
    const config = { dataDir: `${dir}/restart`, alerts: { webhook: onHook.url }, backfill: { grace: '300ms', every: '100ms' } };
    const chain = chainOf('ag-restart', 'EG3', 6);
    const first = await startGateway({ dir, config });
    await ingest(first.httpUrl, seqs(chain, 1, 2, 4)); // 3 never comes
    await waitFor(() => alertsOf(onHook, 'seq-gap', { agent: 'ag-restart' }).length > 0, 'seq-gap alert for 3');
    expect(await first.stop()).toBe(0);
    const second = await startGateway({ dir, config });
    try {
      await ingest(second.httpUrl, seqs(chain, 6)); // 5 never comes either
      // Hole 5 alerts after a grace of scans that all saw hole 3 open: a second alert for 3 would be posted before it.
      await waitFor(() => alertsOf(onHook, 'seq-gap', { agent: 'ag-restart', from: 5 }).length > 0, 'seq-gap alert for 5');
      // Before the fix: [3, 3] twice.
      expect(gapAlerts(onHook, 'ag-restart')).toEqual([
        [3, 3],
        [5, 5],
      ]);
    } finally {
      await second.stop();
    }
  });

  it('a hole a kill -9 left open, filled soon after the restart, raises no alert though it opened longer than grace ago', async () => {
    const config = { dataDir: `${dir}/crash`, alerts: { webhook: onHook.url }, backfill: { grace: '1500ms', every: '100ms' } };
    const chain = chainOf('ag-crash', 'EG5', 6);
    const first = await startGateway({ dir, config });
    await ingest(first.httpUrl, seqs(chain, 1, 2, 4)); // 3 still in flight at the crash
    await first.kill9();
    await new Promise((resolve) => setTimeout(resolve, 2000)); // down for longer than the grace
    const second = await startGateway({ dir, config });
    try {
      // The agent reconnects and re-sends 3 a little after the start (its backoff); scans run every 100 ms meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 300));
      await ingest(second.httpUrl, seqs(chain, 3));
      await ingest(second.httpUrl, seqs(chain, 6)); // 5 never comes: its alert follows any for 3
      await waitFor(() => alertsOf(onHook, 'seq-gap', { agent: 'ag-crash', from: 5 }).length > 0, 'seq-gap alert for 5');
      // Before the fix: [3, 3] too, raised by the first scan after the start.
      expect(gapAlerts(onHook, 'ag-crash')).toEqual([[5, 5]]);
    } finally {
      await second.stop();
    }
  });

  it('an agent naming its whole loss again in each of 1,010 gap events: one recorded loss, and no alert for seqs it named or that arrived', async () => {
    // What a drop-oldest agent whose gateway is away sends: after 5000, gap events naming 4..4, 4..5, … 4..1013.
    const chain: AuditEvent[] = [];
    let prev: string | undefined;
    for (let seq = 1; seq <= 6010; seq += 1) {
      const lost = seq > 5000 ? { type: 'meteorzx.gap', data: { from: 4, to: seq - 4997, count: seq - 5000, reason: 'buffer-full-drop-oldest' } } : { type: 'door.open' };
      const event = chainEvent({ id: newId(), source: 'ag-drops', agent: 'ag-drops', epoch: 'EG4', seq, time: new Date().toISOString(), ...lost }, prev);
      prev = event.hash;
      chain.push(event);
    }
    await ingest(on.httpUrl, seqs(chain, 1, 3)); // 2 never comes
    await waitFor(() => alertsOf(onHook, 'seq-gap', { agent: 'ag-drops' }).length > 0, 'seq-gap alert for 2');
    await ingest(on.httpUrl, chain.slice(4999, 5600));
    await ingest(on.httpUrl, chain.slice(5600));
    // 1014..4999 no gap event names: it alerts one grace after it opened; anything the gap events caused comes before.
    await waitFor(() => alertsOf(onHook, 'seq-gap', { agent: 'ag-drops', to: 4999 }).length > 0, 'seq-gap alert for 1014..4999');
    // Before the fix: [3, 15] too — seq 3 arrived and 4..15 the agent named lost, merged in with 2 when the gaps passed 1000.
    expect(gapAlerts(onHook, 'ag-drops')).toEqual([
      [2, 2],
      [1014, 4999],
    ]);
    const sources = (await (await fetch(`${on.httpUrl}/v1/sources?source=ag-drops`)).json()) as { epochs: { gaps: { from: number; to: number; reportedByAgent?: true }[] }[] };
    expect(sources.epochs[0]?.gaps.map((g) => [g.from, g.to, g.reportedByAgent ?? false])).toEqual([
      [2, 2, false],
      [4, 1013, true],
      [1014, 4999, false],
    ]);
  });

  it('alerts.gaps: false raises no seq-gap alert', async () => {
    const chain = chainOf('ag-nogap', 'EG2', 4);
    await ingest(off.httpUrl, seqs(chain, 1, 2, 4));
    // The hole is listed, and stays open for many times grace + every (100 ms + 50 ms)...
    await waitFor(async () => {
      const sources = (await (await fetch(`${off.httpUrl}/v1/sources`)).json()) as { epochs: { agent: string; gaps: { from: number; since: string }[] }[] };
      const gap = sources.epochs.find((e) => e.agent === 'ag-nogap')?.gaps[0];
      return gap !== undefined && Date.now() - Date.parse(gap.since) > 2000;
    }, 'the hole open for 2 s');
    // ...then an alert raised after it goes through the same queue: any seq-gap would be delivered before it.
    await ingest(off.httpUrl, [{ id: 'marker-1', type: 'test.marker', source: 'test' }]);
    await waitFor(() => alertsOf(offHook, 'rule', { rule: 'marker' }).length > 0, 'marker alert');
    expect(alertsOf(offHook, 'seq-gap')).toEqual([]);
  });
});

describe('an https webhook whose certificate a private CA signs (alerts.webhookTls)', () => {
  let dir: string;
  let pki: TestPki;
  const hooks: Receiver[] = [];
  const gateways: RunningGateway[] = [];
  const rules = [{ name: 'every-t', if: 'type == "t"', alert: true }];
  const dropped = async (gw: RunningGateway): Promise<number> => {
    const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text();
    return Number(/meteorzx_gateway_alerts_dropped_total\{reason="post-failed"\} (\d+)/.exec(metrics)?.[1] ?? 0);
  };

  beforeAll(async () => {
    dir = await tempDir('gateway-alerts-tls-');
    pki = await makePki(dir);
  });

  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    await Promise.all(hooks.map((h) => h.close()));
    await removeDir(dir);
  });

  it('is trusted through webhookTls.ca; without it each POST fails on the certificate, counted and logged as such', async () => {
    const hook = await webhookReceiver({ cert: pki.cert, key: pki.key });
    hooks.push(hook);
    const [trusting, plain] = await Promise.all([
      startGateway({ dir, config: { dataDir: `${dir}/trusting`, alerts: { webhook: hook.url, webhookTls: { ca: pki.ca } }, pipeline: { rules } } }),
      startGateway({ dir, config: { dataDir: `${dir}/plain`, alerts: { webhook: hook.url }, pipeline: { rules } } }),
    ]);
    gateways.push(trusting, plain);
    expect((await ingest(trusting.httpUrl, [{ id: 'tls-trusted', source: 'tls-a', type: 't' }])).accepted).toBe(1);
    expect((await ingest(plain.httpUrl, [{ id: 'tls-untrusted', source: 'tls-b', type: 't' }])).accepted).toBe(1);
    await waitFor(() => hook.bodies.some((a) => a.id === 'tls-trusted'), 'the alert POSTed over https to the receiver the CA vouches for');
    await waitFor(async () => (await dropped(plain)) === 1, 'the untrusting gateway counting its failed POST');
    expect(await dropped(trusting)).toBe(0);
    expect(hook.bodies.some((a) => a.id === 'tls-untrusted')).toBe(false);
    const warning = await waitFor(() => plain.logs.find((l) => l.includes('alerts not delivered to the webhook')), 'a warning');
    expect(warning).toContain('TLS: the certificate is not signed by a trusted CA');
    expect(warning).toContain('trust its CA with alerts.webhookTls.ca');
  });

  it('presents webhookTls.cert and key to a receiver that asks for a client certificate', async () => {
    const hook = await webhookReceiver({ cert: pki.cert, key: pki.key, ca: pki.ca });
    hooks.push(hook);
    const [withCert, without] = await Promise.all([
      startGateway({
        dir,
        config: { dataDir: `${dir}/mtls`, alerts: { webhook: hook.url, webhookTls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } }, pipeline: { rules } },
      }),
      startGateway({ dir, config: { dataDir: `${dir}/mtls-none`, alerts: { webhook: hook.url, webhookTls: { ca: pki.ca } }, pipeline: { rules } } }),
    ]);
    gateways.push(withCert, without);
    await ingest(withCert.httpUrl, [{ id: 'mtls-1', source: 'mtls-a', type: 't' }]);
    await ingest(without.httpUrl, [{ id: 'mtls-2', source: 'mtls-b', type: 't' }]);
    await waitFor(() => hook.bodies.some((a) => a.id === 'mtls-1'), 'the alert of the gateway with a client certificate');
    await waitFor(async () => (await dropped(without)) === 1, 'the gateway without one counting its failed POST');
    expect(hook.bodies.some((a) => a.id === 'mtls-2')).toBe(false);
  });

  it('refuses webhookTls beside an http webhook, and a CA file that holds no certificate, in config check and at start', async () => {
    const cases: [object, string][] = [
      [{ webhook: 'http://127.0.0.1:9/alerts', webhookTls: { ca: pki.ca } }, 'alerts.webhookTls: applies to an https:// alerts.webhook only'],
      [{ webhook: 'https://127.0.0.1:9/alerts', webhookTls: { ca: pki.key } }, `alerts.webhookTls.ca: ${pki.key}: holds no PEM certificate`],
      [{ webhook: 'https://127.0.0.1:9/alerts', webhookTls: { cert: pki.clientCert } }, 'alerts.webhookTls.key: give the client certificate and its key together'],
    ];
    for (const [i, [alerts, expected]] of cases.entries()) {
      const file = `${dir}/bad-webhook-${i}.json`;
      await writeFile(file, JSON.stringify({ dataDir: `${dir}/bad-${i}`, http: { listen: '127.0.0.1:0' }, mqtt: { listen: '127.0.0.1:0' }, alerts }));
      for (const run of [await runCli(['config', 'check', file, '--type', 'gateway']), await runCli(['gateway', '--config', file])]) {
        expect(run.code, run.stderr).toBe(1);
        expect(run.stderr).toContain(expected);
      }
    }
  });
});
