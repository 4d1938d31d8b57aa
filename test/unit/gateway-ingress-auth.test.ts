import { describe, expect, it } from 'vitest';
import { hashPassword, isMalformedHash, parseScryptHash, verifyPassword } from '../../gateway/auth/password.js';
import { globMatcher } from '../../common/source-glob.js';
import { TokenAuth } from '../../gateway/auth/tokens.js';
import { MqttUsers } from '../../gateway/auth/mqtt-users.js';
import { exposureProblem, isLoopback } from '../../gateway/auth/exposure.js';

describe('password hashes', () => {
  it('verifies a scrypt hash it wrote and refuses another password', async () => {
    const stored = await hashPassword('s3cret', { N: 1024, r: 8, p: 1 });
    expect(stored).toMatch(/^scrypt\$N=1024,r=8,p=1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(await verifyPassword(stored, 's3cret')).toBe(true);
    expect(await verifyPassword(stored, 's3cret ')).toBe(false);
    expect(await verifyPassword(stored, Buffer.from('s3cret'))).toBe(true);
  });

  it('compares plain passwords exactly', async () => {
    expect(await verifyPassword('plain', 'plain')).toBe(true);
    expect(await verifyPassword('plain', 'plai')).toBe(false);
    expect(await verifyPassword('plain', '')).toBe(false);
  });

  it('names malformed hashes instead of treating them as plain text', () => {
    expect(isMalformedHash('scrypt$N=1000,r=8,p=1$AAAA$AAAAAAAAAAAAAAAAAAAAAA==')).toBe(true); // N not a power of two
    expect(isMalformedHash('scrypt$garbage')).toBe(true);
    expect(isMalformedHash('hunter2')).toBe(false);
    expect(parseScryptHash('scrypt$N=16384,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')?.params).toEqual({
      N: 16384,
      r: 8,
      p: 1,
    });
  });
});

describe('relayFor globs', () => {
  it('matches * and ? and nothing else', () => {
    const m = globMatcher(['dev-*', 'plc-?']);
    expect(m('dev-1')).toBe(true);
    expect(m('dev-')).toBe(true);
    expect(m('plc-7')).toBe(true);
    expect(m('plc-77')).toBe(false);
    expect(m('xdev-1')).toBe(false);
    expect(globMatcher(['a.b'])('axb')).toBe(false); // the dot is literal
    expect(globMatcher([])('anything')).toBe(false);
  });
});

describe('bearer tokens', () => {
  const auth = new TokenAuth([
    { name: 'ingester', token: 'tok-ingest', scopes: ['ingest'] },
    { name: 'ops', token: 'tok-admin', scopes: ['admin'] },
  ]);

  it('checks token and scope', () => {
    expect(auth.check('Bearer tok-ingest', 'ingest')).toEqual({ ok: true, name: 'ingester' });
    expect(auth.check('Bearer tok-ingest', 'query')).toMatchObject({ ok: false, status: 403 });
    expect(auth.check('Bearer tok-admin', 'query')).toEqual({ ok: true, name: 'ops' });
    expect(auth.check('Bearer nope', 'ingest')).toMatchObject({ ok: false, status: 401 });
    expect(auth.check(undefined, 'ingest')).toMatchObject({ ok: false, status: 401 });
    expect(auth.check('Basic dG9rLWluZ2VzdA==', 'ingest')).toMatchObject({ ok: false, status: 401 });
  });

  it('is open when no token is configured', () => {
    expect(new TokenAuth([]).check(undefined, 'admin')).toEqual({ ok: true, name: 'anonymous' });
  });
});

describe('MQTT users', () => {
  it('authenticates and scopes sources by relayFor', async () => {
    const users = new MqttUsers([
      { username: 'edge-7', password: await hashPassword('pw', { N: 1024, r: 8, p: 1 }), source: 'edge-7', relayFor: ['dev-*'] },
    ]);
    const id = await users.authenticate('edge-7', Buffer.from('pw'));
    expect(id?.source).toBe('edge-7');
    expect(id?.mayUseSource('edge-7')).toBe(true);
    expect(id?.mayUseSource('dev-3')).toBe(true);
    expect(id?.mayUseSource('edge-8')).toBe(false);
    expect(await users.authenticate('edge-7', Buffer.from('wrong'))).toBeUndefined();
    expect(await users.authenticate('nobody', Buffer.from('pw'))).toBeUndefined();
    expect(await users.authenticate('edge-7', undefined)).toBeUndefined();
  });

  it('lets anyone in when no users are configured', async () => {
    const id = await new MqttUsers([]).authenticate(undefined, undefined);
    expect(id?.source).toBeUndefined();
  });
});

describe('exposure', () => {
  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) expect(isLoopback(h)).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.com']) expect(isLoopback(h)).toBe(false);
  });

  it('refuses a non-loopback bind without auth unless insecure', () => {
    const check = { key: 'http.listen', host: '0.0.0.0', authConfigured: false, authKey: 'auth.tokens' };
    expect(exposureProblem(check, false)).toMatch(/http\.listen binds 0\.0\.0\.0.*auth\.tokens.*--insecure/);
    expect(exposureProblem(check, true)).toBeUndefined();
    expect(exposureProblem({ ...check, authConfigured: true }, false)).toBeUndefined();
    expect(exposureProblem({ ...check, host: '127.0.0.1' }, false)).toBeUndefined();
  });
});
