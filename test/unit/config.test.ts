import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultAgentId, loadAgentConfig, parseAgentConfig } from '../../agent/config.js';
import { guessConfigKind } from '../../cli/commands/config.js';
import { parseListen } from '../../common/config/fields.js';
import { ConfigInvalidError, formatIssue, formatPath } from '../../common/config/issues.js';
import { readConfigFile } from '../../common/config/load.js';
import { loadGatewayConfig, parseGatewayConfig } from '../../gateway/config.js';
import { isMeteorError, type MeteorError } from '../../protocols/errors.js';
import { DEFAULT_LIMITS } from '../../protocols/limits.js';

const NO_ENV = {};

/** The error a call throws; fails the test when it does not throw. */
function thrown(fn: () => unknown): MeteorError {
  try {
    fn();
  } catch (err) {
    if (isMeteorError(err)) return err;
    throw err;
  }
  throw new Error('expected an error');
}

function issuesOf(fn: () => unknown): string[] {
  const err = thrown(fn);
  expect(err).toBeInstanceOf(ConfigInvalidError);
  return (err as ConfigInvalidError).issues.map(formatIssue);
}

async function rejection(promise: Promise<unknown>): Promise<MeteorError> {
  try {
    await promise;
  } catch (err) {
    if (isMeteorError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meteorzx-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('defaults', () => {
  it('fills every agent default, in bytes, ms and {host, port}', () => {
    expect(parseAgentConfig({}, { env: NO_ENV })).toMatchObject({
      id: defaultAgentId(),
      dataDir: './data/agent',
      logLevel: 'info',
      buffer: { maxBytes: 1024 ** 3, whenFull: 'block', retain: 7 * 86_400_000, durability: 'fsync' },
      intake: { http: { listen: { host: '127.0.0.1', port: 7401 }, maxBodyBytes: 8 * 1024 ** 2 }, files: [], serial: [] },
      push: { batch: { maxEvents: 500, maxWaitMs: 100 }, backoff: { initialMs: 100, maxMs: 30_000 } },
      pull: { listen: { host: '127.0.0.1', port: 7402 } },
      limits: { ...DEFAULT_LIMITS },
    });
  });

  it('fills every gateway default', () => {
    const config = parseGatewayConfig({}, { env: NO_ENV });
    expect(config.dataDir).toBe('./data/gateway');
    expect(config.http).toEqual({ listen: { host: '127.0.0.1', port: 7400 }, headersTimeout: 10_000 });
    expect(config.mqtt).toEqual({ listen: { host: '127.0.0.1', port: 1883 }, sessionExpiry: 2 * 3_600_000 });
    expect(config.auth).toEqual({ tokens: [], mqtt: [] });
    expect(config.pipeline).toEqual({ dedup: { window: 7 * 86_400_000, cacheSize: 100_000 }, transforms: [], rules: [], ruleCostLimit: 100_000 });
    expect(config.storage).toEqual({ type: 'level', retention: 90 * 86_400_000 });
    expect(config.alerts).toEqual({ gaps: true });
    expect(config.limits).toEqual({ ...DEFAULT_LIMITS });
    expect(config.commit).toEqual({ maxEvents: 1000, maxWaitMs: 5 });
  });

  it('fills defaults inside list items and optional sections once given', () => {
    const agent = parseAgentConfig(
      { intake: { files: [{ path: '/a.log' }], serial: [{ path: '/dev/ttyUSB0' }], mqtt: {} }, push: { http: { url: 'http://gw:7400/v1/events' } } },
      { env: NO_ENV },
    );
    expect(agent.intake.http).toBeUndefined();
    expect(agent.intake.files).toEqual([{ path: '/a.log', format: 'json', startAt: 'beginning', type: 'log.line', closeInactive: 300_000, rotateWait: 5000 }]);
    expect(agent.intake.serial).toEqual([{ path: '/dev/ttyUSB0', baudRate: 9600, delimiter: '\n', format: 'line', type: 'serial.line' }]);
    expect(agent.intake.mqtt).toEqual({ listen: { host: '127.0.0.1', port: 1883 }, users: [], maxConnections: 1024, sessionExpiry: 2 * 3_600_000 });
    expect(agent.push.http).toEqual({ url: 'http://gw:7400/v1/events', gzipAboveBytes: 1024, maxInFlight: 4, timeoutMs: 30_000 });

    const gateway = parseGatewayConfig(
      { pullFrom: [{ url: 'http://host-17:7402', every: '1h' }], auth: { mqtt: [{ username: 'dev-1', password: 'p' }] } },
      { env: NO_ENV },
    );
    expect(gateway.pullFrom[0]).toEqual({ url: 'http://host-17:7402', every: 3_600_000, timeout: 120_000, retries: { tries: 3, delay: 300_000 } });
    expect(gateway.auth.mqtt[0]).toEqual({ username: 'dev-1', password: 'p', source: 'dev-1', relayFor: [] });
  });

  it('takes intake.http.maxBodyBytes from limits unless set', () => {
    expect(parseAgentConfig({ limits: { maxBodyBytes: '1MiB' } }, { env: NO_ENV }).intake.http?.maxBodyBytes).toBe(1024 ** 2);
    const own = parseAgentConfig({ intake: { http: { maxBodyBytes: '2MiB' } } }, { env: NO_ENV });
    expect(own.intake.http?.maxBodyBytes).toBe(2 * 1024 ** 2);
  });

  it('parses the gateway storage and transform forms', () => {
    const config = parseGatewayConfig(
      {
        storage: { type: 'level', retention: '365d' },
        pipeline: { transforms: [{ mask: ['data.card'] }, { rename: { 'data.user': 'actor' } }, { set: { 'data.site': { n: 1 } } }] },
      },
      { env: NO_ENV },
    );
    expect(config.storage).toEqual({ type: 'level', retention: 365 * 86_400_000 });
    expect(config.pipeline.transforms).toEqual([{ mask: ['data.card'] }, { rename: { 'data.user': 'actor' } }, { set: { 'data.site': { n: 1 } } }]);
  });

  it('refuses storage.type postgres (not built yet) rather than storing in LevelDB unasked', () => {
    expect(issuesOf(() => parseGatewayConfig({ storage: { type: 'postgres', url: 'postgres://meteorzx@db/audit' } }, { env: NO_ENV }))).toEqual([
      'storage.type: postgres is not available in this version: the gateway stores in LevelDB only (type: level)',
    ]);
  });
});

describe('frozen result', () => {
  it('freezes the config and everything inside it', () => {
    const config = parseAgentConfig({ intake: { files: [{ path: '/a.log' }] } }, { env: NO_ENV });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.buffer)).toBe(true);
    expect(Object.isFrozen(config.intake.files)).toBe(true);
    expect(Object.isFrozen(config.intake.files[0])).toBe(true);
    expect(Object.isFrozen(config.pull.listen)).toBe(true);
    expect(() => {
      (config.buffer as { maxBytes: number }).maxBytes = 1;
    }).toThrow(TypeError);
  });

  it('does not change the object it was given', () => {
    const raw = { buffer: { maxBytes: '2GiB' }, push: { http: { url: 'http://gw/v1/events', token: '${T}' } } };
    const copy = structuredClone(raw);
    parseAgentConfig(raw, { env: { T: 'secret' } });
    expect(raw).toEqual(copy);
  });
});

describe('environment variables', () => {
  const url = 'https://gw:7400/v1/events';

  it('expands ${VAR} and ${VAR:-default} inside strings', () => {
    const config = parseAgentConfig(
      { id: 'edge-${SITE}', dataDir: '${DATA:-/var/lib/meteorzx}', push: { http: { url: '${GW_URL}', token: '${TOKEN:-dev}' } } },
      { env: { SITE: '7', GW_URL: url, TOKEN: '' } },
    );
    expect(config.id).toBe('edge-7');
    expect(config.dataDir).toBe('/var/lib/meteorzx');
    expect(config.push.http?.url).toBe(url);
    // `:-` applies to an empty variable too, as in the shell.
    expect(config.push.http?.token).toBe('dev');
  });

  it('lets numbers and booleans come from the environment', () => {
    const agent = parseAgentConfig({ push: { batch: { maxEvents: '${BATCH}' } } }, { env: { BATCH: '250' } });
    expect(agent.push.batch.maxEvents).toBe(250);
    const gateway = parseGatewayConfig({ alerts: { gaps: '${GAPS:-false}' } }, { env: NO_ENV });
    expect(gateway.alerts.gaps).toBe(false);
  });

  it('keeps $${ as a literal ${ and leaves a lone $ alone', () => {
    const config = parseAgentConfig({ push: { http: { url, token: 'a$b$${NOT_A_VAR}' } } }, { env: NO_ENV });
    expect(config.push.http?.token).toBe('a$b${NOT_A_VAR}');
  });

  it('names the path and the variable when one is unset without default', () => {
    const err = thrown(() => parseAgentConfig({ push: { http: { url: '${GW_URL}', token: '${TOKEN}' } } }, { env: NO_ENV }));
    expect(err.code).toBe('METEORZX_CONFIG_ENV_MISSING');
    // One message per value: the unexpanded URL is not also reported as "not a URL".
    expect((err as ConfigInvalidError).issues.map(formatIssue)).toEqual([
      'push.http.url: environment variable GW_URL is not set (give a default with ${GW_URL:-value})',
      'push.http.token: environment variable TOKEN is not set (give a default with ${TOKEN:-value})',
    ]);
  });

  it('rejects a malformed reference', () => {
    expect(issuesOf(() => parseAgentConfig({ dataDir: '${not valid}' }, { env: NO_ENV }))).toEqual([
      'dataDir: bad variable reference "${not valid}": use ${NAME} or ${NAME:-default}, and $${ for a literal ${',
    ]);
  });

  it('rejects a reference without its closing brace, as the shell does, instead of keeping it as text', () => {
    expect(issuesOf(() => parseAgentConfig({ id: 'edge-${ID', dataDir: '/var/lib/${A}/${B', push: { http: { url, token: '$${LITERAL' } } }, { env: { A: 'a' } }))).toEqual([
      'id: variable reference "${" has no closing "}": use ${NAME} or ${NAME:-default}, and $${ for a literal ${',
      'dataDir: variable reference "${" has no closing "}": use ${NAME} or ${NAME:-default}, and $${ for a literal ${',
    ]);
  });

  it('does not expand keys', () => {
    expect(issuesOf(() => parseAgentConfig({ '${KEY}': 1 }, { env: { KEY: 'id' } }))).toEqual(['"${KEY}": unknown key']);
  });
});

describe('secret files', () => {
  it('reads tokenFile and passwordFile relative to baseDir, dropping the trailing newline', async () => {
    await writeFile(join(dir, 'token'), 's3cret\n');
    await writeFile(join(dir, 'dev-1.password'), 'pa ss\r\n');
    const agent = parseAgentConfig(
      { push: { http: { url: 'http://gw/v1/events', tokenFile: 'token' } } },
      { env: NO_ENV, baseDir: dir },
    );
    expect(agent.push.http?.token).toBe('s3cret');
    expect(agent.push.http).not.toHaveProperty('tokenFile');
    const gateway = parseGatewayConfig(
      { auth: { mqtt: [{ username: 'dev-1', passwordFile: join(dir, 'dev-1.password') }] } },
      { env: NO_ENV },
    );
    expect(gateway.auth.mqtt[0]?.password).toBe('pa ss');
  });

  it('expands ${VAR} in the file path first', async () => {
    await writeFile(join(dir, 'pull-token'), 'pull');
    const config = parseAgentConfig({ pull: { tokenFile: '${SECRETS}/pull-token' } }, { env: { SECRETS: dir } });
    expect(config.pull.token).toBe('pull');
  });

  it('reports a missing, empty or doubled secret at the file key', async () => {
    await writeFile(join(dir, 'empty'), '\n');
    const err = thrown(() =>
      parseGatewayConfig(
        {
          auth: {
            tokens: [
              { name: 'a', tokenFile: 'nope', scopes: ['query'] },
              { name: 'b', tokenFile: 'empty', scopes: ['query'] },
              { name: 'c', token: 'x', tokenFile: 'empty', scopes: ['query'] },
            ],
          },
        },
        { env: NO_ENV, baseDir: dir },
      ),
    );
    expect(err.code).toBe('METEORZX_CONFIG_SECRET_FILE');
    expect((err as ConfigInvalidError).issues.map(formatIssue)).toEqual([
      `auth.tokens.0.tokenFile: cannot read secret file ${JSON.stringify(join(dir, 'nope'))}: no such file`,
      `auth.tokens.1.tokenFile: secret file ${JSON.stringify(join(dir, 'empty'))} is empty`,
      'auth.tokens.2.tokenFile: give either token or tokenFile, not both',
    ]);
  });

  it('names the file key when it is not allowed where it stands', async () => {
    await writeFile(join(dir, 'token'), 's3cret\n');
    expect(issuesOf(() => parseAgentConfig({ buffer: { tokenFile: 'token' } }, { env: NO_ENV, baseDir: dir }))).toEqual([
      'buffer.tokenFile: unknown key',
    ]);
  });
});

describe('errors', () => {
  it('reports every error at once, each with its path, in file order', () => {
    const issues = issuesOf(() =>
      parseAgentConfig(
        {
          foo: 1,
          buffer: { retain: '7x', whenFull: 'panic' },
          intake: { files: [{ path: '/a', format: 'xml', closeInactive: 'soon' }], maxOpenFiles: 0, syslog: { listen: '127.0.0.1:5514' } },
          push: { http: { url: 'not a url', maxInFlight: 0 } },
          pull: { listen: '0.0.0.0:70000' },
        },
        { env: NO_ENV },
      ),
    );
    expect(issues).toEqual([
      'foo: unknown key',
      'buffer.retain: not a duration: "7x" (use e.g. 250ms, 30s, 5m, 1h, 7d)',
      'buffer.whenFull: expected one of block, drop-oldest, reject, got "panic"',
      'intake.files.0.format: expected one of json, line, got "xml"',
      'intake.files.0.closeInactive: not a duration: "soon" (use e.g. 250ms, 30s, 5m, 1h, 7d)',
      'intake.maxOpenFiles: must be at least 1',
      'intake.syslog.listen: expected udp://host:port, tcp://host:port or tls://host:port, got "127.0.0.1:5514"',
      'push.http.url: not a URL: "not a url" (expected http:// or https://...)',
      'push.http.maxInFlight: must be at least 1',
      'pull.listen: port out of range in "0.0.0.0:70000" (0 to 65535)',
    ]);
  });

  it('reports gateway errors deep in lists', () => {
    const issues = issuesOf(() =>
      parseGatewayConfig(
        {
          auth: { tokens: [{ name: 'ops', token: 't', scopes: ['root'] }] },
          pipeline: {
            transforms: [{ mask: ['data.card'] }, { mask: ['a'], hash: ['b'] }, { rename: { 'bad path': 'x' } }, {}],
            rules: [{ name: 'r', if: 'type ==', tag: 'x' }],
          },
          storage: { type: 'mongo' },
          alerts: { volumeDrop: { below: 1.5 }, webhook: 'ftp://x' },
        },
        { env: NO_ENV },
      ),
    );
    expect(issues).toEqual([
      'auth.tokens.0.scopes.0: expected one of ingest, query, admin, got "root"',
      'pipeline.transforms.1: give only one of mask, hash, rename, drop, set (got mask and hash)',
      'pipeline.transforms.2.rename."bad path": not a field path: "bad path" (use dotted names such as data.card)',
      'pipeline.transforms.3: needs one of mask, hash, rename, drop, set',
      'pipeline.rules.0.if: not a valid CEL expression: Unexpected token: EOF',
      'storage.type: expected one of level, postgres, got "mongo"',
      'alerts.volumeDrop.below: must be at most 1',
      'alerts.webhook: expected a URL starting with http:// or https://, got "ftp://x"',
    ]);
  });

  it('takes [] (every item of an array) in mask, hash and drop paths, and names it in the error of the others', () => {
    const config = parseGatewayConfig(
      { pipeline: { transforms: [{ mask: ['data.cards[].number'] }, { hash: ['data.emails[]', 'data.grid[][]'] }, { drop: ['data.cards[].cvv'] }] } },
      { env: NO_ENV },
    );
    expect(config.pipeline.transforms).toEqual([{ mask: ['data.cards[].number'] }, { hash: ['data.emails[]', 'data.grid[][]'] }, { drop: ['data.cards[].cvv'] }]);
    const issues = issuesOf(() =>
      parseGatewayConfig({ pipeline: { transforms: [{ mask: ['data.cards[0]'] }, { rename: { 'data.cards[].n': 'data.n' } }] } }, { env: NO_ENV }),
    );
    expect(issues).toEqual([
      'pipeline.transforms.0.mask.0: not a field path: "data.cards[0]" (use dotted names such as data.card; a name may end in [] for every item of an array: data.cards[].number)',
      'pipeline.transforms.1.rename."data.cards[].n": not a field path: "data.cards[].n" (use dotted names such as data.card)',
    ]);
  });

  it('checks values across sections and duplicates in lists', () => {
    expect(
      issuesOf(() =>
        parseAgentConfig({ buffer: { maxBytes: '4KiB' }, push: { batch: { maxEvents: 5000 } } }, { env: NO_ENV }),
      ),
    ).toEqual(['buffer.maxBytes: must be at least limits.maxEventBytes', 'push.batch.maxEvents: must be at most limits.maxBatchEvents']);
    expect(
      issuesOf(() =>
        parseGatewayConfig(
          {
            auth: {
              tokens: [
                { name: 'ops', token: 'same', scopes: ['admin'] },
                { name: 'ops', token: 'same', scopes: ['query'] },
              ],
            },
          },
          { env: NO_ENV },
        ),
      ),
    ).toEqual(['auth.tokens.1.name: duplicate name "ops" (same as item 0)', 'auth.tokens.1.token: duplicate token (same as item 0)']);
  });

  it('refuses a dedup window longer than storage retention, which deletes the dedup entries with the events', () => {
    const message = 'pipeline.dedup.window: must be at most storage.retention: retention deletes the dedup entries with the events, so an id would be stored again within the window';
    // Unset, the window is 7 days or the retention when that is shorter: a short retention alone is not refused.
    expect(parseGatewayConfig({ storage: { retention: '3d' } }, { env: NO_ENV }).pipeline.dedup.window).toBe(3 * 86_400_000);
    expect(parseGatewayConfig({}, { env: NO_ENV }).pipeline.dedup.window).toBe(7 * 86_400_000);
    expect(issuesOf(() => parseGatewayConfig({ pipeline: { dedup: { window: '7d' } }, storage: { retention: '3d' } }, { env: NO_ENV }))).toEqual([message]);
    expect(issuesOf(() => parseGatewayConfig({ pipeline: { dedup: { window: '2h' } }, storage: { retention: '1h' } }, { env: NO_ENV }))).toEqual([message]);
    expect(parseGatewayConfig({ pipeline: { dedup: { window: '3d' } }, storage: { retention: '3d' } }, { env: NO_ENV }).pipeline.dedup.window).toBe(3 * 86_400_000);
  });

  it('compiles transforms and rules as the pipeline does', () => {
    expect(
      issuesOf(() =>
        parseGatewayConfig(
          { pipeline: { transforms: [{ drop: ['data.debug'] }, { mask: ['id'] }], rules: [{ name: 'r', if: 'typo == "x"', tag: 't' }] } },
          { env: NO_ENV },
        ),
      ),
    ).toEqual([
      'pipeline.transforms.1: mask: "id" is a field the gateway owns and cannot be changed',
      'pipeline.rules.0.if: Unknown variable: typo',
    ]);
  });

  it('refuses a rule named as an alert kind: its alerts would be counted and logged with that kind\'s', () => {
    // alerts_total{rule="seq-gap"} summed the rule's alerts with the gateway's own seq-gap alerts.
    expect(issuesOf(() => parseGatewayConfig({ pipeline: { rules: [{ name: 'seq-gap', if: 'seq > 1.0', alert: true }] } }, { env: NO_ENV }))).toEqual([
      'pipeline.rules.0.name: "seq-gap" is the name of an alert kind (rule, chain-break, pull-failed, gap-lost, seq-gap, volume-drop, registry-repaired); choose another',
    ]);
    expect(parseGatewayConfig({ pipeline: { rules: [{ name: 'seq-gap-rule', if: 'seq > 1.0', alert: true }] } }, { env: NO_ENV }).pipeline.rules).toHaveLength(1);
  });

  it('allows at most one push transport', () => {
    expect(
      issuesOf(() =>
        parseAgentConfig({ push: { http: { url: 'http://gw/v1/events' }, mqtt: { url: 'mqtt://gw' } } }, { env: NO_ENV }),
      ),
    ).toEqual(['push: give only one of http, mqtt (got http and mqtt)']);
  });

  it('says "required" for a missing key and names what a wrong type is', () => {
    expect(
      issuesOf(() => parseGatewayConfig({ http: { tls: { cert: 'c' } }, pipeline: { transforms: { mask: 'x' } } }, { env: NO_ENV })),
    ).toEqual(['http.tls.key: required', 'pipeline.transforms: expected a list, got a mapping']);
    expect(issuesOf(() => parseAgentConfig(['id'], { env: NO_ENV }))).toEqual(['(top level): expected a mapping (key: value), got a list']);
  });

  it('suggests the key meant', () => {
    expect(issuesOf(() => parseGatewayConfig({ storage: { retension: '30d' } }, { env: NO_ENV }))).toEqual([
      'storage.retension: unknown key (did you mean "retention"?)',
    ]);
  });

  it('checks scrypt hashes in auth.mqtt', () => {
    expect(
      issuesOf(() => parseGatewayConfig({ auth: { mqtt: [{ username: 'dev-1', password: 'scrypt$nonsense' }] } }, { env: NO_ENV })),
    ).toEqual(['auth.mqtt.0.password: malformed hash (expected scrypt$N=…,r=…,p=…$<salt>$<key>)']);
  });

  it('formats paths with dots and indexes', () => {
    expect(formatPath([])).toBe('(top level)');
    expect(formatPath(['pipeline', 'transforms', 0, 'mask'])).toBe('pipeline.transforms.0.mask');
    expect(formatPath(['rename', 'data.user'])).toBe('rename."data.user"');
  });
});

describe('unknown keys', () => {
  // Adds an unknown key to every mapping of the examples (except those whose keys are data) and expects it named.
  const cases: Array<[string, (raw: unknown) => unknown]> = [
    ['examples/agent.yaml', (raw) => parseAgentConfig(raw, { env: NO_ENV })],
    ['examples/gateway.yaml', (raw) => parseGatewayConfig(raw, { env: NO_ENV })],
  ];
  for (const [file, parse] of cases) {
    it(`are rejected at every level of ${file}`, async () => {
      const raw = await readConfigFile(file);
      expect(() => parse(raw)).not.toThrow();
      const mappings = objectPaths(raw).filter((path) => !['rename', 'set'].includes(String(path.at(-1))));
      expect(mappings.length).toBeGreaterThan(10);
      for (const path of mappings) {
        const bad = structuredClone(raw);
        (at(bad, path) as Record<string, unknown>).zzUnknown = 1;
        expect(issuesOf(() => parse(bad)), formatPath(path)).toEqual([`${formatPath([...path, 'zzUnknown'])}: unknown key`]);
      }
    });
  }
});

describe('files', () => {
  const yaml = 'id: edge-1\nbuffer:\n  maxBytes: 2GiB\n  retain: 1d\npush:\n  http: { url: "http://gw:7400/v1/events" }\n';
  const json = JSON.stringify({ id: 'edge-1', buffer: { maxBytes: '2GiB', retain: '1d' }, push: { http: { url: 'http://gw:7400/v1/events' } } });

  it('reads YAML and JSON to the same config', async () => {
    await writeFile(join(dir, 'agent.yaml'), yaml);
    await writeFile(join(dir, 'agent.json'), json);
    const fromYaml = await loadAgentConfig(join(dir, 'agent.yaml'), { env: NO_ENV });
    const fromJson = await loadAgentConfig(join(dir, 'agent.json'), { env: NO_ENV });
    expect(fromYaml).toEqual(fromJson);
    expect(fromYaml.buffer.maxBytes).toBe(2 * 1024 ** 3);
  });

  it('tells JSON from YAML by content when the name has no known extension', async () => {
    await writeFile(join(dir, 'agent-json.conf'), json);
    await writeFile(join(dir, 'agent-yaml.conf'), yaml);
    expect(await readConfigFile(join(dir, 'agent-json.conf'))).toEqual(await readConfigFile(join(dir, 'agent-yaml.conf')));
  });

  it('treats an empty YAML file as all defaults', async () => {
    await writeFile(join(dir, 'empty.yaml'), '# nothing set\n');
    expect((await loadGatewayConfig(join(dir, 'empty.yaml'), { env: NO_ENV })).storage.type).toBe('level');
  });

  it('reads secret files next to the config file', async () => {
    await writeFile(join(dir, 'gw-token'), 'abc\n');
    await writeFile(join(dir, 'with-secret.yaml'), 'push:\n  http: { url: "http://gw/v1/events", tokenFile: gw-token }\n');
    expect((await loadAgentConfig(join(dir, 'with-secret.yaml'), { env: NO_ENV })).push.http?.token).toBe('abc');
  });

  it('names the file in errors', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'buffer:\n  retain: 7x\n');
    const err = await rejection(loadAgentConfig(file, { env: NO_ENV }));
    expect(err.message.split('\n')).toEqual([
      `${file}: invalid agent config (1 error)`,
      'buffer.retain: not a duration: "7x" (use e.g. 250ms, 30s, 5m, 1h, 7d)',
    ]);
  });

  it('reports syntax errors with line and column, and missing files', async () => {
    await writeFile(join(dir, 'broken.yaml'), 'buffer:\n  maxBytes: 1GiB\n maxBytes: [\n');
    const yamlErr = await rejection(readConfigFile(join(dir, 'broken.yaml')));
    expect(yamlErr.code).toBe('METEORZX_CONFIG_SYNTAX');
    expect(yamlErr.message).toMatch(/broken\.yaml:\d+:\d+: not valid YAML: /);
    await writeFile(join(dir, 'broken.json'), '{"id": "a",\n "buffer": }');
    const jsonErr = await rejection(readConfigFile(join(dir, 'broken.json')));
    expect(jsonErr.code).toBe('METEORZX_CONFIG_SYNTAX');
    // Line and column when the engine gives a position (V8 does not for every kind of error).
    expect(jsonErr.message).toMatch(/broken\.json(:2:\d+)?: not valid JSON: /);
    await writeFile(join(dir, 'dup.yaml'), 'id: a\nid: b\n');
    expect((await rejection(readConfigFile(join(dir, 'dup.yaml')))).code).toBe('METEORZX_CONFIG_SYNTAX');
    const missing = await rejection(readConfigFile(join(dir, 'missing.yaml')));
    expect(missing.code).toBe('METEORZX_CONFIG_NOT_FOUND');
    expect(missing.userError).toBe(true);
    expect((await rejection(readConfigFile(dir))).code).toBe('METEORZX_CONFIG_UNREADABLE');
  });

  it('validates the examples, and the broken one with its three errors', async () => {
    await expect(loadAgentConfig('examples/agent.yaml', { env: NO_ENV })).resolves.toBeDefined();
    await expect(loadGatewayConfig('examples/gateway.yaml', { env: NO_ENV })).resolves.toBeDefined();
    const err = await rejection(loadAgentConfig('examples/bad-agent.yaml', { env: NO_ENV }));
    expect((err as ConfigInvalidError).issues.map((issue) => formatPath(issue.path))).toEqual(['bufer', 'push.http.url', 'buffer.retain']);
  });
});

describe('field types', () => {
  it('parses listen addresses', () => {
    expect(parseListen('0.0.0.0:1883')).toEqual({ host: '0.0.0.0', port: 1883 });
    expect(parseListen('[::1]:7400')).toEqual({ host: '::1', port: 7400 });
    expect(parseListen('gw.example.net:0')).toEqual({ host: 'gw.example.net', port: 0 });
    expect(parseListen('7401')).toEqual({ host: '127.0.0.1', port: 7401 });
    for (const bad of [':7401', 'host', 'a b:1', '[nope]:1', '::1:80', 'h:1:2']) expect(typeof parseListen(bad), bad).toBe('string');
  });

  it('reads syslog listen addresses with their protocol', () => {
    const config = parseAgentConfig({ intake: { syslog: { listen: 'tcp://0.0.0.0:601' } } }, { env: NO_ENV });
    expect(config.intake.syslog?.listen).toEqual({ protocol: 'tcp', host: '0.0.0.0', port: 601 });
  });

  it('refuses requestClientCert without ca on every TLS listener: Node would take any publicly issued client certificate', () => {
    const tls = { cert: '/c.pem', key: '/k.pem', requestClientCert: true };
    expect(issuesOf(() => parseAgentConfig({ intake: { http: { tls } }, pull: { tls } }, { env: NO_ENV }))).toEqual([
      'intake.http.tls.ca: required with requestClientCert: the CA client certificates must be signed by',
      'pull.tls.ca: required with requestClientCert: the CA client certificates must be signed by',
    ]);
    expect(issuesOf(() => parseGatewayConfig({ http: { tls }, mqtt: { tls, ws: { tls } } }, { env: NO_ENV }))).toEqual([
      'http.tls.ca: required with requestClientCert: the CA client certificates must be signed by',
      'mqtt.tls.ca: required with requestClientCert: the CA client certificates must be signed by',
      'mqtt.ws.tls.ca: required with requestClientCert: the CA client certificates must be signed by',
    ]);
    expect(parseAgentConfig({ intake: { http: { tls: { ...tls, ca: '/ca.pem' } } } }, { env: NO_ENV }).intake.http?.tls?.ca).toBe('/ca.pem');
  });

  it('takes tls:// syslog listeners with their certificate, and names either without the other', () => {
    const tls = { cert: '/c.pem', key: '/k.pem' };
    const config = parseAgentConfig({ intake: { syslog: { listen: 'tls://0.0.0.0:6514', tls } } }, { env: NO_ENV });
    expect(config.intake.syslog?.listen).toEqual({ protocol: 'tls', host: '0.0.0.0', port: 6514 });
    expect(config.intake.syslog?.tls).toEqual({ ...tls, requestClientCert: false });
    expect(issuesOf(() => parseAgentConfig({ intake: { syslog: { listen: 'tls://0.0.0.0:6514' } } }, { env: NO_ENV }))).toEqual([
      'intake.syslog.tls: a tls:// listen address needs tls.cert and tls.key',
    ]);
    expect(issuesOf(() => parseAgentConfig({ intake: { syslog: { listen: 'tcp://0.0.0.0:601', tls } } }, { env: NO_ENV }))).toEqual([
      'intake.syslog.tls: is for tls:// listen addresses, and none is given',
    ]);
  });

  it('rejects ids outside the source alphabet', () => {
    expect(issuesOf(() => parseAgentConfig({ id: 'host 17' }, { env: NO_ENV }))).toEqual([
      'id: not a valid id: "host 17" (use 1 to 128 of A-Z a-z 0-9 . _ : -)',
    ]);
  });
});

describe('guessConfigKind', () => {
  it('tells agent from gateway configs by their top-level keys', () => {
    expect(guessConfigKind({ id: 'a', buffer: {}, push: {} })).toEqual({ kind: 'agent', keys: ['buffer', 'push'] });
    expect(guessConfigKind({ storage: {}, auth: {} })).toEqual({ kind: 'gateway', keys: ['storage', 'auth'] });
    expect(guessConfigKind({ dataDir: '/x' })).toBeUndefined();
    expect(guessConfigKind({ buffer: {}, storage: {} })).toBeUndefined();
    expect(guessConfigKind([])).toBeUndefined();
  });
});

function objectPaths(node: unknown, path: (string | number)[] = []): (string | number)[][] {
  if (Array.isArray(node)) return node.flatMap((item, i) => objectPaths(item, [...path, i]));
  if (typeof node !== 'object' || node === null) return [];
  return [path, ...Object.entries(node).flatMap(([key, item]) => objectPaths(item, [...path, key]))];
}

function at(node: unknown, path: readonly (string | number)[]): unknown {
  return path.reduce<unknown>((n, key) => (n as Record<string | number, unknown>)[key], node);
}
